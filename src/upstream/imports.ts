import type { NatsConnection } from "@nats-io/transport-node";
import type { Bus, Clock, Counter, Envelope, Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";

export interface ImportOptions {
  /** Hub subjects to subscribe to (`upstream.import`). */
  readonly patterns: readonly string[];
  readonly bus: Bus;
  readonly log: Logger;
  /** leafgate_upstream_imported_total. */
  readonly imported: Counter;
  readonly clock: Clock;
}

/** Subscribes one connection to the imported subjects and delivers each message onto the bus. */
export function subscribeImports(nc: NatsConnection, options: ImportOptions): void {
  const { bus, log, imported, clock } = options;
  for (const pattern of options.patterns) {
    nc.subscribe(pattern, {
      callback: (err, msg) => {
        if (err) {
          log.warn({ pattern, err: errorMessage(err) }, "import subscription failed");
          return;
        }
        let headers: Map<string, string[]> | undefined;
        if (msg.headers !== undefined) {
          headers = new Map();
          for (const [k, v] of msg.headers) headers.set(k, v);
        }
        const message: Envelope = {
          subject: msg.subject,
          payload: msg.data,
          headers,
          receivedAtMs: clock.now(),
          origin: "upstream",
          // Commands reach QoS 1 subscribers at QoS 1.
          qos: 1,
        };
        imported.inc();
        bus.publish(message).catch((e) => {
          log.warn({ subject: msg.subject, err: errorMessage(e) }, "import not delivered");
        });
      },
    });
  }
}
