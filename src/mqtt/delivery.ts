import type { Envelope } from "../core/index.js";
import { errorMessage, toTopic } from "../core/index.js";
import type { Link } from "./connection-state.js";
import type { MqttBase } from "./context.js";
import type { Flow } from "./flow.js";
import type { Outbound } from "./outbound-message.js";
import { encodePublish } from "./packets.js";
import { deliveredProperties, encodePublishProperties } from "./properties.js";

/** One PUBLISH to write to the client. */
export interface Delivery {
  readonly message: Envelope;
  readonly qos: 0 | 1 | 2;
  /** 0 for QoS 0. */
  readonly packetId: number;
  readonly retain: boolean;
  readonly dup: boolean;
  readonly subscriptionIds: readonly number[] | undefined;
}

/** Where an encoded PUBLISH goes: the connection's flow-controlled write. */
export interface PublishSink {
  /** False for a PUBLISH that must not be written however it is sent (too large). */
  fits(bytes: Uint8Array): boolean;
  write(bytes: Uint8Array): void;
}

/**
 * Turns deliveries into PUBLISH packets for one connected client: its permissions, its
 * version, its Maximum Packet Size, and the outbound topic aliases it allows (MQTT 5).
 */
export class PublishEncoder {
  readonly #ctx: MqttBase;
  readonly #link: Link;
  readonly #sink: PublishSink;
  readonly #aliasesOut = new Map<string, number>();

  constructor(ctx: MqttBase, link: Link, sink: PublishSink) {
    this.#ctx = ctx;
    this.#link = link;
    this.#sink = sink;
  }

  /** Writes the delivery; false when it cannot go to this client (dropped, counted). */
  send(d: Delivery): boolean {
    const { metrics } = this.#ctx;
    if (!this.#link.permissions.mayReceive(d.message.subject)) return false;
    let topic: string;
    try {
      topic = toTopic(d.message.subject);
    } catch (err) {
      // A subject with no MQTT form cannot reach an MQTT client; it is not this client's fault.
      metrics.dropped.inc({ reason: "untranslatable-subject" });
      this.#ctx.log.debug({ subject: d.message.subject, err: errorMessage(err) }, "not delivered");
      return false;
    }
    if (this.#link.version !== 5) {
      const bytes = encodePublish(topic, d.message.payload, d.qos, d.packetId, d.retain, d.dup);
      if (!this.#sink.fits(bytes)) {
        metrics.dropped.inc({ reason: "too-large-for-client" });
        return false;
      }
      this.#sink.write(bytes);
      metrics.sent.inc();
      return true;
    }
    let alias = this.#aliasesOut.get(topic);
    let newAlias = false;
    if (alias === undefined && this.#aliasesOut.size < this.#link.limits.topicAliasMaximum) {
      alias = this.#aliasesOut.size + 1;
      newAlias = true;
    }
    const { message } = d;
    const properties = deliveredProperties(message);
    const expiresAtMs = message.expiresAtMs;
    const props = encodePublishProperties({
      properties,
      // The interval left: the time the message waited is taken off [MQTT-3.3.2-6].
      messageExpiryS:
        expiresAtMs === undefined
          ? undefined
          : Math.max(1, Math.ceil((expiresAtMs - this.#ctx.clock.now()) / 1000)),
      topicAlias: alias,
      subscriptionIds: d.subscriptionIds,
    });
    // QoS 2 deliveries always name their topic: mqtt.js 5 keeps the PUBLISH until PUBREL
    // and then emits it with the empty topic an alias left.
    const bytes = encodePublish(
      alias !== undefined && !newAlias && d.qos < 2 ? "" : topic,
      message.payload,
      d.qos,
      d.packetId,
      d.retain,
      d.dup,
      props,
    );
    // Never above the client's Maximum Packet Size: dropped as if sent [MQTT-3.1.2-24].
    if (bytes.length > this.#link.limits.maxPacketSize || !this.#sink.fits(bytes)) {
      metrics.dropped.inc({ reason: "too-large-for-client" });
      return false;
    }
    if (newAlias) this.#aliasesOut.set(topic, alias!);
    this.#sink.write(bytes);
    metrics.sent.inc();
    return true;
  }
}

/**
 * What a session sends its connected client through: the window for QoS 1/2, QoS 0
 * dropped for a client behind on reading, PUBLISH encoded for it (see PublishEncoder).
 */
export class ClientOutput {
  readonly #ctx: MqttBase;
  readonly #flow: Flow;
  #link: Link | undefined;
  #encoder: PublishEncoder | undefined;
  readonly #connected: () => boolean;

  constructor(ctx: MqttBase, flow: Flow, connected: () => boolean) {
    this.#ctx = ctx;
    this.#flow = flow;
    this.#connected = connected;
  }

  /** CONNECT accepted: deliveries are encoded as `link` negotiated. */
  open(link: Link): void {
    this.#link = link;
    this.#encoder = new PublishEncoder(this.#ctx, link, this.#flow);
  }

  /** True while another QoS 1/2 message may go out: room in the window, client not behind. */
  hasWindow(inflight: number): boolean {
    return this.#connected() && inflight < this.#link!.window && !this.#flow.behind();
  }

  /** A QoS 0 delivery: dropped for a client that is behind on reading. */
  sendQos0(message: Envelope, retain: boolean, subscriptionIds?: readonly number[]): void {
    if (!this.#connected()) return;
    if (this.#flow.behind()) {
      this.#ctx.metrics.dropped.inc({ reason: "slow-consumer" });
      return;
    }
    this.#encoder!.send({ message, qos: 0, packetId: 0, retain, dup: false, subscriptionIds });
  }

  /** A QoS 1/2 delivery with its packet id; false when it cannot go to this client. */
  sendAcked(out: Outbound, packetId: number, dup: boolean): boolean {
    if (!this.#connected()) return true;
    const { message, qos, retain, subscriptionIds } = out;
    return this.#encoder!.send({ message, qos, packetId, retain, dup, subscriptionIds });
  }

  /** A delivery of about `bytes` will be written after a commit (see Flow.reserve). */
  reserve(bytes: number): void {
    this.#flow.reserve(bytes);
  }

  release(bytes: number): void {
    this.#flow.release(bytes);
  }
}
