import {
  type Bus,
  type Clock,
  type ClockTimer,
  SYSTEM_SUBJECT_PREFIX,
  subjectMatches,
  systemClock,
} from "../core/index.js";

/** The first token of every subject published here (`$SYS/leafgate/...` to MQTT). */
export const SYS_PREFIX = "$SYS.leafgate";

/** One account's figures at one instant: what its `$SYS.leafgate.<gateway>.*` carry. */
export interface SysFigures {
  /** Whole seconds since the gateway started. */
  readonly uptime: number;
  readonly clients: { readonly mqtt: number; readonly nats: number };
  readonly outbox: { readonly pending: number; readonly bytes: number };
  /** The account's hub link state (`forwarding`, `connecting`, ...). */
  readonly uplink: string;
  /** Totals since the start: committed to the outbox, acknowledged by the hub, dropped. */
  readonly messages: {
    readonly stored: number;
    readonly forwarded: number;
    readonly dropped: number;
  };
}

/** One message to publish: subject and its text payload. */
export interface SysMessage {
  readonly subject: string;
  readonly payload: string;
}

/**
 * The fixed set of messages for one account's figures: one subject per figure (plain
 * text, as Mosquitto's `$SYS`) and `.stats`, all of them in one JSON object.
 */
export function sysMessages(gateway: string, f: SysFigures): SysMessage[] {
  const base = `${SYS_PREFIX}.${gateway}`;
  const one = (name: string, value: number | string): SysMessage => ({
    subject: `${base}.${name}`,
    payload: String(value),
  });
  return [
    one("uptime", f.uptime),
    one("clients.mqtt", f.clients.mqtt),
    one("clients.nats", f.clients.nats),
    one("outbox.pending", f.outbox.pending),
    one("outbox.bytes", f.outbox.bytes),
    one("uplink.state", f.uplink),
    one("messages.stored", f.messages.stored),
    one("messages.forwarded", f.messages.forwarded),
    one("messages.dropped", f.messages.dropped),
    { subject: `${base}.stats`, payload: JSON.stringify(f) },
  ];
}

/**
 * True when the export patterns take `subject` into the outbox. A `$SYS` subject is taken
 * only by a pattern whose first token is literally `$SYS` (`$SYS.>`, `$SYS.leafgate.>`),
 * never by one starting with a wildcard (`>`, `*.leafgate.>`): MQTT's rule for `$` topics
 * [MQTT-4.7.2-1], so the default export `>` does not fill the outbox with stats. Other `$`
 * subjects (a client's `$dev/...`) are exported as the bus matched them, as before.
 */
export function exportsSubject(patterns: readonly string[], subject: string): boolean {
  if (!subject.startsWith(SYSTEM_SUBJECT_PREFIX)) return true;
  for (const p of patterns)
    if (p.startsWith(SYSTEM_SUBJECT_PREFIX) && subjectMatches(p, subject)) return true;
  return false;
}

export interface SysStatsOptions {
  readonly gateway: string;
  /** Between two rounds; > 0. */
  readonly intervalMs: number;
  /** Each account's bus and figures now, read once per round. */
  readonly accounts: () => Iterable<{ readonly bus: Bus; readonly figures: SysFigures }>;
  readonly clock?: Clock;
  /** Hears of a publish a durable subscriber refused (an explicit `$SYS` export, full). */
  readonly onError?: (err: unknown) => void;
}

/**
 * Publishes every account's `$SYS.leafgate.<gateway>.*` on its own bus every interval, as
 * an internal publisher (no client). Bounded: ten messages per account per round, never
 * retained.
 */
export class SysStats {
  readonly #options: SysStatsOptions;
  readonly #clock: Clock;
  #timer: ClockTimer | undefined;
  #stopped = false;

  constructor(options: SysStatsOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError("sys.interval must be > 0");
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  start(): void {
    this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One round now: every account's messages on its bus. */
  publishNow(): void {
    const { gateway, onError } = this.#options;
    const now = this.#clock.now();
    for (const { bus, figures } of this.#options.accounts()) {
      for (const m of sysMessages(gateway, figures)) {
        bus
          .publish({
            subject: m.subject,
            payload: Buffer.from(m.payload),
            receivedAtMs: now,
            origin: "internal",
            qos: 0,
          })
          .catch((err: unknown) => onError?.(err));
      }
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.publishNow();
      this.#schedule();
    }, this.#options.intervalMs);
    this.#timer.unref?.();
  }
}
