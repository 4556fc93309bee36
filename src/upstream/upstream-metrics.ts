import type { Counter, Gauge, Labels, Metrics } from "../core/index.js";
import type { ForwarderMetrics } from "./forwarder.js";

/** The hub link's metrics, registered once per gateway. */
export interface UpstreamMetrics {
  readonly connected: Gauge;
  /** Connections made to the hub (the first one and every reconnect). */
  readonly connects: Counter;
  readonly forwarder: ForwarderMetrics;
  readonly reconciled: Counter;
  readonly imports: ImportMetrics;
}

/** What imports count. */
export interface ImportMetrics {
  /** By kind: core, durable. */
  readonly imported: Counter;
  /** Durable deliveries at or below the recorded sequence: acked, not delivered again. */
  readonly redelivered: Counter;
  /** Answers to hub requests, by result: sent, dropped, no_responders. */
  readonly replies: Counter;
}

/** `registry` with `extra` added to the labels of every count and value set through it. */
function labelled(registry: Metrics, extra: Labels | undefined): Metrics {
  if (extra === undefined) return registry;
  // Frozen: the registry remembers its key, so an unlabelled count (every ack) costs no sort.
  const only = Object.freeze({ ...extra });
  const add = (labels: Labels | undefined): Labels =>
    labels === undefined ? only : { ...labels, ...extra };
  return {
    counter: (name, help) => {
      const c = registry.counter(name, help);
      return { inc: (labels, by) => c.inc(add(labels), by) };
    },
    gauge: (name, help) => {
      const g = registry.gauge(name, help);
      return { set: (value, labels) => g.set(value, add(labels)) };
    },
  };
}

/**
 * Registers the hub link's metrics; `onForwarded` hears of every row the hub took.
 * `labels` go on every series of this link (an account's: `account`; none for `$G`).
 */
export function upstreamMetrics(
  registry: Metrics,
  onForwarded: (rows: number) => void,
  labels?: Labels,
): UpstreamMetrics {
  const metrics = labelled(registry, labels);
  const connected = metrics.gauge("leafgate_upstream_connected", "1 while connected to the hub");
  // Present from the start: an alert on 0 must fire for a gateway that never connected.
  connected.set(0);
  const connects = metrics.counter(
    "leafgate_upstream_connects_total",
    "Connections made to the hub: the first one and every reconnect",
  );
  connects.inc(undefined, 0);
  const forwarded = metrics.counter(
    "leafgate_upstream_forwarded_total",
    "Messages the hub acknowledged (JetStream) or received (core)",
  );
  return {
    connected,
    connects,
    forwarder: {
      forwarded: {
        inc: (labels, by = 1) => {
          onForwarded(by);
          forwarded.inc(labels, by);
        },
      },
      tooLarge: metrics.counter(
        "leafgate_upstream_dropped_too_large_total",
        "Messages dropped because the hub can never take them: larger than its max_payload, or a subject longer than its control line",
      ),
      duplicates: metrics.counter(
        "leafgate_upstream_duplicates_total",
        "Rows whose first PubAck said the stream already held them (a resend of a stored row); later duplicate acks of a row are not counted",
      ),
      publishErrors: metrics.counter(
        "leafgate_upstream_publish_errors_total",
        "Publishes the hub refused, by status or error code",
      ),
      resends: metrics.counter(
        "leafgate_upstream_resent_total",
        "Messages sent again after an error, an ack timeout or a reconnect",
      ),
    },
    reconciled: metrics.counter(
      "leafgate_upstream_reconciled_total",
      "Rows older than the duplicate window found already stored in the stream, not resent",
    ),
    imports: {
      imported: metrics.counter(
        "leafgate_upstream_imported_total",
        "Messages received from the hub and delivered onto the bus, by kind of import (core, durable)",
      ),
      redelivered: metrics.counter(
        "leafgate_upstream_import_redelivered_total",
        "Messages a durable import's consumer delivered again after they were delivered locally: acked, not delivered twice",
      ),
      replies: metrics.counter(
        "leafgate_upstream_replies_total",
        "Answers to hub requests: sent to the hub, dropped (no hub link when the answer came, or refused), no_responders (nobody local serves the subject)",
      ),
    },
  };
}
