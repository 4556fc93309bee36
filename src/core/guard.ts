import type { Counter, Labels, Logger, Metrics } from "./observe.js";

/** The counter every guard reports into, labelled by `where`. */
export const INTERNAL_ERRORS_METRIC = "leafgate_internal_errors_total";

/** What to do after a failure: for a connection's callback, cut that connection. */
export type Recover = (err: unknown) => void;

/**
 * Supervision for the callbacks the event loop runs on its own: timers, socket and serial
 * port events, deferred flushes. A throw there has no caller to catch it and would reach
 * the process-level handler, which stops the gateway; input from one client (a packet, a
 * device's bytes) must never be able to do that. Under a guard a throw (or a rejected
 * promise the callback returns) is
 * - counted in `leafgate_internal_errors_total{where}`,
 * - logged at error, with its stack, the first time for each `where` (a bug a client can
 *   trigger at will must not flood the log),
 * - followed by `recover`, which for a connection's callback cuts that connection only.
 *
 * `where` is a label value: a constant naming the callback (`mqtt.keepalive`), never text
 * that comes from input, so the number of series stays bounded.
 */
export class Guard {
  readonly #log: Logger;
  readonly #errors: Counter;
  /** Frozen label objects (the metrics registry caches their key), one per `where`. */
  readonly #labels = new Map<string, Labels>();
  readonly #reported = new Set<string>();

  constructor(log: Logger, metrics: Metrics) {
    this.#log = log;
    this.#errors = metrics.counter(
      INTERNAL_ERRORS_METRIC,
      "Errors caught in timer, socket and serial callbacks (bugs), by where",
    );
  }

  /** Runs `fn` under the guard. */
  run(where: string, fn: () => unknown, recover?: Recover): void {
    try {
      const result = fn();
      if (isThenable(result)) {
        result.then(undefined, (err: unknown) => this.#failed(where, err, recover));
      }
    } catch (err) {
      this.#failed(where, err, recover);
    }
  }

  /** `fn` as a callback that runs under the guard (for setTimeout, `on(...)`, `then`). */
  wrap<A extends unknown[]>(
    where: string,
    fn: (...args: A) => unknown,
    recover?: Recover,
  ): (...args: A) => void {
    return (...args: A): void => {
      try {
        const result = fn(...args);
        if (isThenable(result)) {
          result.then(undefined, (err: unknown) => this.#failed(where, err, recover));
        }
      } catch (err) {
        this.#failed(where, err, recover);
      }
    };
  }

  #failed(where: string, err: unknown, recover: Recover | undefined): void {
    let labels = this.#labels.get(where);
    if (labels === undefined) {
      labels = Object.freeze({ where });
      this.#labels.set(where, labels);
    }
    this.#errors.inc(labels);
    this.#report(where, err, "internal error in a callback (further ones here are only counted)");
    if (recover === undefined) return;
    try {
      recover(err);
    } catch (again) {
      // Recovery is the last resort: its own failure is reported, never thrown.
      this.#report(`${where}:recover`, again, "recovering from an internal error failed");
    }
  }

  #report(where: string, err: unknown, msg: string): void {
    if (this.#reported.has(where)) return;
    this.#reported.add(where);
    this.#log.error({ where, err: err instanceof Error ? err : new Error(String(err)) }, msg);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}
