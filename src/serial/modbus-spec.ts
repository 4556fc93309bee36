/**
 * A Modbus profile's `decoder` section (`type: modbus`) in the schema engine, and the
 * rules that span its keys: what a ModbusDevice polls. Pure: no port, no clock. Keys and
 * defaults: docs/profiles.md ("modbus").
 */
import { duration, type Infer, int, list, obj, oneOf, str } from "../config/index.js";
import {
  MAX_SLAVE,
  MIN_SLAVE,
  READ_HOLDING_REGISTERS,
  READ_INPUT_REGISTERS,
  type ReadFunction,
} from "./modbus.js";
import type { DeviceProfile } from "./profile.js";
import { ProfileError } from "./profile-error.js";

/** A second between polls suits meters; 200 ms covers a slave's processing time plus a
 * 125-register answer at 19200 baud. */
const DEFAULT_POLL_INTERVAL = "1s";
const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 2;
/** A tighter poll loop would only keep the line busy; a longer timeout or more retries
 * would let one dead slave starve the others for minutes. */
const MIN_POLL_INTERVAL_MS = 10;
const MAX_TIMEOUT_MS = 10_000;
const MAX_RETRIES = 10;
/** Register addresses are 16 bits [MB-AP 6.3, 6.4]. */
const MAX_ADDRESS = 0xffff;
/** Registers each value type spans. */
export const VALUE_WORDS = { u16: 1, i16: 1, u32: 2, i32: 2, f32: 2 } as const;

export type ModbusValueType = keyof typeof VALUE_WORDS;

const SLAVE = int(MIN_SLAVE, MAX_SLAVE);

/** The `decoder` section of a Modbus profile, without its `type`. */
export const MODBUS_DECODER = obj({
  slave: SLAVE, // or slaves, not both (see toModbusSpec)
  slaves: list(SLAVE, { minItems: 1, expected: "a list of slave addresses" }),
  // Refuses a bare number, which meant milliseconds here before durations read one way.
  poll_interval: duration({
    min: MIN_POLL_INTERVAL_MS,
    default: DEFAULT_POLL_INTERVAL,
    unitRequired: true,
  }),
  // How long one request waits for its complete answer.
  timeout_ms: int(1, MAX_TIMEOUT_MS, { default: DEFAULT_TIMEOUT_MS }),
  // Extra attempts after a timeout or a bad answer.
  retries: int(0, MAX_RETRIES, { default: DEFAULT_RETRIES }),
  registers: list(
    obj({
      name: str({ required: "a non-empty string" }),
      function: oneOf([READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS], {
        required: "3 (holding registers) or 4 (input registers)",
        expected: "3 (holding registers) or 4 (input registers)",
      }),
      address: int(0, MAX_ADDRESS, { required: `an integer from 0 to ${MAX_ADDRESS}` }),
      type: oneOf(Object.keys(VALUE_WORDS) as ModbusValueType[], { default: "u16" }),
      word_order: oneOf(["big", "little"], {
        default: "big",
        expected: "big (ABCD) or little (CDAB)",
      }),
    }),
    {
      required: "a list of at least one register",
      minItems: 1,
      expected: "a list of at least one register",
    },
  ),
});

/** A checked Modbus `decoder` section, as the file spells it. */
export type ModbusSection = { readonly type: "modbus" } & Infer<typeof MODBUS_DECODER>;

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

/**
 * The poller's spec for a checked section, after the rules that span keys; each broken
 * rule is passed to `problem` with its path. `sources` are the profile fields' sources,
 * each of which must name a register.
 */
export function toModbusSpec(
  d: ModbusSection,
  sources: readonly string[],
  problem: (at: string, what: string) => void,
): ModbusSpec {
  let slaves: readonly number[] = [];
  if (d.slave !== undefined && d.slaves !== undefined) {
    problem("decoder.slaves", "give either slave or slaves, not both");
  } else if (d.slaves !== undefined) {
    slaves = d.slaves;
    slaves.forEach((s, i) => {
      if (slaves.indexOf(s) !== i) problem(`decoder.slaves[${i}]`, `slave ${s} is listed twice`);
    });
  } else if (d.slave !== undefined) {
    slaves = [d.slave];
  } else {
    problem("decoder.slave", `required: the slave address (${MIN_SLAVE}..${MAX_SLAVE})`);
  }
  const names = new Set<string>();
  // With problems found already, entries may be partial: each rule checks what is there.
  const registers = (d.registers ?? []).map((r: Partial<ModbusSection["registers"][number]>, i) => {
    const at = `decoder.registers[${i}]`;
    if (r?.name !== undefined) {
      if (names.has(r.name)) problem(`${at}.name`, `"${r.name}" is defined twice`);
      names.add(r.name);
    }
    // A value of two words must end within the address space too.
    const last = MAX_ADDRESS + 1 - VALUE_WORDS[r?.type ?? "u16"];
    if (r?.address !== undefined && r.address > last) {
      problem(`${at}.address`, `expected an integer from 0 to ${last}, got ${r.address}`);
    }
    const { name, function: fn, address, type, word_order: wordOrder } = r ?? {};
    return { name, fn, address, type, wordOrder } as ModbusRegister;
  });
  if (registers.length > 0) {
    sources.forEach((source, i) => {
      if (!names.has(source)) {
        problem(
          `fields[${i}].source`,
          `no register named "${source}" in decoder.registers (have ${[...names].join(", ")})`,
        );
      }
    });
  }
  return {
    slaves,
    perSlaveDevice: d.slaves !== undefined && slaves.length > 1,
    pollIntervalMs: d.poll_interval,
    timeoutMs: d.timeout_ms,
    retries: d.retries,
    registers,
  };
}

/** The Modbus section of `profile`, checked when the profile was loaded. */
export function modbusSpec(profile: DeviceProfile): ModbusSpec {
  if (profile.spec.kind === "modbus") return profile.spec.modbus;
  throw new ProfileError(profile.file, [
    `decoder.type: expected modbus, got ${JSON.stringify(profile.decoder.type)}`,
  ]);
}

/** Checks a Modbus profile without opening anything, for `leafgate check` and start-up. */
export function validateModbusDevice(profile: DeviceProfile): void {
  modbusSpec(profile);
}
