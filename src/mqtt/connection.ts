import mqtt from "mqtt-packet";
import type { Envelope } from "../core/index.js";
import { errorMessage, toTopic } from "../core/index.js";
import type { RetainedMessage } from "../store/index.js";
import { ALLOW_ALL, type Permissions } from "./auth.js";
import { type Broker, clip } from "./broker.js";
import { MqttProtocolError, REASON, type Violation } from "./errors.js";
import { type FrameError, PacketFramer } from "./framer.js";
import { handleConnect } from "./handlers/connect.js";
import { handleDisconnect } from "./handlers/disconnect.js";
import { handlePublish, handlePubrel } from "./handlers/publish.js";
import { handleSubscribe } from "./handlers/subscribe.js";
import { handleUnsubscribe } from "./handlers/unsubscribe.js";
import { encodeAck, encodeConnack, encodePublish, encodeV5 } from "./packets.js";
import { encodePublishProperties, headersToProperties } from "./properties.js";
import type { Outbound, Session, Subscription, Will } from "./session.js";
import type { Transport, TransportHandler } from "./transport.js";
import { checkPacket } from "./validate.js";

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

/** What the framer's refusals break. */
const FRAME_VIOLATION = {
  malformed: "malformed",
  tooLarge: "packetTooLarge",
  firstTooLarge: "connectTooLarge",
} as const satisfies Record<FrameError, Violation>;

/** Keepalive is enforced at one and a half times the negotiated interval [MQTT-3.1.2-24]. */
const KEEPALIVE_GRACE = 1.5;
const DOLLAR = "$".charCodeAt(0);
/** Packets a client may send behind CONNECT before its CONNACK (authentication pending). */
const MAX_HELD_PACKETS = 100;
/**
 * Reason Strings are for people reading logs; long details are cut to this many bytes. It
 * keeps a DISCONNECT's property section under 128 bytes, a one-byte length: some client
 * parsers (the Paho MQTT 5 interop suite's among them) misread a two-byte one.
 */
const MAX_REASON_STRING_BYTES = 100;
/** MQTT 5 Receive Maximum when the client names none (section 3.1.2.11.3). */
const DEFAULT_RECEIVE_MAXIMUM = 65_535;
/**
 * From `mqtt.max_outbound_bytes / SOFT_MARK_DIVISOR` unsent on, the client is behind:
 * reading from it pauses (its PINGREQs and PUBLISHes cannot make us write more: TCP pushes
 * back on it) and deliveries wait. The rest of the cap is room for what is already owed
 * when it falls behind: one delivery (config keeps max_packet_size at most half the cap)
 * and the answers to one read of the socket.
 */
const SOFT_MARK_DIVISOR = 8;
/** PUBREC with a reason code from this on ends a QoS 2 exchange (section 4.3.3). */
const PUBREC_ERROR = 0x80;

/** Why the server closes a connection: an MQTT 5 DISCONNECT reason code and its words. */
const DISCONNECT_REASON: Readonly<Record<string, { code: number; words: string }>> = {
  "keepalive-timeout": { code: REASON.keepAliveTimeout, words: "keep alive timeout" },
  "taken-over": {
    code: REASON.sessionTakenOver,
    words: "session taken over by another connection",
  },
  shutdown: { code: REASON.serverShuttingDown, words: "the gateway is shutting down" },
  // An administratively imposed limit: mqtt.max_outbound_bytes, or behind for a keepalive.
  "slow-consumer": {
    code: REASON.quotaExceeded,
    words: "slow consumer: the client does not read what is sent to it",
  },
};

export class Connection implements TransportHandler {
  readonly broker: Broker;
  readonly transport: Transport;
  state: ConnectionState = "awaiting-connect";
  clientId: string | undefined;
  /** The authenticated user, when the client logged in as one. */
  user: string | undefined;
  permissions: Permissions = ALLOW_ALL;
  session: Session | undefined;
  protocolVersion: 3 | 4 | 5 = 4;
  /** The will from CONNECT, until a clean DISCONNECT discards it or it is released. */
  will: Will | undefined;
  /** CONNACK went out: from now on MQTT 5 errors are told with DISCONNECT. */
  connackSent = false;
  /** MQTT 5: the session expiry CONNECT asked for was 0 (DISCONNECT may not raise it). */
  connectExpiryWasZero = false;
  /** MQTT 5 limits the client announced in CONNECT. */
  receiveMaximum = DEFAULT_RECEIVE_MAXIMUM;
  clientMaxPacketSize = Number.POSITIVE_INFINITY;
  clientTopicAliasMaximum = 0;
  /** Inbound topic aliases (MQTT 5 section 3.3.2.3.4), this connection only. */
  readonly aliasesIn = new Map<number, string>();
  readonly #aliasesOut = new Map<string, number>();
  #window = 0;
  /** Packets that arrived while CONNECT was being authenticated, replayed after. */
  #held: { packet: mqtt.Packet; raw: Buffer }[] = [];
  #pausedForAuth = false;
  readonly #deniedLogged = new Set<string>();
  readonly #parser = mqtt.parser();
  readonly #framer: PacketFramer;
  #raw: Buffer = Buffer.alloc(0);
  #keepaliveMs = 0;
  #lastActivityMs = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #pendingCommits = 0;
  /** Reading paused: too many commits pending. */
  #paused = false;
  /** Reading paused: the client is behind on reading (see SOFT_MARK_DIVISOR). */
  #pausedForOutput = false;
  /** Bytes of deliveries decided on but written only after a commit (see `reserve`). */
  #reservedBytes = 0;
  readonly #softMarkBytes: number;
  /** Inbound QoS 1/2 packet ids not yet answered with PUBACK, PUBCOMP or an error PUBREC. */
  readonly #inboundUnanswered = new Set<number>();
  #idleWaiters: (() => void)[] = [];
  #closedWaiters: (() => void)[] = [];
  /** A callback of this connection failed (a bug, counted by the guard): only it is cut. */
  readonly #cut = (): void => this.transport.destroy();

  constructor(broker: Broker, transport: Transport) {
    this.broker = broker;
    this.transport = transport;
    this.#softMarkBytes = Math.floor(broker.options.maxOutboundBytes / SOFT_MARK_DIVISOR);
    this.#framer = new PacketFramer(
      broker.options.maxPacketSize,
      (raw) => {
        this.#raw = raw;
        this.#parser.parse(raw);
      },
      (error, detail) => this.protocolError(new MqttProtocolError(FRAME_VIOLATION[error], detail)),
      // Before CONNECT nothing is known of the client: its first packet is held to less.
      broker.options.maxConnectSize,
    );
    this.#parser.on("packet", (packet) => this.#dispatch(packet, this.#raw));
    this.#parser.on("error", (err: Error) => this.#onParseError(err));
    this.#timer = setTimeout(
      broker.guard.wrap(
        "mqtt.connect-timeout",
        () => {
          if (this.state === "awaiting-connect" || this.state === "authenticating") {
            this.close("connect-timeout");
          }
        },
        this.#cut,
      ),
      broker.options.connectTimeoutMs,
    );
  }

  onData(chunk: Buffer): void {
    if (this.state === "closing" || this.state === "closed") return;
    this.#lastActivityMs = Date.now();
    this.#framer.push(chunk);
  }

  /** The peer took every queued byte: read again, and send what waited. */
  onDrain(): void {
    if (this.state !== "connected") return;
    if (this.#pausedForOutput && !this.#behind()) {
      this.#pausedForOutput = false;
      if (!this.#paused && !this.#pausedForAuth) this.transport.resume();
    }
    this.session?.pump();
  }

  onClose(error?: Error): void {
    if (this.state === "closed") return;
    const wasClosing = this.state === "closing";
    this.state = "closed";
    clearTimeout(this.#timer);
    this.#framer.stop();
    // Runs from a socket event: a failure here must not reach the process, nor keep the
    // waiters below from waking.
    this.broker.guard.run("mqtt.connection-cleanup", () => {
      if (!wasClosing) this.#releaseWill();
      this.broker.forget(this);
    });
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

  #dispatch(packet: mqtt.Packet, raw: Buffer): void {
    if (this.state === "closing" || this.state === "closed") return;
    if (this.state === "authenticating") {
      if (this.#held.length >= MAX_HELD_PACKETS) {
        this.protocolError(new MqttProtocolError("malformed", "too many packets before CONNACK"));
        return;
      }
      this.#held.push({ packet, raw });
      return;
    }
    try {
      checkPacket(
        packet,
        raw,
        this.protocolVersion === 5 || (packet.cmd === "connect" && packet.protocolVersion === 5),
        this.broker.options,
      );
      if (this.state === "awaiting-connect") {
        if (packet.cmd !== "connect") throw new MqttProtocolError("firstPacketNotConnect");
        this.#framer.setVersion((packet.protocolVersion ?? 4) as 3 | 4 | 5);
        handleConnect(this, packet);
        return;
      }
      const session = this.session!;
      switch (packet.cmd) {
        case "publish":
          handlePublish(this, packet, raw);
          break;
        case "puback":
          session.acknowledge(packet.messageId ?? 0, "puback");
          break;
        case "pubrec":
          // A PUBREC with an error reason ends the exchange (section 4.3.3).
          if ((packet.reasonCode ?? 0) >= 0x80) {
            session.acknowledge(packet.messageId ?? 0, "pubrec-error");
          } else {
            session.received(packet.messageId ?? 0);
          }
          break;
        case "pubrel":
          handlePubrel(this, packet);
          break;
        case "pubcomp":
          session.acknowledge(packet.messageId ?? 0, "pubcomp");
          break;
        case "subscribe":
          handleSubscribe(this, packet);
          break;
        case "unsubscribe":
          handleUnsubscribe(this, packet);
          break;
        case "pingreq":
          this.#write(encodeAck("pingresp"));
          break;
        case "disconnect":
          handleDisconnect(this, packet);
          break;
        case "connect":
          throw new MqttProtocolError("secondConnect");
        case "auth":
          // No authentication method was agreed in CONNECT [MQTT-4.12.0-1].
          if (this.protocolVersion === 5) {
            throw new MqttProtocolError("protocolError", "AUTH without an authentication method");
          }
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
      this.#write(encodeConnack(1));
      this.protocolError(new MqttProtocolError("unsupportedProtocol", err.message));
      return;
    }
    this.protocolError(new MqttProtocolError("malformed", err.message));
  }

  /** Closes the connection for breaking the protocol: counted and logged once. */
  protocolError(err: MqttProtocolError): void {
    if (this.state === "closing" || this.state === "closed") return;
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
    // MQTT 5: the reason goes in a DISCONNECT once CONNACK is out [MQTT-4.13.1-1].
    const disconnect = { code: err.reasonCode, words: err.message };
    if (err.violation === "receiveMaxExceeded") {
      // Flow control, not garbage: what was taken before still gets its ack (acknowledged
      // means stored), then the DISCONNECT.
      this.close("protocol-error", false, disconnect);
      return;
    }
    this.#sendDisconnect(disconnect.code, disconnect.words);
    this.close("protocol-error", true);
  }

  /** A Reason String says why in words; DISCONNECT may carry one whatever the client asked. */
  #sendDisconnect(reasonCode: number, reason: string): void {
    if (this.protocolVersion !== 5 || !this.connackSent || this.state === "closed") return;
    const reasonString = cutUtf8(reason, MAX_REASON_STRING_BYTES);
    const withReason = encodeV5({ cmd: "disconnect", reasonCode, properties: { reasonString } });
    // Not above the client's Maximum Packet Size: the words go first [MQTT-3.14.2-3].
    this.transport.write(
      withReason.length <= this.clientMaxPacketSize
        ? withReason
        : encodeV5({ cmd: "disconnect", reasonCode }),
    );
  }

  /** One log line per client and kind: a misconfigured device must not flood the log. */
  logDenied(kind: "publish" | "subscribe", topic: string): void {
    if (this.#deniedLogged.has(kind)) return;
    this.#deniedLogged.add(kind);
    // Client-chosen text, and connections can be cycled: cut short and rate-limited.
    this.broker.refusalLog.warn(
      { client: clip(this.clientId), user: clip(this.user), topic: clip(topic) },
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
    for (const { packet, raw } of held) this.#dispatch(packet, raw);
    if (this.state === "connected" && !this.#paused && !this.#pausedForOutput) {
      this.transport.resume();
    }
  }

  /** The window for outbound QoS 1/2: ours, or the client's Receive Maximum if smaller. */
  setWindow(receiveMaximum: number): void {
    this.receiveMaximum = receiveMaximum;
    this.#window = Math.min(this.broker.options.maxInflight, receiveMaximum);
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
    this.#timer = setTimeout(
      this.broker.guard.wrap(
        "mqtt.keepalive",
        () => {
          const idleMs = Date.now() - this.#lastActivityMs;
          if (idleMs < this.#keepaliveMs) {
            this.#armKeepalive(this.#keepaliveMs - idleMs);
          } else if (this.#pausedForOutput) {
            // Not heard from because we stopped reading it: it did not read us for that long.
            this.#cutSlowConsumer();
          } else {
            this.close("keepalive-timeout");
          }
        },
        this.#cut,
      ),
      delayMs,
    );
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
        if (this.state === "connected" && !this.#pausedForOutput) this.transport.resume();
      }
      if (this.#pendingCommits === 0) {
        for (const wake of this.#idleWaiters) wake();
        this.#idleWaiters = [];
      }
    };
    // The ack is written before `settle` may end a closing connection's transport.
    const { guard } = this.broker;
    commit.then(
      guard.wrap(
        "mqtt.commit",
        () => {
          try {
            onCommitted();
          } finally {
            settle();
          }
        },
        this.#cut,
      ),
      guard.wrap(
        "mqtt.commit",
        (err: unknown) => {
          try {
            onFailed(err);
          } finally {
            settle();
          }
        },
        this.#cut,
      ),
    );
  }

  /** Writes a packet if the connection can still carry it. */
  send(bytes: Uint8Array): void {
    if (this.state === "closed") return;
    this.#write(bytes);
  }

  /**
   * A QoS 1/2 PUBLISH from the client: one more it has unanswered. An MQTT 5 client past
   * our Receive Maximum breaks [MQTT-3.3.4-7] and is told 0x93. A resent PUBLISH with an
   * id still open counts once.
   */
  inboundPublish(packetId: number): void {
    this.#inboundUnanswered.add(packetId);
    const max = this.broker.options.receiveMaximum;
    if (this.protocolVersion === 5 && this.#inboundUnanswered.size > max) {
      throw new MqttProtocolError(
        "receiveMaxExceeded",
        `${this.#inboundUnanswered.size} unanswered, Receive Maximum ${max}`,
      );
    }
  }

  /**
   * Answers a QoS 1/2 PUBLISH of the client. PUBACK, PUBCOMP and a PUBREC with an error
   * end its exchange, and give the client its quota back (section 4.9).
   */
  sendInboundAck(kind: "puback" | "pubrec" | "pubcomp", packetId: number, reasonCode = 0): void {
    if (kind !== "pubrec" || reasonCode >= PUBREC_ERROR) this.#inboundUnanswered.delete(packetId);
    this.send(encodeAck(kind, packetId, reasonCode));
  }

  /**
   * Every write goes through here. A client that is behind stops being read; one whose
   * unsent bytes still grow past `mqtt.max_outbound_bytes` is cut.
   */
  #write(bytes: Uint8Array): void {
    this.transport.write(bytes);
    const unsent = this.transport.writableLength;
    if (unsent < this.#softMarkBytes) return;
    if (unsent > this.broker.options.maxOutboundBytes) {
      this.#cutSlowConsumer();
      return;
    }
    if (this.#pausedForOutput || this.state !== "connected") return;
    this.#pausedForOutput = true;
    if (!this.#paused && !this.#pausedForAuth) this.transport.pause();
  }

  /** True while the client has (or will have, after pending commits) a soft mark unsent. */
  #behind(): boolean {
    return this.transport.writableLength + this.#reservedBytes >= this.#softMarkBytes;
  }

  /**
   * A delivery of about `bytes` will be written once the session store commits: counted as
   * unsent from now, so that one commit cannot release a whole window past the soft mark.
   */
  reserve(bytes: number): void {
    this.#reservedBytes += bytes;
  }

  /** The reserved delivery is being written now (or dropped). */
  release(bytes: number): void {
    this.#reservedBytes -= bytes;
  }

  /** Counted, logged (rate-limited), told 0x97 in MQTT 5, and closed without waiting. */
  #cutSlowConsumer(): void {
    if (this.state === "closing" || this.state === "closed") return;
    this.broker.metrics.slowConsumers.inc();
    this.broker.logSlowConsumer(
      {
        client: this.clientId,
        remote: this.transport.remote,
        unsentBytes: this.transport.writableLength,
        maxOutboundBytes: this.broker.options.maxOutboundBytes,
      },
      "mqtt slow consumer: the client does not read what is sent to it; closing the connection",
    );
    this.close("slow-consumer", true);
  }

  /**
   * Closes the connection; `now` skips waiting for pending commits (protocol errors).
   * MQTT 5 clients are told why with a DISCONNECT (`disconnect`) where the spec has a reason code.
   */
  close(
    reason: string,
    now = false,
    disconnect: { code: number; words: string } | undefined = DISCONNECT_REASON[reason],
  ): void {
    if (this.state === "closing" || this.state === "closed") return;
    // Closed by the server for a fault (keepalive, protocol error, takeover): the will is
    // released [MQTT-3.1.2-8]. A gateway shutdown is not the client's failure.
    if (reason !== "shutdown") this.#releaseWill();
    this.state = "closing";
    clearTimeout(this.#timer);
    this.#framer.stop();
    this.transport.pause();
    if (reason !== "protocol-error") {
      this.broker.log.debug({ client: this.clientId, reason }, "mqtt connection closing");
    }
    this.broker.metrics.closed.inc({ reason });
    const end = (): void => {
      // DISCONNECT is the last packet on the connection [MQTT-3.14.4-1]: after the acks.
      if (disconnect !== undefined) this.#sendDisconnect(disconnect.code, disconnect.words);
      // A slow consumer does not read: its backlog of packets is not read in either.
      this.transport.end(reason !== "slow-consumer");
    };
    if (now || this.#pendingCommits === 0) {
      end();
      return;
    }
    // Let committed messages get their acks before the socket goes.
    this.#idleWaiters.push(end);
  }

  /** Closes and resolves once the transport is gone. */
  closeAndWait(reason: string): Promise<void> {
    if (this.state === "closed") return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.#closedWaiters.push(resolve));
    this.close(reason);
    return closed;
  }

  /**
   * The will goes out now, or after its delay if the session outlives the connection
   * (MQTT 5 Will Delay Interval; the session publishes it when it ends, if sooner).
   */
  #releaseWill(): void {
    const will = this.will;
    this.will = undefined;
    if (will === undefined || this.clientId === undefined) return;
    const session = this.session;
    if (will.delayMs > 0 && session !== undefined && session.persistent) {
      session.delayWill(will, will.delayMs);
      return;
    }
    this.broker.publishWill(this.clientId, will);
  }

  // -- outbound delivery ---------------------------------------------------------

  /** True while another QoS 1/2 message may go out: room in the window, client not behind. */
  hasWindow(inflight: number): boolean {
    return this.state === "connected" && inflight < this.#window && !this.#behind();
  }

  /** A QoS 0 delivery: dropped for a client that is behind on reading. */
  sendQos0(message: Envelope, retain: boolean, subscriptionIds?: readonly number[]): void {
    if (this.state !== "connected") return;
    if (this.#behind()) {
      this.broker.metrics.dropped.inc({ reason: "slow-consumer" });
      return;
    }
    this.#writePublish(message, 0, 0, retain, false, subscriptionIds);
  }

  /** A QoS 1/2 delivery with its packet id; false when it cannot go to this client. */
  sendAcked(out: Outbound, dup: boolean): boolean {
    if (this.state !== "connected") return true;
    return this.#writePublish(
      out.message,
      out.qos,
      out.packetId,
      out.retain,
      dup,
      out.subscriptionIds,
    );
  }

  #writePublish(
    message: Envelope,
    qos: 0 | 1 | 2,
    packetId: number,
    retain: boolean,
    dup: boolean,
    subscriptionIds: readonly number[] | undefined,
  ): boolean {
    if (!this.permissions.mayReceive(message.subject)) return false;
    let topic: string;
    try {
      topic = toTopic(message.subject);
    } catch (err) {
      // A subject with no MQTT form cannot reach an MQTT client; it is not this client's fault.
      this.broker.metrics.dropped.inc({ reason: "untranslatable-subject" });
      this.broker.log.debug({ subject: message.subject, err: errorMessage(err) }, "not delivered");
      return false;
    }
    if (this.protocolVersion !== 5) {
      const bytes = encodePublish(topic, message.payload, qos, packetId, retain, dup);
      if (!this.#fitsOutbound(bytes)) {
        this.broker.metrics.dropped.inc({ reason: "too-large-for-client" });
        return false;
      }
      this.#write(bytes);
      this.broker.metrics.sent.inc();
      return true;
    }
    let alias = this.#aliasesOut.get(topic);
    let newAlias = false;
    if (alias === undefined && this.#aliasesOut.size < this.clientTopicAliasMaximum) {
      alias = this.#aliasesOut.size + 1;
      newAlias = true;
    }
    const properties =
      message.properties ??
      (message.headers !== undefined ? headersToProperties(message.headers) : undefined);
    const expiresAtMs = message.expiresAtMs;
    const props = encodePublishProperties({
      properties,
      // The interval left: the time the message waited is taken off [MQTT-3.3.2-6].
      messageExpiryS:
        expiresAtMs === undefined
          ? undefined
          : Math.max(1, Math.ceil((expiresAtMs - Date.now()) / 1000)),
      topicAlias: alias,
      subscriptionIds,
    });
    // QoS 2 deliveries always name their topic: mqtt.js 5 keeps the PUBLISH until PUBREL
    // and then emits it with the empty topic an alias left.
    const bytes = encodePublish(
      alias !== undefined && !newAlias && qos < 2 ? "" : topic,
      message.payload,
      qos,
      packetId,
      retain,
      dup,
      props,
    );
    // Never above the client's Maximum Packet Size: dropped as if sent [MQTT-3.1.2-24].
    if (bytes.length > this.clientMaxPacketSize || !this.#fitsOutbound(bytes)) {
      this.broker.metrics.dropped.inc({ reason: "too-large-for-client" });
      return false;
    }
    if (newAlias) this.#aliasesOut.set(topic, alias!);
    this.#write(bytes);
    this.broker.metrics.sent.inc();
    return true;
  }

  /**
   * A PUBLISH that would alone take up the room above the soft mark is never written: it
   * would cut the client. MQTT ones cannot be that large (max_packet_size is at most half
   * of max_outbound_bytes); a message from the hub or a serial device could.
   */
  #fitsOutbound(bytes: Uint8Array): boolean {
    return bytes.length <= this.broker.options.maxOutboundBytes - 2 * this.#softMarkBytes;
  }

  /**
   * Sends the retained messages a new subscription matches, with the retain flag set
   * [MQTT-3.3.1-6]; wildcard-first filters skip `$` topics [MQTT-4.7.2-1].
   */
  deliverRetained(sub: Subscription, messages: readonly RetainedMessage[]): void {
    if (this.state !== "connected") return;
    const ids = sub.subscriptionId !== undefined ? [sub.subscriptionId] : undefined;
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
        ...(m.properties !== undefined ? { properties: m.properties } : {}),
        ...(m.expiresAtMs !== undefined ? { expiresAtMs: m.expiresAtMs } : {}),
      };
      this.session?.offer(copy, Math.min(sub.qos, m.qos) as 0 | 1 | 2, true, ids);
    }
  }
}

/** `text` cut to at most `maxBytes` of UTF-8, never inside a character. */
export function cutUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > maxBytes) break;
    out += ch;
    bytes += size;
  }
  return out;
}
