import { envSensorCommands, pms5003Commands } from "./commands.js";
import { TEXT_MODELS } from "./models-text.js";
import type { DeviceModel } from "./simulator.js";

/** JSON-lines environment sensor: {"t":…, "h":…, "p":…} per line. */
export const envSensor: DeviceModel = {
  name: "env-sensor",
  commands: envSensorCommands,
  good(n) {
    const values = {
      t: Math.round((20 + 5 * Math.sin(n / 10)) * 100) / 100,
      h: Math.round((45 + 10 * Math.cos(n / 7)) * 10) / 10,
      p: Math.round((1013 + (n % 20) / 10) * 10) / 10,
    };
    return { bytes: Buffer.from(`${JSON.stringify(values)}\n`), values };
  },
};

const PMS_WORDS = 13;

function pmsFrame(words: readonly number[], breakChecksum: boolean): Buffer {
  const frame = Buffer.alloc(32);
  frame[0] = 0x42;
  frame[1] = 0x4d;
  frame.writeUInt16BE(2 * PMS_WORDS + 2, 2);
  for (const [i, w] of words.entries()) frame.writeUInt16BE(w & 0xffff, 4 + 2 * i);
  let sum = 0;
  for (let i = 0; i < 30; i++) sum += frame[i]!;
  frame.writeUInt16BE((sum + (breakChecksum ? 1 : 0)) & 0xffff, 30);
  return frame;
}

function pmsWords(n: number): number[] {
  const pm25 = 5 + (n % 40);
  return [
    pm25 - 2,
    pm25,
    pm25 + 4, // CF=1
    pm25 - 2,
    pm25,
    pm25 + 4, // atmospheric
    1200 + n,
    350 + n,
    80,
    12,
    3,
    1, // counts per 0.1 L
    0, // reserved
  ];
}

/** Plantower PMS5003: 32-byte binary frames with a 16-bit sum checksum. */
export const pms5003: DeviceModel = {
  name: "pms5003",
  commands: pms5003Commands,
  good(n) {
    const w = pmsWords(n);
    return {
      bytes: pmsFrame(w, false),
      values: { pm1_0: w[3]!, pm2_5: w[4]!, pm10: w[5]!, n0_3: w[6]!, n2_5: w[9]! },
    };
  },
  badChecksum(n) {
    return pmsFrame(pmsWords(n), true);
  },
};

export const MODELS: Readonly<Record<string, DeviceModel>> = {
  "env-sensor": envSensor,
  pms5003,
  ...TEXT_MODELS,
};
