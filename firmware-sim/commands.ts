// How simulated devices take commands from the gateway: how requests are cut out of the
// bytes the gateway writes, and what each model answers. The answers follow the shipped
// profiles' `commands` (devices/*.yaml).

/** What a request comes to: bytes to write back, the model's next good frame, or nothing. */
export type Answer = Buffer | "good_frame" | undefined;

/** A model's command side. */
export interface CommandModel {
  /**
   * How requests are cut: text lines (LF ended, a CR before it dropped), or fixed-size
   * binary requests that start with `header` and end with a 16-bit sum of the bytes
   * before it, big endian (PMS5003).
   */
  readonly requests:
    | { readonly type: "line" }
    | { readonly type: "summed"; readonly header: readonly number[]; readonly length: number };
  /** The answer to one request; `state` is the simulator's, per model, kept across requests. */
  answer(request: Buffer, state: Map<string, number>): Answer;
}

/** XOR of the characters between `$` and `*` (NMEA 0183, "checksum field"). */
function nmeaChecksum(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) sum ^= body.charCodeAt(i);
  return sum.toString(16).toUpperCase().padStart(2, "0");
}

const nmea = (body: string): Buffer => Buffer.from(`$${body}*${nmeaChecksum(body)}\r\n`, "ascii");

/** Whole seconds an env-sensor accepts as its reporting interval. */
const MIN_INTERVAL_S = 1;
const MAX_INTERVAL_S = 3600;

/**
 * The env-sensor's text commands, one line each, one line back:
 * `INTERVAL <n>` → `OK INTERVAL <n>` (1..3600) or `ERR INTERVAL expected …`;
 * `INFO` → `INFO env-sensor-sim fw=1.0.0 interval=<n>`; anything else `ERR UNKNOWN <word>`.
 */
export const envSensorCommands: CommandModel = {
  requests: { type: "line" },
  answer(request, state) {
    const [word = "", arg] = request.toString("utf8").trim().split(/\s+/, 2);
    if (word === "INTERVAL") {
      const n = Number(arg);
      if (!Number.isInteger(n) || n < MIN_INTERVAL_S || n > MAX_INTERVAL_S) {
        return Buffer.from(
          `ERR INTERVAL expected whole seconds ${MIN_INTERVAL_S}..${MAX_INTERVAL_S}\n`,
        );
      }
      state.set("interval", n);
      return Buffer.from(`OK INTERVAL ${n}\n`);
    }
    if (word === "INFO") {
      return Buffer.from(`INFO env-sensor-sim fw=1.0.0 interval=${state.get("interval") ?? 1}\n`);
    }
    return Buffer.from(`ERR UNKNOWN ${word.slice(0, 16)}\n`);
  },
};

/** The release a simulated MTK receiver reports (PMTK_DT_RELEASE). */
export const GPS_RELEASE = "AXN_5.1.7_3333_18051713";

/**
 * A MediaTek GPS receiver's PMTK sentences: a sentence with a bad checksum is ignored, as
 * the chip does. 605 (query release) → `$PMTK705,<release>,0000,,1.0`; 000 (test) →
 * `$PMTK001,0,3`; 101 (hot start) → `$PMTK010,001` (started); others → `$PMTK001,<cmd>,1`
 * (invalid command).
 */
export const gpsCommands: CommandModel = {
  requests: { type: "line" },
  answer(request) {
    const m = /^\$(PMTK(\d{3})[^*]*)\*([0-9A-F]{2})\r?$/.exec(request.toString("ascii"));
    if (m === null || nmeaChecksum(m[1]!) !== m[3]) return undefined;
    switch (m[2]) {
      case "605":
        return nmea(`PMTK705,${GPS_RELEASE},0000,,1.0`);
      case "000":
        return nmea("PMTK001,0,3");
      case "101":
        return nmea("PMTK010,001");
      default:
        return nmea(`PMTK001,${Number(m[2])},1`);
    }
  },
};

/** PMS5003 host commands [datasheet "Host protocol"]: 42 4D, command, data (2), sum (2). */
const PMS_READ_PASSIVE = 0xe2;
const PMS_CHANGE_MODE = 0xe1;
const PMS_SLEEP = 0xe4;

/**
 * PMS5003: `E2` (read in passive mode) is answered by a data frame; `E1` (mode) and `E4`
 * (sleep/wake) are taken silently, their data byte kept in `state` (`mode`, `awake`).
 */
export const pms5003Commands: CommandModel = {
  requests: { type: "summed", header: [0x42, 0x4d], length: 7 },
  answer(request, state) {
    const command = request[2];
    const data = request[4] ?? 0;
    if (command === PMS_READ_PASSIVE) return "good_frame";
    if (command === PMS_CHANGE_MODE) state.set("mode", data);
    if (command === PMS_SLEEP) state.set("awake", data);
    return undefined;
  },
};
