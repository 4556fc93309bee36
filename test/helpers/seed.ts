// Seeded randomness for fault tests: a run's fault points come from one seed, printed by the
// test, and LEAFGATE_CHAOS_SEED=<seed> replays them (startGatewayProcess keeps LEAFGATE_*
// knobs away from the gateway, which would take them for settings).

/** The seed of this run: LEAFGATE_CHAOS_SEED, or a fresh random one. */
export function chaosSeed(): number {
  return Number(process.env.LEAFGATE_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
}

/**
 * The seed of a fast-check run: LEAFGATE_FUZZ_SEED (a replay), else `ciSeed` under CI (a red
 * CI then means a change broke something, not that a fresh seed found something old), else
 * a fresh random one, so every local run explores.
 */
export function fuzzSeed(ciSeed: number): number {
  const set = process.env.LEAFGATE_FUZZ_SEED;
  if (set !== undefined) return Number(set);
  return process.env.CI ? ciSeed : Math.floor(Math.random() * 2 ** 31);
}

/** mulberry32: small, seedable, good enough to pick fault points. Values in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
