import type { Permissions } from "../core/index.js";
import type { ClientOp } from "./parser.js";
/**
 * Where a NATS client connection is: waiting for CONNECT (only CONNECT is accepted), open
 * with what the client asked for, or closed (nothing is read or written any more).
 */
export type NatsConnectionState =
  | { readonly phase: "awaitingConnect" }
  /** Credentials being checked (scrypt, off the loop): ops that follow CONNECT wait. */
  | { readonly phase: "authenticating"; readonly client: ConnectOptions; readonly held: ClientOp[] }
  | {
      readonly phase: "open";
      readonly client: ConnectOptions;
      readonly permissions: Permissions;
    }
  | { readonly phase: "closed" };

/** What a CONNECT asks for (nats-server's `clientOpts`), with nats-server's defaults. */
export interface ConnectOptions {
  /** +OK after every accepted CONNECT, PUB, HPUB, SUB and UNSUB. */
  readonly verbose: boolean;
  readonly pedantic: boolean;
  /** false: the connection does not receive what it publishes itself. */
  readonly echo: boolean;
  /** The client reads HMSG; without it messages with headers arrive as MSG, headers dropped. */
  readonly headers: boolean;
  /** With `headers`: a request nobody serves gets a `NATS/1.0 503` status message. */
  readonly noResponders: boolean;
  readonly name: string | undefined;
  readonly user: string | undefined;
  readonly pass: string | undefined;
  readonly authToken: string | undefined;
}

const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
const bool = (value: unknown, fallback: boolean): boolean =>
  typeof value === "boolean" ? value : fallback;

/**
 * CONNECT's JSON to its options; undefined when it is not a JSON object. Unknown fields are
 * ignored and fields of the wrong type take their defaults, as nats-server's decoder leaves them.
 */
export function parseConnect(json: string): ConnectOptions | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  const headers = bool(o.headers, false);
  return {
    verbose: bool(o.verbose, false),
    pedantic: bool(o.pedantic, false),
    echo: bool(o.echo, true),
    headers,
    noResponders: headers && bool(o.no_responders, false),
    name: str(o.name),
    user: str(o.user),
    pass: str(o.pass),
    authToken: str(o.auth_token),
  };
}
