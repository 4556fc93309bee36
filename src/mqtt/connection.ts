import mqtt from "mqtt-packet";
import type { Envelope } from "../core/index.js";
import { errorMessage, subjectMatches } from "../core/index.js";
import type { RetainedMessage } from "../store/index.js";
import { ALLOW_ALL, type Permissions } from "./auth.js";
import type { Broker } from "./broker.js";
import { MqttProtocolError } from "./errors.js";
import { handleConnect } from "./handlers/connect.js";
import { handlePuback } from "./handlers/puback.js";
import { handlePublish, handlePubrel } from "./handlers/publish.js";
import { handleSubscribe } from "./handlers/subscribe.js";
import { handleUnsubscribe } from "./handlers/unsubscribe.js";
import { encodeAck, encodeConnack, encodePublish, packetSize } from "./packets.js";
import type { Transport, TransportHandler } from "./transport.js";

/**
 * One connection's life: `awaiting-connect` until a valid CONNECT, then `connected`;
 * `closing` while pending commits settle (so committed messages still get their
 * PUBACK); `closed` once the transport is gone. Transitions happen only here.
 */
export type ConnectionState =
  | "awaiting-connect"
  | "authenticating"
  | "connected"
  | "closing"
  | "closed";

export interface Subscription {
  readonly filter: string;
  readonly qos: 0 | 1 | 2;
  readonly patterns: readonly string[];
  /** The filter starts with `+` or `#`, so it must not match `$` topics. */
  readonly leadingWildcard: boolean;
  readonly unsubscribe: () => void;
}

/** Keepalive is enforced at one and a half times the negotiated interval [MQTT-3.1.2-24]. */
const KEEPALIVE_GRACE = 1.5;
const MAX_PACKET_ID = 0xffff;
const DOLLAR = "$".charCodeAt(0);
/** Packets a client may send behind CONNECT before its CONNACK (authentication pending). */
const MAX_HELD_PACKETS = 100;
/** Envelopes made to send a retained message on SUBSCRIBE (they go out with retain set). */
const RETAINED_COPIES = new WeakSet<Envelope>();

export class Connection implements TransportHandler {
  readonly broker: Broker;
  readonly transport: Transport;
  state: ConnectionState = "awaiting-connect";
  clientId: string | undefined;
  /** The authenticated user, when the client logged in as one. */
  user: string | undefined;
  permissions: Permissions = ALLOW_ALL;
  /** Packets that arrived while CONNECT was being authenticated, replayed after. */
  #held: mqtt.Packet[] = [];
  #pausedForAuth = false;
  readonly #deniedLogged = new Set<string>();
  /** The will from CONNECT, until a clean DISCONNECT discards it or it is published. */
  will: { subject: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean } | undefined;
  protocolVersion: 3 | 4 = 4;
  readonly subscriptions = new Map<string, Subscription>();
  /**
   * Inbound QoS 2 packet ids not yet released by PUBREL: `committing` until the message
   * is stored, then `received` (PUBREC sent).
   */
  readonly awaitingRelease = new Map<number, "committing" | "received">();
  readonly #parser = mqtt.parser();
  #keepaliveMs = 0;
  #lastActivityMs = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #pendingCommits = 0;
  #paused = false;
  #idleWaiters: (() => void)[] = [];
  #closedWaiters: (() => void)[] = [];
  #nextPacketId = 1;
  readonly #inflight = new Map<number, { message: Envelope; qos: 1 | 2; released: boolean }>();
  readonly #queued: { message: Envelope; qos: 1 | 2 }[] = [];
  readonly #subscriber = { deliver: (m: Envelope) => this.#deliver(m) };

  constructor(broker: Broker, transport: Transport) {
    this.broker = broker;
    this.transport = transport;
    this.#parser.on("packet", (packet) => this.#dispatch(packet));
    this.#parser.on("error", (err: Error) => this.#onParseError(err));
    this.#timer = setTimeout(() => {
      if (this.state === "awaiting-connect" || this.state === "authenticating") {
        this.close("connect-timeout");
      }
    }, broker.options.connectTimeoutMs);
  }

  /** The bus subscriber that feeds this client's subscriptions. */
  get subscriber(): { deliver(m: Envelope): undefined } {
    return this.#subscriber;
  }

  onData(chunk: Buffer): void {
    if (this.state === "closing" || this.state === "closed") return;
    this.#lastActivityMs = Date.now();
    this.#parser.parse(chunk);
    // mqtt-packet buffers a whole packet before parsing it: refuse one that announces
    // more than the limit as soon as its length is known, before buffering it all.
    const announced = (this.#parser as unknown as { packet?: { length?: number } }).packet?.length;
    if (announced !== undefined && announced > 0 && this.#isOpen()) this.#checkSize(announced);
  }

  /** Refuses a packet over mqtt.max_packet_size; true when it was refused. */
  #checkSize(remainingLength: number): boolean {
    const size = packetSize(remainingLength);
    if (size <= this.broker.options.maxPacketSize) return false;
    this.protocolError(
      new MqttProtocolError(
        "packetTooLarge",
        `${size} bytes, limit ${this.broker.options.maxPacketSize}`,
      ),
    );
    return true;
  }

  #isOpen(): boolean {
    return (
      this.state === "awaiting-connect" ||
      this.state === "authenticating" ||
      this.state === "connected"
    );
  }

  onClose(error?: Error): void {
    if (this.state === "closed") return;
    const wasClosing = this.state === "closing";
    this.state = "closed";
    clearTimeout(this.#timer);
    for (const sub of this.subscriptions.values()) sub.unsubscribe();
    this.subscriptions.clear();
    this.broker.forget(this);
    if (!wasClosing) this.#publishWill();
    if (!wasClosing) {
      const reason = error ? "socket-error" : "peer-closed";
      this.broker.metrics.closed.inc({ reason });
      this.broker.log.debug(
        { client: this.clientId, remote: this.transport.remote, err: error?.message },
        "mqtt connection lost",
      );
    }
    for (const wake of this.#closedWaiters) wake();
    this.#closedWaiters = [];
    for (const wake of this.#idleWaiters) wake();
    this.#idleWaiters = [];
  }

  #dispatch(packet: mqtt.Packet): void {
    if (this.state === "closing" || this.state === "closed") return;
    if (packet.length !== undefined && this.#checkSize(packet.length)) return;
    if (this.state === "authenticating") {
      if (this.#held.length >= MAX_HELD_PACKETS) {
        this.protocolError(new MqttProtocolError("malformed", "too many packets before CONNACK"));
        return;
      }
      this.#held.push(packet);
      return;
    }
    try {
      if (this.state === "awaiting-connect") {
        if (packet.cmd !== "connect") throw new MqttProtocolError("firstPacketNotConnect");
        handleConnect(this, packet);
        return;
      }
      switch (packet.cmd) {
        case "publish":
          handlePublish(this, packet);
          break;
        case "puback":
          handlePuback(this, packet);
          break;
        case "pubrel":
          handlePubrel(this, packet);
          break;
        case "subscribe":
          handleSubscribe(this, packet);
          break;
        case "unsubscribe":
          handleUnsubscribe(this, packet);
          break;
        case "pingreq":
          this.transport.write(encodeAck("pingresp"));
          break;
        case "disconnect":
          // A clean DISCONNECT discards the will [MQTT-3.1.2-10].
          this.will = undefined;
          this.close("client-disconnect");
          break;
        case "connect":
          throw new MqttProtocolError("secondConnect");
        case "pubrec":
          this.received(packet.messageId ?? 0);
          break;
        case "pubcomp":
          this.acknowledge(packet.messageId ?? 0, "pubcomp");
          break;
        case "auth":
          throw new MqttProtocolError("unsupportedPacket", "AUTH");
        default:
          throw new MqttProtocolError("serverOnlyPacket", packet.cmd.toUpperCase());
      }
    } catch (err) {
      if (err instanceof MqttProtocolError) this.protocolError(err);
      else
        this.protocolError(new MqttProtocolError("malformed", errorMessage(err), { cause: err }));
    }
  }

  #onParseError(err: Error): void {
    if (this.state === "closing" || this.state === "closed") return;
    // mqtt-packet rejects an unknown protocol level itself; the spec still wants a
    // CONNACK 0x01 before the close [MQTT-3.1.2-2].
    if (this.state === "awaiting-connect" && /protocol version/i.test(err.message)) {
      this.transport.write(encodeConnack(1));
      this.protocolError(new MqttProtocolError("unsupportedProtocol", err.message));
      return;
    }
    this.protocolError(new MqttProtocolError("malformed", err.message));
  }

  /** Closes the connection for breaking the protocol: counted and logged once. */
  protocolError(err: MqttProtocolError): void {
    this.broker.metrics.protocolErrors.inc({ violation: err.violation });
    this.broker.logProtocolError(
      {
        client: this.clientId,
        remote: this.transport.remote,
        violation: err.violation,
        rule: err.rule,
      },
      `mqtt protocol error, closing connection: ${err.message}`,
    );
    this.close(`protocol-error`, true);
  }

  /** One log line per client and kind: a misconfigured device must not flood the log. */
  logDenied(kind: "publish" | "subscribe", topic: string): void {
    if (this.#deniedLogged.has(kind)) return;
    this.#deniedLogged.add(kind);
    this.broker.log.warn(
      { client: this.clientId, user: this.user, topic },
      `mqtt ${kind} denied by permissions (further denials of this client are only counted)`,
    );
  }

  /** CONNECT is being checked: hold further packets and stop reading. */
  beginAuthentication(): void {
    this.state = "authenticating";
    this.#pausedForAuth = true;
    this.transport.pause();
  }

  /** CONNECT accepted: read again and handle what arrived meanwhile, in order. */
  endAuthentication(): void {
    if (!this.#pausedForAuth) return;
    this.#pausedForAuth = false;
    const held = this.#held;
    this.#held = [];
    for (const packet of held) this.#dispatch(packet);
    if (this.state === "connected" && !this.#paused) this.transport.resume();
  }

  /** Starts keepalive supervision once CONNECT has been accepted. */
  startKeepalive(keepaliveS: number): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (keepaliveS === 0) return;
    this.#keepaliveMs = keepaliveS * 1000 * KEEPALIVE_GRACE;
    this.#armKeepalive(this.#keepaliveMs);
  }

  #armKeepalive(delayMs: number): void {
    this.#timer = setTimeout(() => {
      const idleMs = Date.now() - this.#lastActivityMs;
      if (idleMs >= this.#keepaliveMs) this.close("keepalive-timeout");
      else this.#armKeepalive(this.#keepaliveMs - idleMs);
    }, delayMs);
  }

  /**
   * Tracks a durable commit the client waits on; pauses reading while too many are
   * pending so a fast publisher cannot outrun the disk.
   */
  trackCommit(
    commit: Promise<void>,
    onCommitted: () => void,
    onFailed: (err: unknown) => void,
  ): void {
    this.#pendingCommits++;
    if (!this.#paused && this.#pendingCommits >= this.broker.options.maxPendingCommits) {
      this.#paused = true;
      this.transport.pause();
    }
    const settle = (): void => {
      this.#pendingCommits--;
      if (this.#paused && this.#pendingCommits <= this.broker.options.maxPendingCommits / 2) {
        this.#paused = false;
        if (this.state === "connected") this.transport.resume();
      }
      if (this.#pendingCommits === 0) {
        for (const wake of this.#idleWaiters) wake();
        this.#idleWaiters = [];
      }
    };
    // The ack is written before `settle` may end a closing connection's transport.
    commit.then(
      () => {
        try {
          onCommitted();
        } finally {
          settle();
        }
      },
      (err: unknown) => {
        try {
          onFailed(err);
        } finally {
          settle();
        }
      },
    );
  }

  /** Writes a packet if the connection can still carry it. */
  send(bytes: Uint8Array): void {
    if (this.state === "closed") return;
    this.transport.write(bytes);
  }

  /** Closes the connection; `now` skips waiting for pending commits (protocol errors). */
  close(reason: string, now = false): void {
    if (this.state === "closing" || this.state === "closed") return;
    // Closed by the server for a fault (keepalive, protocol error, takeover): the will is
    // published [MQTT-3.1.2-8]. A gateway shutdown is not the client's failure.
    if (reason !== "shutdown") this.#publishWill();
    this.state = "closing";
    clearTimeout(this.#timer);
    this.transport.pause();
    if (reason !== "protocol-error") {
      this.broker.log.debug({ client: this.clientId, reason }, "mqtt connection closing");
    }
    this.broker.metrics.closed.inc({ reason });
    if (now || this.#pendingCommits === 0) {
      this.transport.end();
      return;
    }
    // Let committed messages get their acks before the socket goes.
    this.#idleWaiters.push(() => this.transport.end());
  }

  /** Closes and resolves once the transport is gone. */
  closeAndWait(reason: string): Promise<void> {
    if (this.state === "closed") return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.#closedWaiters.push(resolve));
    this.close(reason);
    return closed;
  }

  // -- outbound delivery ---------------------------------------------------------

  #deliver(message: Envelope): undefined {
    if (this.state !== "connected") return undefined;
    if (!this.permissions.mayReceive(message.subject)) return undefined;
    // Overlapping subscriptions: deliver once, at the highest granted QoS [MQTT-3.3.5-1].
    let granted = -1;
    const dollar = message.subject.charCodeAt(0) === DOLLAR;
    for (const sub of this.subscriptions.values()) {
      if (sub.qos <= granted) continue;
      // Filters starting with a wildcard do not match topics starting with $ [MQTT-4.7.2-1].
      if (dollar && sub.leadingWildcard) continue;
      for (const pattern of sub.patterns) {
        if (subjectMatches(pattern, message.subject)) {
          granted = sub.qos;
          break;
        }
      }
    }
    if (granted < 0) return undefined;
    this.#send(message, Math.min(granted, message.qos) as 0 | 1 | 2);
    return undefined;
  }

  /** Publishes the will, once, as if the client had published it. */
  #publishWill(): void {
    const will = this.will;
    this.will = undefined;
    if (will === undefined) return;
    const { broker } = this;
    const message: Envelope = {
      subject: will.subject,
      payload: will.payload,
      receivedAtMs: Date.now(),
      origin: "mqtt",
      qos: will.qos,
      retain: will.retain,
    };
    if (will.retain)
      broker.retained?.set(will.subject, will.payload, will.qos, message.receivedAtMs);
    broker.metrics.wills.inc();
    broker.bus.publish(message).catch((err) => {
      broker.metrics.dropped.inc({ reason: "will-not-stored" });
      broker.log.warn({ client: this.clientId, err: errorMessage(err) }, "will not stored");
    });
  }

  /**
   * Sends the retained messages a new subscription matches, with the retain flag set
   * [MQTT-3.3.1-6]; wildcard-first filters skip `$` topics [MQTT-4.7.2-1].
   */
  deliverRetained(sub: Subscription, messages: readonly RetainedMessage[]): void {
    if (this.state !== "connected") return;
    for (const m of messages) {
      if (sub.leadingWildcard && m.subject.charCodeAt(0) === DOLLAR) continue;
      if (!this.permissions.mayReceive(m.subject)) continue;
      const copy: Envelope = {
        subject: m.subject,
        payload: m.payload,
        receivedAtMs: m.receivedAtMs,
        origin: "internal",
        qos: m.qos,
        retain: true,
      };
      RETAINED_COPIES.add(copy);
      this.#send(copy, Math.min(sub.qos, m.qos) as 0 | 1 | 2);
    }
  }

  #send(message: Envelope, qos: 0 | 1 | 2): void {
    if (qos === 0) {
      if (this.transport.writableLength > this.broker.options.maxWriteBufferBytes) {
        this.broker.metrics.dropped.inc({ reason: "slow-consumer" });
        return;
      }
      this.#writePublish(message, 0, 0);
      return;
    }
    if (this.#inflight.size < this.broker.options.maxInflight) {
      this.#sendAcked(message, qos);
    } else if (this.#queued.length < this.broker.options.maxQueued) {
      this.#queued.push({ message, qos });
    } else {
      this.broker.metrics.dropped.inc({ reason: "queue-full" });
    }
  }

  #sendAcked(message: Envelope, qos: 1 | 2): void {
    let id = this.#nextPacketId;
    while (this.#inflight.has(id)) id = (id % MAX_PACKET_ID) + 1;
    this.#nextPacketId = (id % MAX_PACKET_ID) + 1;
    this.#inflight.set(id, { message, qos, released: false });
    this.#writePublish(message, qos, id);
  }

  #writePublish(message: Envelope, qos: 0 | 1 | 2, packetId: number): void {
    try {
      // Live deliveries clear the retain flag [MQTT-3.3.1-9]; only retained copies sent
      // on SUBSCRIBE carry it.
      const retain = RETAINED_COPIES.has(message);
      this.transport.write(encodePublish(message.subject, message.payload, qos, packetId, retain));
      this.broker.metrics.sent.inc();
    } catch (err) {
      // A subject with no MQTT form cannot reach an MQTT client; it is not this client's fault.
      this.broker.metrics.dropped.inc({ reason: "untranslatable-subject" });
      this.broker.log.debug({ subject: message.subject, err: errorMessage(err) }, "not delivered");
    }
  }

  /**
   * PUBACK (QoS 1) or PUBCOMP (QoS 2) ends an outbound exchange: the slot is freed and
   * the next queued message goes. An ack of the wrong kind for the id is ignored.
   */
  acknowledge(packetId: number, kind: "puback" | "pubcomp" = "puback"): boolean {
    const entry = this.#inflight.get(packetId);
    if (entry === undefined) return false;
    if ((kind === "puback") !== (entry.qos === 1)) return false;
    this.#inflight.delete(packetId);
    const next = this.#queued.shift();
    if (next !== undefined) this.#sendAcked(next.message, next.qos);
    return true;
  }

  /** PUBREC for our QoS 2 PUBLISH: answer PUBREL [MQTT-4.3.3-1]; repeat it if asked again. */
  received(packetId: number): void {
    const entry = this.#inflight.get(packetId);
    if (entry === undefined || entry.qos !== 2) return;
    entry.released = true;
    this.send(encodeAck("pubrel", packetId));
  }
}
