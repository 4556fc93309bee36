/**
 * A Modbus profile's `decoder` section (`type: modbus`), checked, with defaults filled in:
 * what a ModbusDevice polls. Pure: no port, no clock.
 *
 * - `slave: 1` or `slaves: [1, 2]` — unicast addresses 1..247 [MB-SL 2.2], not both keys;
 * - `poll_interval`: `"1s"`, `"250ms"`, `"2m"` or a number of milliseconds (default 1s);
 * - `timeout_ms`: how long one request waits for its complete answer (default 200);
 * - `retries`: extra attempts after a timeout or a bad answer (default 2);
 * - `registers`: `{ name, function: 3|4, address, type: u16|i16|u32|i32|f32,
 *   word_order: big|little }`; `function` is required, `type` defaults to u16 and
 *   `word_order` to big. Each profile field's `source` must name a register.
 */
import { MAX_SLAVE, MIN_SLAVE, type ReadFunction } from "./modbus.js";
import { type DeviceProfile, ProfileError } from "./profile.js";

/** Profile defaults: a second between polls suits meters; 200 ms covers a slave's
 * processing time plus a 125-register answer at 19200 baud. */
const DEFAULT_POLL_INTERVAL_MS = 1_000;
const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 2;
/** A tighter poll loop would only keep the line busy; a longer timeout or more retries
 * would let one dead slave starve the others for minutes. */
const MIN_POLL_INTERVAL_MS = 10;
const MAX_TIMEOUT_MS = 10_000;
const MAX_RETRIES = 10;
/** [MB-AP 6.3, 6.4] */
const READ_FUNCTIONS: readonly number[] = [3, 4];
/** Registers each value type spans. */
export const VALUE_WORDS = { u16: 1, i16: 1, u32: 2, i32: 2, f32: 2 } as const;
const DECODER_KEYS = [
  "type",
  "slave",
  "slaves",
  "poll_interval",
  "timeout_ms",
  "retries",
  "registers",
];
const REGISTER_KEYS = ["name", "function", "address", "type", "word_order"];
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/;
const MS_PER_UNIT = { ms: 1, s: 1_000, m: 60_000 } as const;

export type ModbusValueType = keyof typeof VALUE_WORDS;

/** One value a profile reads: `function` and `address` say where, `type` how to read it. */
export interface ModbusRegister {
  readonly name: string;
  readonly fn: ReadFunction;
  readonly address: number;
  readonly type: ModbusValueType;
  readonly wordOrder: "big" | "little";
}

/** A profile's `decoder` section for Modbus, checked and with defaults filled in. */
export interface ModbusSpec {
  readonly slaves: readonly number[];
  /** True when the profile used `slaves:` with more than one address (see `{device}`). */
  readonly perSlaveDevice: boolean;
  readonly pollIntervalMs: number;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly registers: readonly ModbusRegister[];
}

type Raw = Readonly<Record<string, unknown>>;

function isRecord(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

/**
 * The Modbus section of `profile`, checked. Every problem is collected with its field
 * path (`decoder.registers[2].address`) and thrown as one `ProfileError`.
 */
export function modbusSpec(profile: DeviceProfile): ModbusSpec {
  const problems: string[] = [];
  const fail = (path: string, what: string): void => {
    problems.push(`${path}: ${what}`);
  };
  const d = profile.decoder;
  if (d.type !== "modbus") fail("decoder.type", `expected modbus, got ${show(d.type)}`);
  for (const key of Object.keys(d)) {
    if (!DECODER_KEYS.includes(key))
      fail(`decoder.${key}`, `unknown key (expected ${DECODER_KEYS.join(", ")})`);
  }
  const int = (path: string, v: unknown, min: number, max: number): number => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      fail(path, `expected a whole number ${min}..${max}, got ${show(v)}`);
      return min;
    }
    return v;
  };

  // Slaves.
  let slaves: number[] = [];
  if (d.slave !== undefined && d.slaves !== undefined) {
    fail("decoder.slaves", "give either slave or slaves, not both");
  } else if (d.slaves !== undefined) {
    if (!Array.isArray(d.slaves) || d.slaves.length === 0) {
      fail("decoder.slaves", `expected a list of slave addresses, got ${show(d.slaves)}`);
    } else {
      slaves = d.slaves.map((s: unknown, i: number) =>
        int(`decoder.slaves[${i}]`, s, MIN_SLAVE, MAX_SLAVE),
      );
      slaves.forEach((s, i) => {
        if (slaves.indexOf(s) !== i) fail(`decoder.slaves[${i}]`, `slave ${s} is listed twice`);
      });
    }
  } else if (d.slave !== undefined) {
    slaves = [int("decoder.slave", d.slave, MIN_SLAVE, MAX_SLAVE)];
  } else {
    fail("decoder.slave", `required: the slave address (${MIN_SLAVE}..${MAX_SLAVE})`);
  }

  // Timing.
  const pollIntervalMs = pollInterval(d.poll_interval);
  if (pollIntervalMs === undefined || pollIntervalMs < MIN_POLL_INTERVAL_MS) {
    fail(
      "decoder.poll_interval",
      `expected a duration of at least ${MIN_POLL_INTERVAL_MS} ms like "1s" or "250ms", or a number of milliseconds, got ${show(d.poll_interval)}`,
    );
  }
  const timeoutMs =
    d.timeout_ms === undefined
      ? DEFAULT_TIMEOUT_MS
      : int("decoder.timeout_ms", d.timeout_ms, 1, MAX_TIMEOUT_MS);
  const retries =
    d.retries === undefined ? DEFAULT_RETRIES : int("decoder.retries", d.retries, 0, MAX_RETRIES);

  // Registers.
  const registers: ModbusRegister[] = [];
  if (!Array.isArray(d.registers) || d.registers.length === 0) {
    fail("decoder.registers", "expected a list of at least one register");
  } else {
    const names = new Set<string>();
    d.registers.forEach((r: unknown, i: number) => {
      const at = `decoder.registers[${i}]`;
      if (!isRecord(r)) {
        fail(at, "expected a mapping like { name: voltage, function: 4, address: 0, type: f32 }");
        return;
      }
      for (const key of Object.keys(r)) {
        if (!REGISTER_KEYS.includes(key))
          fail(`${at}.${key}`, `unknown key (expected ${REGISTER_KEYS.join(", ")})`);
      }
      const name = typeof r.name === "string" ? r.name : "";
      if (name.length === 0) fail(`${at}.name`, `expected a non-empty string, got ${show(r.name)}`);
      else if (names.has(name)) fail(`${at}.name`, `"${name}" is defined twice`);
      names.add(name);
      if (!READ_FUNCTIONS.includes(r.function as number)) {
        fail(
          `${at}.function`,
          `expected 3 (holding registers) or 4 (input registers), got ${show(r.function)}`,
        );
      }
      const type = (r.type ?? "u16") as ModbusValueType;
      if (!Object.hasOwn(VALUE_WORDS, type)) {
        fail(
          `${at}.type`,
          `expected one of ${Object.keys(VALUE_WORDS).join(", ")}, got ${show(r.type)}`,
        );
      }
      const words = VALUE_WORDS[type] ?? 1;
      const address = int(`${at}.address`, r.address, 0, 0x10000 - words);
      const wordOrder = r.word_order ?? "big";
      if (wordOrder !== "big" && wordOrder !== "little") {
        fail(`${at}.word_order`, `expected big (ABCD) or little (CDAB), got ${show(wordOrder)}`);
      }
      registers.push({
        name,
        fn: r.function as ReadFunction,
        address,
        type,
        wordOrder: wordOrder as "big" | "little",
      });
    });
    profile.fields.forEach((f, i) => {
      if (!names.has(f.source)) {
        fail(
          `fields[${i}].source`,
          `no register named "${f.source}" in decoder.registers (have ${[...names].join(", ")})`,
        );
      }
    });
  }
  if (problems.length > 0) throw new ProfileError(profile.name, problems);
  return {
    slaves,
    perSlaveDevice: d.slaves !== undefined && slaves.length > 1,
    pollIntervalMs: pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
    timeoutMs,
    retries,
    registers,
  };
}

/** Checks a Modbus profile without opening anything, for `leafgate check` and start-up. */
export function validateModbusDevice(profile: DeviceProfile): void {
  modbusSpec(profile);
}

/** `"250ms"`, `"1s"`, `"2m"` or a number of milliseconds; undefined when it is neither. */
function pollInterval(v: unknown): number | undefined {
  if (v === undefined) return DEFAULT_POLL_INTERVAL_MS;
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = DURATION.exec(v.trim());
  return m ? Math.round(Number(m[1]) * MS_PER_UNIT[m[2] as keyof typeof MS_PER_UNIT]) : undefined;
}
