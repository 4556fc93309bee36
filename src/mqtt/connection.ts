import mqtt from "mqtt-packet";
import { errorMessage } from "../core/index.js";
import { cutUtf8 } from "./client-text.js";
import { ClientView } from "./client-view.js";
import {
  type ConnectionState,
  type ConnectOutcome,
  DISCONNECT_REASON,
  type HeldPacket,
  type Link,
  type Negotiated,
  type ProtocolVersion,
  type Refusal,
} from "./connection-state.js";
import type { ConnectedClient, ConnectionContext } from "./context.js";
import { ClientOutput } from "./delivery.js";
import { FRAME_VIOLATION, MqttProtocolError } from "./errors.js";
import { Flow } from "./flow.js";
import { PacketFramer } from "./framer.js";
import {
  encodeAccepted,
  encodeRefusal,
  handleConnect,
  logAccepted,
  logRefusal,
} from "./handlers/connect.js";
import { dispatchPacket } from "./handlers/dispatch.js";
import { recheckSession } from "./handlers/resume.js";
import { Keepalive } from "./keepalive.js";
import { encodeConnack, encodeV5 } from "./packets.js";
import { PUBACK_TYPE, PUBLISH_TYPE, parsePuback311, parsePublish } from "./publish-parser.js";
import type { Session, Will } from "./session.js";
import type { Transport, TransportHandler } from "./transport.js";
import { checkPacket } from "./validate.js";

/** Packets a client may send behind CONNECT before its CONNACK (authentication pending). */
const MAX_HELD_PACKETS = 100;
/**
 * Reason Strings are for people reading logs; long details are cut to this many bytes. It
 * keeps a DISCONNECT's property section under 128 bytes, a one-byte length: some client
 * parsers (the Paho MQTT 5 interop suite's among them) misread a two-byte one.
 */
const MAX_REASON_STRING_BYTES = 100;

/**
 * One client connection: bytes in, packets dispatched to their handlers, packets out
 * under flow control. Its state (see connection-state.ts) changes only in this file.
 */
export class Connection implements TransportHandler {
  readonly ctx: ConnectionContext;
  readonly transport: Transport;
  #state: ConnectionState = { kind: "awaiting-connect" };
  /** The handlers' view of this connection, once CONNECT is accepted. */
  #client: ConnectedClient | undefined;
  /** What the session sends through. */
  readonly output: ClientOutput;
  readonly #flow: Flow;
  readonly #keepalive: Keepalive;
  readonly #parser = mqtt.parser();
  readonly #framer: PacketFramer;
  #raw: Buffer = Buffer.alloc(0);
  #closedWaiters: (() => void)[] = [];
  /** A callback of this connection failed (a bug, counted by the guard): only it is cut. */
  readonly #cut = (): void => this.transport.destroy();

  constructor(ctx: ConnectionContext, transport: Transport) {
    this.ctx = ctx;
    this.transport = transport;
    // The connection is its flow's host and its client view's ports itself: objects of
    // closures for them cost each of a thousand idle connections about 1 KiB.
    this.#flow = new Flow(ctx, this, this.#cut);
    this.#keepalive = new Keepalive(ctx, this.#cut);
    this.output = new ClientOutput(ctx, this.#flow, () => this.#state.kind === "connected");
    this.#framer = new PacketFramer(
      ctx.options.maxPacketSize,
      (raw) => {
        const s = this.#state;
        // PUBLISH and PUBACK, once connected, by hand-written parsers (publish-parser.ts).
        if (s.kind === "connected") {
          const type = raw[0]! >> 4;
          if (type === PUBLISH_TYPE) {
            this.#fastPublish(raw, s.link.version === 5);
            return;
          }
          if (type === PUBACK_TYPE && s.link.version !== 5) {
            this.#dispatch(parsePuback311(raw), raw);
            return;
          }
        }
        this.#raw = raw;
        this.#parser.parse(raw);
      },
      (error, detail) => this.protocolError(new MqttProtocolError(FRAME_VIOLATION[error], detail)),
      // Before CONNECT nothing is known of the client: its first packet is held to less.
      ctx.options.maxConnectSize,
    );
    this.#parser.on("packet", (packet) => this.#dispatch(packet, this.#raw));
    this.#parser.on("error", (err: Error) => this.#onParseError(err));
    this.#keepalive.connectDeadline(() => {
      const { kind } = this.#state;
      if (kind === "awaiting-connect" || kind === "authenticating") this.close("connect-timeout");
    });
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Past CONNACK and not closing (FlowHost, ClientPorts). */
  get connected(): boolean {
    return this.#state.kind === "connected";
  }

  /** What CONNECT settled, from CONNACK on (through closing and closed). */
  get #link(): Link | undefined {
    const s = this.#state;
    return s.kind === "connected" || s.kind === "closing" || s.kind === "closed"
      ? s.link
      : undefined;
  }

  get clientId(): string | undefined {
    return this.#link?.clientId;
  }

  get session(): Session | undefined {
    return this.#link?.session;
  }

  get protocolVersion(): ProtocolVersion {
    const s = this.#state;
    if (s.kind === "authenticating") return s.version;
    return this.#link?.version ?? 4;
  }

  get #closingOrClosed(): boolean {
    return this.#state.kind === "closing" || this.#state.kind === "closed";
  }

  onData(chunk: Buffer): void {
    if (this.#closingOrClosed) return;
    this.#keepalive.touch();
    this.#framer.push(chunk);
  }

  /** The peer took every queued byte: read again, and send what waited. */
  onDrain(): void {
    if (this.#state.kind !== "connected") return;
    this.#flow.drained();
    this.session?.owed.pump();
  }

  onClose(error?: Error): void {
    const s = this.#state;
    if (s.kind === "closed") return;
    const wasClosing = s.kind === "closing";
    this.#state = { kind: "closed", link: this.#link };
    this.#keepalive.stop();
    this.#framer.stop();
    // Runs from a socket event: a failure here must not reach the process, nor keep the
    // waiters below from waking.
    this.ctx.guard.run("mqtt.connection-cleanup", () => {
      if (!wasClosing) this.#releaseWill();
      this.ctx.forget(this);
    });
    if (!wasClosing) {
      const reason = error ? "socket-error" : "peer-closed";
      this.ctx.metrics.closed.inc({ reason });
      this.ctx.log.debug(
        { client: this.clientId, remote: this.transport.remote, err: error?.message },
        "mqtt connection lost",
      );
    }
    for (const wake of this.#closedWaiters) wake();
    this.#closedWaiters = [];
    this.#flow.wakeIdle();
  }

  #fastPublish(raw: Buffer, v5: boolean): void {
    let packet: mqtt.IPublishPacket;
    try {
      packet = parsePublish(raw, v5);
    } catch (err) {
      this.protocolError(err as MqttProtocolError);
      return;
    }
    this.#dispatch(packet, raw);
  }

  #dispatch(packet: mqtt.Packet, raw: Buffer): void {
    const s = this.#state;
    if (s.kind === "closing" || s.kind === "closed") return;
    if (s.kind === "authenticating") {
      if (s.held.length >= MAX_HELD_PACKETS) {
        this.protocolError(new MqttProtocolError("malformed", "too many packets before CONNACK"));
        return;
      }
      s.held.push({ packet, raw });
      return;
    }
    try {
      checkPacket(
        packet,
        raw,
        this.protocolVersion === 5 || (packet.cmd === "connect" && packet.protocolVersion === 5),
        this.ctx.options,
      );
      if (s.kind === "connected") {
        dispatchPacket(this.ctx, s.link, this.#client!, packet, raw);
        return;
      }
      if (packet.cmd !== "connect") throw new MqttProtocolError("firstPacketNotConnect");
      const version = (packet.protocolVersion ?? 4) as ProtocolVersion;
      this.#framer.setVersion(version);
      this.#connect(version, handleConnect(this.ctx, this.transport.remote, packet));
    } catch (err) {
      if (err instanceof MqttProtocolError) this.protocolError(err);
      else
        this.protocolError(new MqttProtocolError("malformed", errorMessage(err), { cause: err }));
    }
  }

  /** Applies what CONNECT came to: the one place a connection becomes connected. */
  #connect(version: ProtocolVersion, outcome: ConnectOutcome): void {
    if (outcome.kind === "refuse") {
      this.#refuse(version, outcome.refusal);
      return;
    }
    if (outcome.kind === "accept") {
      this.#accept(outcome.negotiated, []);
      return;
    }
    // CONNECT is being checked: hold further packets and stop reading.
    const held: HeldPacket[] = [];
    this.#state = { kind: "authenticating", version, held };
    this.#flow.pauseFor("auth");
    outcome.decided.then(
      this.ctx.guard.wrap(
        "mqtt.authenticated",
        (decide: () => ConnectOutcome) => {
          if (this.#state.kind !== "authenticating") return;
          const settled = decide();
          if (settled.kind === "accept") this.#accept(settled.negotiated, held);
          else if (settled.kind === "refuse") this.#refuse(version, settled.refusal);
        },
        this.#cut,
      ),
      this.#cut,
    );
  }

  /** Refuses CONNECT with the version's code, then closes [MQTT-3.2.2-6], [MQTT-3.2.2-7]. */
  #refuse(version: ProtocolVersion, refusal: Refusal): void {
    this.send(encodeRefusal(version, refusal));
    logRefusal(this.ctx, this.transport.remote, refusal);
    this.close(refusal.closeReason, true);
  }

  /** CONNECT accepted: the session is taken, CONNACK goes, then what was held and owed. */
  #accept(n: Negotiated, held: readonly HeldPacket[]): void {
    const { ctx } = this;
    ctx.established(this);
    const taken = ctx.sessions.take(
      n.account,
      n.clientId,
      this,
      n.cleanStart,
      n.expiryS * 1000,
      n.owner,
    );
    const { session, present } = taken;
    // Before anything owed goes out: the user's permissions may be narrower than when the
    // session was made (a config change across a restart).
    if (present) recheckSession(ctx, session, n.permissions);
    const link: Link = {
      version: n.version,
      clientId: n.clientId,
      user: n.user,
      permissions: n.permissions,
      session,
      limits: n.limits,
      connectExpiryWasZero: n.connectExpiryWasZero,
      window: Math.min(ctx.options.maxInflight, n.limits.receiveMaximum),
      will: n.will,
    };
    this.#state = { kind: "connected", link };
    this.#client = new ClientView(link, this.#flow, this);
    this.output.open(link);
    this.#keepalive.start(n.keepaliveS, () => {
      // Not heard from because we stopped reading it: it did not read us for that long.
      if (this.#flow.pausedFor("output")) this.#cutSlowConsumer();
      else this.close("keepalive-timeout");
    });
    this.send(encodeAccepted(ctx.options, n, present));
    logAccepted(ctx, this.transport.remote, n, present);
    // Owed messages follow CONNACK: in-flight ones again, then the queue [MQTT-4.4.0-1].
    session.attach(this, present);
    // Read again and handle what arrived meanwhile, in order.
    if (!this.#flow.clear("auth")) return;
    for (const { packet, raw } of held) this.#dispatch(packet, raw);
    this.#flow.resumeIfFree();
  }

  #onParseError(err: Error): void {
    if (this.#closingOrClosed) return;
    // mqtt-packet rejects an unknown protocol level itself; the spec still wants a
    // CONNACK 0x01 before the close [MQTT-3.1.2-2].
    if (this.#state.kind === "awaiting-connect" && /protocol version/i.test(err.message)) {
      this.#flow.write(encodeConnack(1));
      this.protocolError(new MqttProtocolError("unsupportedProtocol", err.message));
      return;
    }
    this.protocolError(new MqttProtocolError("malformed", err.message));
  }

  /** Closes the connection for breaking the protocol: counted and logged (rate-limited). */
  protocolError(err: MqttProtocolError): void {
    if (this.#closingOrClosed) return;
    this.ctx.metrics.protocolErrors.inc({ violation: err.violation });
    this.ctx.logs.client(
      "protocol-error",
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
    const link = this.#link;
    if (link === undefined || link.version !== 5 || this.#state.kind === "closed") return;
    const reasonString = cutUtf8(reason, MAX_REASON_STRING_BYTES);
    const withReason = encodeV5({ cmd: "disconnect", reasonCode, properties: { reasonString } });
    // Not above the client's Maximum Packet Size: the words go first [MQTT-3.14.2-3].
    this.transport.write(
      withReason.length <= link.limits.maxPacketSize
        ? withReason
        : encodeV5({ cmd: "disconnect", reasonCode }),
    );
  }

  /** Writes a packet if the connection can still carry it. */
  send(bytes: Uint8Array): void {
    if (this.#state.kind === "closed") return;
    this.#flow.write(bytes);
  }

  /** The client's unsent bytes went past `mqtt.max_outbound_bytes` (FlowHost). */
  overCap(): void {
    this.#cutSlowConsumer();
  }

  /** Counted, logged (rate-limited), told 0x97 in MQTT 5, and closed without waiting. */
  #cutSlowConsumer(): void {
    if (this.#closingOrClosed) return;
    this.ctx.metrics.slowConsumers.inc();
    this.ctx.logs.client(
      "slow-consumer",
      {
        client: this.clientId,
        remote: this.transport.remote,
        unsentBytes: this.transport.writableLength,
        maxOutboundBytes: this.ctx.options.maxOutboundBytes,
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
    if (this.#closingOrClosed) return;
    // Closed by the server for a fault (keepalive, protocol error, takeover): the will is
    // released [MQTT-3.1.2-8]. A gateway shutdown is not the client's failure.
    if (reason !== "shutdown") this.#releaseWill();
    this.#state = { kind: "closing", reason, link: this.#link };
    this.#keepalive.stop();
    this.#framer.stop();
    this.transport.pause();
    if (reason !== "protocol-error") {
      this.ctx.log.debug({ client: this.clientId, reason }, "mqtt connection closing");
    }
    this.ctx.metrics.closed.inc({ reason });
    // Committed messages get their acks before the socket goes.
    this.#flow.whenIdle(() => {
      // DISCONNECT is the last packet on the connection [MQTT-3.14.4-1]: after the acks.
      if (disconnect !== undefined) this.#sendDisconnect(disconnect.code, disconnect.words);
      // A slow consumer does not read: its backlog of packets is not read in either.
      this.transport.end(reason !== "slow-consumer");
    }, now);
  }

  /** Closes and resolves once the transport is gone. */
  closeAndWait(reason: string): Promise<void> {
    if (this.#state.kind === "closed") return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.#closedWaiters.push(resolve));
    this.close(reason);
    return closed;
  }

  /**
   * The will goes out now, or after its delay if the session outlives the connection
   * (MQTT 5 Will Delay Interval; the session publishes it when it ends, if sooner).
   */
  #releaseWill(): void {
    const link = this.#link;
    const will: Will | undefined = link?.will;
    if (link === undefined || will === undefined) return;
    link.will = undefined;
    const { session } = link;
    if (will.delayMs > 0 && session.persistent) {
      session.delayWill(will, will.delayMs);
      return;
    }
    this.ctx.publishWill(session.account, link.clientId, will);
  }
}
