import type { ClockTimer } from "../core/index.js";
import type { MqttBase } from "./context.js";

/** Keepalive is enforced at one and a half times the negotiated interval [MQTT-3.1.2-24]. */
const KEEPALIVE_GRACE = 1.5;

/**
 * The one timer of a connection: the CONNECT deadline first, then keepalive supervision.
 * `touch` on every read; `expired` runs once the client was silent for the grace period.
 */
export class Keepalive {
  readonly #ctx: MqttBase;
  readonly #cut: () => void;
  #timer: ClockTimer | undefined;
  #intervalMs = 0;
  #lastActivityMs: number;

  constructor(ctx: MqttBase, cut: () => void) {
    this.#ctx = ctx;
    this.#cut = cut;
    this.#lastActivityMs = ctx.clock.now();
  }

  /** A socket that sends no CONNECT within `mqtt.connect_timeout` is closed. */
  connectDeadline(expired: () => void): void {
    const { clock, guard, options } = this.#ctx;
    this.#timer = clock.setTimeout(
      guard.wrap("mqtt.connect-timeout", expired, this.#cut),
      options.connectTimeoutMs,
    );
  }

  touch(): void {
    this.#lastActivityMs = this.#ctx.clock.now();
  }

  /** Starts supervision once CONNECT has been accepted (0: none). */
  start(keepaliveS: number, expired: () => void): void {
    this.stop();
    if (keepaliveS === 0) return;
    this.#intervalMs = keepaliveS * 1000 * KEEPALIVE_GRACE;
    this.#arm(this.#intervalMs, expired);
  }

  stop(): void {
    this.#ctx.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(delayMs: number, expired: () => void): void {
    const { clock, guard } = this.#ctx;
    this.#timer = clock.setTimeout(
      guard.wrap(
        "mqtt.keepalive",
        () => {
          const idleMs = clock.now() - this.#lastActivityMs;
          if (idleMs < this.#intervalMs) this.#arm(this.#intervalMs - idleMs, expired);
          else expired();
        },
        this.#cut,
      ),
      delayMs,
    );
  }
}
