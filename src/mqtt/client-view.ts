import type { Link } from "./connection-state.js";
import type { ConnectedClient, OnceKey } from "./context.js";
import type { Flow } from "./flow.js";
import { encodeAck } from "./packets.js";

/** What the view needs of its connection. */
export interface ClientPorts {
  readonly connected: boolean;
  send(bytes: Uint8Array): void;
  close(reason: string, now?: boolean): void;
}

/** The handlers' view of a connected client (see ConnectedClient): its link, its flow. */
export class ClientView implements ConnectedClient {
  readonly #link: Link;
  readonly #flow: Flow;
  readonly #ports: ClientPorts;
  readonly #loggedOnce = new Set<OnceKey>();
  readonly aliasesIn = new Map<number, string>();

  constructor(link: Link, flow: Flow, ports: ClientPorts) {
    this.#link = link;
    this.#flow = flow;
    this.#ports = ports;
  }

  get clientId(): string {
    return this.#link.clientId;
  }
  get user(): string | undefined {
    return this.#link.user;
  }
  get version(): Link["version"] {
    return this.#link.version;
  }
  get session(): Link["session"] {
    return this.#link.session;
  }
  get account(): string {
    return this.#link.session.account;
  }
  get permissions(): Link["permissions"] {
    return this.#link.permissions;
  }
  get connected(): boolean {
    return this.#ports.connected;
  }

  send(bytes: Uint8Array): void {
    this.#ports.send(bytes);
  }

  inboundPublish(packetId: number): void {
    this.#flow.inboundPublish(this.#link.version, packetId);
  }

  sendInboundAck(kind: "puback" | "pubrec" | "pubcomp", packetId: number, reasonCode = 0): void {
    this.#flow.inboundAnswered(kind, packetId, reasonCode);
    this.#ports.send(encodeAck(kind, packetId, reasonCode));
  }

  trackCommit(
    commit: Promise<void>,
    onCommitted: () => void,
    onFailed: (err: unknown) => void,
  ): void {
    this.#flow.trackCommit(commit, onCommitted, onFailed);
  }

  close(reason: string, now?: boolean): void {
    this.#ports.close(reason, now);
  }

  /** True the first time `what` happens here: some lines are logged once per connection. */
  firstTime(what: OnceKey): boolean {
    if (this.#loggedOnce.has(what)) return false;
    this.#loggedOnce.add(what);
    return true;
  }

  disconnected(keepWill: boolean): void {
    if (!keepWill) this.#link.will = undefined;
    this.close(this.#link.will === undefined ? "client-disconnect" : "client-disconnect-with-will");
  }
}
