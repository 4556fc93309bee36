/**
 * Durations and sizes, read one way everywhere (the config and device profiles alike):
 * - a duration is a number with a unit, `250ms`, `10s`, `5m`, `2h`, `7d`; a bare number is
 *   seconds. Where a bare number once meant something else (a Modbus `poll_interval` was
 *   milliseconds) the schema refuses it rather than change its meaning: see `unitRequired`.
 * - a size is `512KiB`, `1MB`, `1GB` (decimal KB/MB/GB, binary KiB/MiB/GiB, any case) or a
 *   whole number of bytes.
 * Keys whose name carries the unit (`timeout_ms`, `gap_ms`) are plain numbers in that unit.
 */

export const MS_PER_UNIT = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
// biome-ignore format: a table
const BYTES_PER_UNIT: Readonly<Record<string, number>> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?$/i;

/** Whether `v` is a duration written without a unit (a number, or digits alone). */
export function isBareNumber(v: unknown): boolean {
  return (
    typeof v === "number" || (typeof v === "string" && DURATION.exec(v.trim())?.[2] === undefined)
  );
}

/** `250ms`, `10s`, `5m`, `2h`, `7d`, or a number of seconds → milliseconds. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v !== "number" && typeof v !== "string") return undefined;
  const m = DURATION.exec(String(v).trim());
  const unit = (m?.[2] ?? "s") as keyof typeof MS_PER_UNIT;
  return m ? Math.round(Number(m[1]) * MS_PER_UNIT[unit]) : undefined;
}

/** Milliseconds → the largest whole unit (`10s`, `250ms`, `7d`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms % MS_PER_UNIT[unit] === 0) return `${ms / MS_PER_UNIT[unit]}${unit}`;
  }
  return `${ms}ms`;
}

/** `512KiB`, `1MB`, `1GB` (decimal KB/MB/GB, binary KiB/MiB/GiB) or an integer → bytes. */
export function parseSize(v: unknown): number | undefined {
  if (typeof v !== "number" && typeof v !== "string") return undefined;
  const m = SIZE.exec(String(v).trim());
  if (!m || (m[2] === undefined && m[1]!.includes("."))) return undefined;
  return Math.round(Number(m[1]) * BYTES_PER_UNIT[(m[2] ?? "b").toLowerCase()]!);
}
