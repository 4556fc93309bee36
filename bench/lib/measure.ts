// Figures read from /proc about a process: RSS and CPU time; and the median the benches report.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** /proc/<pid>/stat counts CPU time in clock ticks of this many per second. */
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim()) || 100;
const KIB_PER_MIB = 1024;

/** Resident set size of `pid` in MiB; NaN once the process is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / KIB_PER_MIB : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU seconds `pid` has used so far (every thread); NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces) start at field 3.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime
  } catch {
    return Number.NaN;
  }
}

/** User + system CPU seconds of this process. */
export function selfCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** The median of the numbers that are not NaN (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Samples the RSS of a process every `everyMs` and keeps the highest seen. */
export class RssPeak {
  #peak = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: () => number | undefined, everyMs: number) {
    this.#timer = setInterval(() => {
      const p = pid();
      const rss = p === undefined ? Number.NaN : rssMiB(p);
      if (rss > this.#peak) this.#peak = rss;
    }, everyMs);
  }

  get peak(): number {
    return this.#peak;
  }

  reset(): void {
    this.#peak = 0;
  }

  /** Stops sampling; returns the peak. */
  stop(): number {
    clearInterval(this.#timer);
    return this.#peak;
  }
}
