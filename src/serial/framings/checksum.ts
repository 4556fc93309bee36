import type { ChecksumType } from "./types.js";

/** How many bytes each checksum occupies in a frame. */
export const CHECKSUM_BYTES = {
  sum8: 1,
  xor8: 1,
  sum16: 2,
  crc16_modbus: 2,
} as const satisfies Record<ChecksumType, 1 | 2>;

/** Modbus over Serial Line V1.02 §6.2.2: CRC register preset to all ones. */
const CRC16_MODBUS_INIT = 0xffff;
/** Polynomial 0x8005 bit-reversed, because Modbus shifts the register right (LSB first). */
const CRC16_MODBUS_POLY_REFLECTED = 0xa001;
const BITS_PER_BYTE = 8;

/**
 * The checksum of `bytes`:
 * - `sum8`: sum of the bytes & 0xFF; `sum16`: sum & 0xFFFF (Plantower PMS5003).
 * - `xor8`: XOR of the bytes.
 * - `crc16_modbus`: CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF, no final XOR);
 *   "123456789" → 0x4B37. Modbus RTU stores it little-endian (low byte first).
 * Empty input gives 0, or 0xFFFF for the CRC.
 */
export function checksum(type: ChecksumType, bytes: Uint8Array): number {
  switch (type) {
    case "sum8":
      return sumBytes(bytes) & 0xff;
    case "sum16":
      return sumBytes(bytes) & 0xffff;
    case "xor8": {
      let x = 0;
      for (const b of bytes) x ^= b;
      return x;
    }
    case "crc16_modbus":
      return crc16Modbus(bytes);
  }
}

function sumBytes(bytes: Uint8Array): number {
  let sum = 0;
  // Masked as it goes so a long frame cannot leave the exact integer range.
  for (const b of bytes) sum = (sum + b) & 0xffff;
  return sum;
}

function crc16Modbus(bytes: Uint8Array): number {
  let crc = CRC16_MODBUS_INIT;
  for (const b of bytes) {
    crc ^= b;
    for (let bit = 0; bit < BITS_PER_BYTE; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ CRC16_MODBUS_POLY_REFLECTED : crc >>> 1;
    }
  }
  return crc;
}
