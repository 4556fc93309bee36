import type {
  AuthResult,
  Bus,
  BusSubscription,
  Clock,
  ClockTimer,
  Envelope,
  Headers,
  Logger,
  Permissions,
  Replies,
  Transport,
  TransportHandler,
} from "../core/index.js";
import {
  DEFAULT_ACCOUNT,
  isValidPattern,
  isValidSubject,
  subjectMatches,
  systemClock,
} from "../core/index.js";
import { type NatsAuth, OPEN_NATS_AUTH } from "./auth.js";
import { type ConnectOptions, type NatsConnectionState, parseConnect } from "./connection-state.js";
import {
  decodeHeaders,
  encodeErr,
  encodeHeaders,
  encodeHmsg,
  encodeInfo,
  encodeMsg,
  OK_FRAME,
  PING_FRAME,
  PONG_FRAME,
} from "./encode.js";
import { errText, type NatsViolation } from "./errors.js";
import { type ClientOp, ClientParser, DEFAULT_PARSER_LIMITS } from "./parser.js";

/** A message on the bus as a NATS publish made it (the reply subject is in `Envelope`). */
export type NatsEnvelope = Envelope;

export interface NatsConnectionOptions {
  readonly serverId: string;
  readonly serverName: string;
  /** INFO says TLS is required (the listener upgrades the socket after INFO). */
  readonly tls?: boolean;
  /** INFO says a client certificate is required. */
  readonly tlsVerify?: boolean;
  /** The listener sent INFO itself (before a TLS upgrade). */
  readonly infoSent?: boolean;
  /** A semver string: nats.js reads it to decide what the server supports. */
  readonly version: string;
  /** nats-server `max_payload` (HPUB: header and payload together). */
  readonly maxPayloadBytes: number;
  readonly maxControlLineBytes: number;
  /** Bytes queued for a client that does not read, past which it is cut (slow consumer). */
  readonly maxOutboundBytes: number;
  /** SUBs one connection may hold (nats-server `max_subscriptions`). */
  readonly maxSubscriptions: number;
  /** nats-server `ping_interval`: a PING this often. */
  readonly pingIntervalMs: number;
  /** nats-server `max_pings_out`: PINGs unanswered before the connection is stale. */
  readonly maxPingsOut: number;
  /** Time from accept to CONNECT (nats-server `auth_timeout`). */
  readonly connectTimeoutMs: number;
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Who may connect and what each may do; without it, anyone and anything. */
  readonly auth?: NatsAuth;
  /** Where answers to MQTT 5 requests are routed (their correlation data put back). */
  readonly replies?: Replies;
  /**
   * Accounts: after its login a client works on its account's bus and routes (the
   * constructor's bus and `replies` are then only `$G`'s default). Absent: one subject space.
   */
  readonly accounts?: {
    account(name: string): { readonly bus: Bus; readonly replies: Replies | undefined };
  };
  /** Hears of each slow consumer cut (to count and log it); once per connection. */
  readonly onSlowConsumer?: (remote: string) => void;
  /** Hears of each CONNECT refused (bad credentials, anonymous disabled, locked out). */
  readonly onAuthFailure?: (refusal: string, remote: string) => void;
  /** Hears that the client's CONNECT was accepted (it no longer counts as pending). */
  readonly onOpen?: () => void;
  /** Hears of each PUB or SUB refused by the client's permissions. */
  readonly onPermissionDenied?: (kind: "publish" | "subscribe") => void;
}

/** nats-server's defaults: 2 minutes, 2 PINGs out, 2 s auth timeout, 64 MiB pending. */
export const DEFAULT_NATS_CONNECTION_OPTIONS: Omit<
  NatsConnectionOptions,
  "serverId" | "serverName" | "version"
> = {
  maxPayloadBytes: DEFAULT_PARSER_LIMITS.maxPayloadBytes,
  maxControlLineBytes: DEFAULT_PARSER_LIMITS.maxControlLineBytes,
  maxOutboundBytes: 64 * 1024 * 1024,
  maxSubscriptions: 10_000,
  pingIntervalMs: 2 * 60_000,
  maxPingsOut: 2,
  connectTimeoutMs: 2_000,
};

/** nats-server's -ERR texts for what does not close the connection, and the stale close. */
const ERR_INVALID_PUBLISH_SUBJECT = "Invalid Publish Subject";
const ERR_INVALID_SUBJECT = "Invalid Subject";
const ERR_TOO_MANY_SUBS = "maximum subscriptions exceeded";
const ERR_STALE = "Stale Connection";
const ERR_AUTH_TIMEOUT = "Authentication Timeout";
/** nats-server's permission errors (client.go): the connection stays open. */
const pubDenied = (subject: string): string => `Permissions Violation for Publish to "${subject}"`;
const subDenied = (subject: string, queue: string | undefined): string =>
  queue === undefined
    ? `Permissions Violation for Subscription to "${subject}"`
    : `Permissions Violation for Subscription to "${subject}" using queue "${queue}"`;
/**
 * Ops parsed after CONNECT while its credentials are checked. Reading is paused then, so
 * only the rest of one socket read can arrive; more is a client flooding the check.
 */
const MAX_HELD_OPS = 4096;
/** The no-responders status message's header block (what nats.js `request()` rejects on). */
const NO_RESPONDERS_HEADER: Buffer = encodeHeaders({ status: 503, entries: [] });
const EMPTY: Buffer = Buffer.alloc(0);

interface ClientSub {
  readonly sid: string;
  readonly subject: string;
  readonly bus: BusSubscription;
  delivered: number;
  /** UNSUB's max: removed once this many were delivered. */
  max: number | undefined;
}

/**
 * One NATS client on a Transport: INFO on open, CONNECT first, then its ops onto the bus
 * and the bus's messages back as MSG/HMSG with the client's sid.
 */
export class NatsConnection implements TransportHandler {
  readonly #transport: Transport;
  /** The account's bus once logged in (the constructor's until then, and without accounts). */
  #bus: Bus;
  #replies: Replies | undefined;
  /** The login's account; `$G` until then, and without accounts. */
  #account = DEFAULT_ACCOUNT;
  readonly #options: NatsConnectionOptions;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  readonly #parser: ClientParser;
  readonly #subs = new Map<string, ClientSub>();
  /** Marks this connection's own publishes, for `echo: false`. */
  readonly #publisher: string;
  #state: NatsConnectionState = { phase: "awaitingConnect" };
  #timer: ClockTimer | undefined;
  #pingsOut = 0;

  constructor(transport: Transport, bus: Bus, clientId: number, options: NatsConnectionOptions) {
    this.#transport = transport;
    this.#bus = bus;
    this.#replies = options.replies;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log;
    this.#publisher = `nats:${clientId}`;
    this.#parser = new ClientParser(
      (op) => this.#onOp(op),
      (violation) => this.#violation(violation),
      {
        maxControlLineBytes: options.maxControlLineBytes,
        maxPayloadBytes: options.maxPayloadBytes,
      },
    );
    if (options.infoSent !== true) this.#write(NatsConnection.info(options, clientId));
    this.#timer = this.#clock.setTimeout(() => this.#connectTimeout(), options.connectTimeoutMs);
  }

  /** The INFO a client gets first (nats-server's fields that clients read). */
  static info(options: NatsConnectionOptions, clientId: number): Buffer {
    return encodeInfo({
      server_id: options.serverId,
      server_name: options.serverName,
      version: options.version,
      proto: 1,
      headers: true,
      max_payload: options.maxPayloadBytes,
      client_id: clientId,
      auth_required: (options.auth ?? OPEN_NATS_AUTH).required,
      ...(options.tls === true
        ? { tls_required: true, tls_verify: options.tlsVerify === true }
        : {}),
    });
  }

  /** The account the client logged in to (`$G` before its login). */
  get account(): string {
    return this.#account;
  }

  /** Bytes written and not yet taken by the kernel. */
  get unsentBytes(): number {
    return this.#transport.writableLength;
  }

  get state(): NatsConnectionState {
    return this.#state;
  }

  /** Subscriptions held, for tests and metrics. */
  get subscriptionCount(): number {
    return this.#subs.size;
  }

  onData(chunk: Buffer): void {
    if (this.#state.phase !== "closed") this.#parser.push(chunk);
  }

  onDrain(): void {}

  onClose(error?: Error): void {
    if (this.#state.phase === "closed") return;
    if (error !== undefined) this.#log?.debug({ err: error.message }, "nats connection error");
    this.#release();
  }

  /** Closes from the server side: flush what is queued, then end. */
  close(): void {
    if (this.#state.phase === "closed") return;
    this.#release();
    this.#transport.end();
  }

  #onOp(op: ClientOp): void {
    const state = this.#state;
    if (state.phase === "closed") return;
    if (state.phase === "awaitingConnect") {
      this.#connect(op);
      return;
    }
    if (state.phase === "authenticating") {
      if (state.held.length >= MAX_HELD_OPS) this.#violation("authorization");
      else state.held.push(op);
      return;
    }
    const { client, permissions } = state;
    switch (op.op) {
      case "connect":
        // nats-server accepts a second CONNECT and takes its options (not a new login).
        this.#state = { phase: "open", client: parseConnect(op.json) ?? client, permissions };
        this.#ok();
        return;
      case "ping":
        this.#write(PONG_FRAME);
        return;
      case "pong":
        this.#pingsOut = 0;
        return;
      case "pub":
        this.#publish(state, op.subject, op.reply, op.payload, undefined);
        return;
      case "hpub":
        this.#publish(state, op.subject, op.reply, op.payload, toHeaders(op.header));
        return;
      case "sub":
        this.#subscribe(permissions, op.subject, op.queue, op.sid);
        return;
      case "unsub":
        this.#unsubscribe(op.sid, op.max);
        return;
    }
  }

  /** The first op must be CONNECT; its credentials decide the connection's permissions. */
  #connect(op: ClientOp): void {
    if (op.op !== "connect") {
      this.#violation("authorization");
      return;
    }
    const client = parseConnect(op.json);
    if (client === undefined) {
      this.#violation("badArguments");
      return;
    }
    const result = (this.#options.auth ?? OPEN_NATS_AUTH).check(client, this.#transport.remote);
    if (!(result instanceof Promise)) {
      this.#authenticated(client, result);
      return;
    }
    this.#state = { phase: "authenticating", client, held: [] };
    this.#transport.pause();
    result.then(
      (r) => this.#authenticated(client, r),
      (err: unknown) => {
        this.#log?.warn({ err: String(err) }, "nats credentials could not be checked");
        this.#authenticated(client, {
          ok: false,
          returnCode: 5,
          reason: "credentials could not be checked",
          refusal: "bad-credentials",
        });
      },
    );
  }

  #authenticated(client: ConnectOptions, result: AuthResult): void {
    const state = this.#state;
    if (state.phase === "closed") return;
    if (!result.ok) {
      this.#options.onAuthFailure?.(result.refusal, this.#transport.remote);
      this.#log?.info(
        { remote: this.#transport.remote, refusal: result.refusal, why: result.reason },
        "nats client refused",
      );
      this.#violation("authorization");
      return;
    }
    const held = state.phase === "authenticating" ? state.held : [];
    const accounts = this.#options.accounts;
    this.#account = result.account;
    if (accounts !== undefined) {
      const account = accounts.account(result.account);
      this.#bus = account.bus;
      this.#replies = account.replies;
    }
    this.#state = { phase: "open", client, permissions: result.permissions };
    this.#options.onOpen?.();
    this.#clock.clearTimeout(this.#timer);
    this.#schedulePing();
    this.#ok();
    if (state.phase === "authenticating") this.#transport.resume();
    for (const op of held) this.#onOp(op);
  }

  #publish(
    state: { readonly client: ConnectOptions; readonly permissions: Permissions },
    subject: string,
    reply: string | undefined,
    payload: Buffer,
    headers: Headers | undefined,
  ): void {
    const { client, permissions } = state;
    if (!isValidSubject(subject)) {
      this.#write(encodeErr(ERR_INVALID_PUBLISH_SUBJECT));
      return;
    }
    if (!permissions.canPublish(subject)) {
      this.#options.onPermissionDenied?.("publish");
      this.#write(encodeErr(pubDenied(subject)));
      return;
    }
    this.#ok();
    if (reply !== undefined && client.noResponders && !this.#bus.hasInterest(subject)) {
      this.#noResponders(reply);
      return;
    }
    const envelope: NatsEnvelope = {
      subject,
      payload,
      receivedAtMs: this.#clock.now(),
      origin: "nats",
      qos: 0,
      publisher: this.#publisher,
      ...(headers === undefined ? {} : { headers }),
      ...(reply === undefined ? {} : { reply }),
    };
    // At most once: nothing is acknowledged to a NATS publisher, so a failed durable copy
    // (the outbox) is logged, not answered.
    this.#bus.publish(envelope).catch((err: unknown) => {
      this.#log?.warn({ subject, err: String(err) }, "nats publish not stored");
    });
  }

  /** The status message nats-server sends the requester on the subscription of its inbox. */
  #noResponders(reply: string): void {
    for (const sub of this.#subs.values()) {
      if (subjectMatches(sub.subject, reply)) {
        this.#write(encodeHmsg(reply, sub.sid, undefined, NO_RESPONDERS_HEADER, EMPTY));
        return;
      }
    }
  }

  #subscribe(
    permissions: Permissions,
    subject: string,
    queue: string | undefined,
    sid: string,
  ): void {
    if (!isValidPattern(subject)) {
      this.#write(encodeErr(ERR_INVALID_SUBJECT));
      return;
    }
    if (!permissions.canSubscribe(subject)) {
      this.#options.onPermissionDenied?.("subscribe");
      this.#write(encodeErr(subDenied(subject, queue)));
      return;
    }
    if (this.#subs.has(sid)) {
      this.#ok();
      return;
    }
    if (this.#subs.size >= this.#options.maxSubscriptions) {
      this.#write(encodeErr(ERR_TOO_MANY_SUBS));
      return;
    }
    const bus = this.#bus.subscribe(
      subject,
      { deliver: (message) => this.#deliver(sid, message as NatsEnvelope) },
      queue,
    );
    this.#subs.set(sid, { sid, subject, bus, delivered: 0, max: undefined });
    this.#ok();
  }

  #unsubscribe(sid: string, max: number | undefined): void {
    const sub = this.#subs.get(sid);
    this.#ok();
    if (sub === undefined) return;
    if (max !== undefined && sub.delivered < max) {
      sub.max = max;
      return;
    }
    this.#drop(sub);
  }

  #drop(sub: ClientSub): void {
    sub.bus.unsubscribe();
    this.#subs.delete(sub.sid);
  }

  #deliver(sid: string, message: NatsEnvelope): undefined {
    const state = this.#state;
    if (state.phase !== "open") return undefined;
    const sub = this.#subs.get(sid);
    if (sub === undefined) return undefined;
    if (!state.client.echo && message.publisher === this.#publisher) return undefined;
    if (!state.permissions.mayReceive(message.subject)) return undefined;
    sub.delivered++;
    const payload = Buffer.from(
      message.payload.buffer,
      message.payload.byteOffset,
      message.payload.length,
    );
    const reply = this.#replies?.replyTo(message) ?? message.reply;
    if (message.headers !== undefined && state.client.headers) {
      this.#write(encodeHmsg(message.subject, sid, reply, fromHeaders(message.headers), payload));
    } else {
      this.#write(encodeMsg(message.subject, sid, reply, payload));
    }
    if (sub.max !== undefined && sub.delivered >= sub.max) this.#drop(sub);
    return undefined;
  }

  #ok(): void {
    const state = this.#state;
    if (state.phase === "open" && state.client.verbose) this.#write(OK_FRAME);
  }

  #write(bytes: Buffer): void {
    if (this.#state.phase === "closed") return;
    this.#transport.write(bytes);
    if (this.#transport.writableLength > this.#options.maxOutboundBytes) this.#slowConsumer();
  }

  /**
   * nats-server closes a slow consumer without an -ERR (its buffer is what is full) and
   * counts it; so do we, discarding what is queued.
   */
  #slowConsumer(): void {
    this.#options.onSlowConsumer?.(this.#transport.remote);
    this.#release();
    this.#transport.destroy();
  }

  #schedulePing(): void {
    this.#timer = this.#clock.setTimeout(() => this.#ping(), this.#options.pingIntervalMs);
  }

  #ping(): void {
    if (this.#state.phase !== "open") return;
    if (this.#pingsOut + 1 > this.#options.maxPingsOut) {
      this.#closeWithErr(ERR_STALE);
      return;
    }
    this.#pingsOut++;
    this.#write(PING_FRAME);
    this.#schedulePing();
  }

  #connectTimeout(): void {
    if (this.#state.phase === "awaitingConnect") this.#closeWithErr(ERR_AUTH_TIMEOUT);
  }

  #violation(violation: NatsViolation): void {
    const text = errText(violation);
    this.#log?.debug({ remote: this.#transport.remote, violation }, "nats protocol violation");
    if (text === undefined) {
      this.#release();
      this.#transport.destroy();
      return;
    }
    this.#closeWithErr(text);
  }

  #closeWithErr(text: string): void {
    this.#write(encodeErr(text));
    this.close();
  }

  /** Leaves the bus and stops time and parsing; the transport is closed by the caller. */
  #release(): void {
    this.#state = { phase: "closed" };
    this.#parser.stop();
    this.#clock.clearTimeout(this.#timer);
    for (const sub of this.#subs.values()) sub.bus.unsubscribe();
    this.#subs.clear();
  }
}

/** An HPUB header block to bus headers (a key may repeat: its values in order). */
function toHeaders(block: Buffer): Headers | undefined {
  const decoded = decodeHeaders(block);
  if (decoded === undefined || decoded.entries.length === 0) return undefined;
  const headers = new Map<string, string[]>();
  for (const [key, value] of decoded.entries) {
    const values = headers.get(key);
    if (values === undefined) headers.set(key, [value]);
    else values.push(value);
  }
  return headers;
}

function fromHeaders(headers: Headers): Buffer {
  const entries: [string, string][] = [];
  for (const [key, values] of headers) for (const value of values) entries.push([key, value]);
  return encodeHeaders({ entries });
}
