// Child processes for tests. Every process is registered until it exits so that a failing
// test cannot leave servers behind: afterEach/afterAll call stopAll(), and an "exit" hook
// SIGKILLs whatever is still alive if the worker ends without cleaning up.
import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { StringDecoder } from "node:string_decoder";

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface TrackedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** `cmd args...`, for messages. */
  readonly command: string;
  /** Settles once the process has exited and its stdout/stderr are fully read. */
  readonly exited: Promise<ExitInfo>;
  /** Set when `exited` has settled. */
  readonly exitInfo: ExitInfo | undefined;
  stdout(): string;
  stderr(): string;
  /** Command, exit status and the captured tails of both streams, for failure messages. */
  describe(): string;
}

export interface SpawnTrackedOptions extends Omit<SpawnOptions, "stdio" | "detached"> {
  /** "pipe" to write to child.stdin; default "ignore". */
  stdin?: "pipe" | "ignore";
}

type Stream = "stdout" | "stderr";

const MAX_CAPTURE_BYTES = 1024 * 1024;
const MAX_LINES = 10_000;

/** Keeps the last `limit` bytes of a stream. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > MAX_CAPTURE_BYTES) {
      const first = this.chunks[0]!;
      const excess = this.size - MAX_CAPTURE_BYTES;
      if (first.length <= excess) this.chunks.shift();
      else this.chunks[0] = first.subarray(excess);
      const removed = Math.min(first.length, excess);
      this.size -= removed;
      this.dropped += removed;
    }
  }

  toString(): string {
    const text = Buffer.concat(this.chunks).toString("utf8");
    return this.dropped > 0 ? `[${this.dropped} earlier bytes dropped]\n${text}` : text;
  }
}

/** Splits a byte stream into lines, keeping the last MAX_LINES and announcing new ones. */
class LineLog extends EventEmitter {
  readonly lines: string[] = [];
  private partial = "";
  private readonly decoder = new StringDecoder("utf8");

  push(chunk: Buffer): void {
    const parts = (this.partial + this.decoder.write(chunk)).split("\n");
    this.partial = parts.pop()!;
    for (const line of parts) this.add(line.replace(/\r$/, ""));
  }

  end(): void {
    const rest = this.partial + this.decoder.end();
    this.partial = "";
    if (rest) this.add(rest);
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > MAX_LINES) this.lines.shift();
    this.emit("line", line);
  }
}

interface Internals {
  tails: Record<Stream, Tail>;
  lines: Record<Stream, LineLog>;
}

const internals = new WeakMap<TrackedProcess, Internals>();

// Shared through globalThis: vitest re-evaluates this module per test file in the same
// worker, and one registry plus one exit hook per worker is what we want.
const REGISTRY = Symbol.for("leafgate.test.procs");
type Registry = Set<TrackedProcess>;
const globals = globalThis as { [REGISTRY]?: Registry };
const live: Registry =
  globals[REGISTRY] ??
  (() => {
    const set: Registry = new Set();
    // Only synchronous work is possible in "exit": SIGKILL by PID, ignore ESRCH.
    process.on("exit", () => {
      for (const proc of set) {
        try {
          process.kill(proc.pid, "SIGKILL");
        } catch {}
      }
    });
    // vitest ends its fork workers with SIGTERM, whose default action skips "exit" hooks.
    // Turn it into a normal exit (status 128+15, as the signal would) so the hook runs.
    process.once("SIGTERM", () => process.exit(143));
    globals[REGISTRY] = set;
    return set;
  })();

/** Spawns `cmd`, capturing stdout/stderr; resolves once the process is running. */
export async function spawnTracked(
  cmd: string,
  args: readonly string[],
  opts: SpawnTrackedOptions = {},
): Promise<TrackedProcess> {
  const { stdin = "ignore", ...spawnOpts } = opts;
  const child = spawn(cmd, args, { ...spawnOpts, stdio: [stdin, "pipe", "pipe"] });
  // A child that exits before reading its input would otherwise crash us with EPIPE.
  child.stdin?.on("error", () => {});

  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  // Later errors (e.g. a failed kill) must not become uncaught exceptions.
  child.on("error", () => {});

  const tails = { stdout: new Tail(), stderr: new Tail() };
  const lines = { stdout: new LineLog(), stderr: new LineLog() };
  for (const stream of ["stdout", "stderr"] as const) {
    child[stream]!.on("data", (chunk: Buffer) => {
      tails[stream].push(chunk);
      lines[stream].push(chunk);
    });
  }

  let exitInfo: ExitInfo | undefined;
  const command = [cmd, ...args].join(" ");
  // "close" rather than "exit": by then all output has been captured.
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => {
      lines.stdout.end();
      lines.stderr.end();
      exitInfo = { code, signal };
      live.delete(proc);
      resolve(exitInfo);
    });
  });

  const proc: TrackedProcess = {
    child,
    pid: child.pid!,
    command,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    stdout: () => tails.stdout.toString(),
    stderr: () => tails.stderr.toString(),
    describe: () =>
      [
        `$ ${command} (pid ${child.pid}, ${exitInfo ? `exited ${JSON.stringify(exitInfo)}` : "running"})`,
        `--- stdout ---\n${tails.stdout.toString()}`,
        `--- stderr ---\n${tails.stderr.toString()}`,
      ].join("\n"),
  };
  internals.set(proc, { tails, lines });
  live.add(proc);
  return proc;
}

/** Resolves with `promise`, or with `undefined` after `ms`; the timer never outlives the race. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sends `signal`, escalates to SIGKILL after `graceMs`, and resolves with the exit status. */
export async function stopProcess(
  proc: TrackedProcess,
  { signal = "SIGTERM", graceMs = 5000 }: { signal?: NodeJS.Signals; graceMs?: number } = {},
): Promise<ExitInfo> {
  if (proc.exitInfo) return proc.exitInfo;
  proc.child.kill(signal);
  const graceful = await within(proc.exited, graceMs);
  if (graceful) return graceful;
  proc.child.kill("SIGKILL");
  const killed = await within(proc.exited, 5000);
  if (killed) return killed;
  throw new Error(`stopProcess: pid ${proc.pid} survived SIGKILL\n${proc.describe()}`);
}

/** The processes started and not yet exited, oldest first. */
export function liveProcesses(): TrackedProcess[] {
  return [...live];
}

/** Stops every process still registered (in parallel); used by afterEach/afterAll. */
export async function stopAll(opts?: { graceMs?: number }): Promise<void> {
  await Promise.all([...live].map((proc) => stopProcess(proc, opts)));
}

/**
 * Resolves with the first line on `stream` (already seen or future) satisfying `predicate`.
 * Rejects, with the captured output, if the process exits first or `timeoutMs` passes.
 */
export function waitForLine(
  proc: TrackedProcess,
  predicate: (line: string) => boolean,
  timeoutMs = 10_000,
  stream: Stream = "stdout",
): Promise<string> {
  const log = internals.get(proc)!.lines[stream];
  const seen = log.lines.find(predicate);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      reject(new Error(`waitForLine: ${why}\n${proc.describe()}`));
    };
    const onLine = (line: string) => {
      if (!predicate(line)) return;
      cleanup();
      resolve(line);
    };
    const timer = setTimeout(
      () => fail(`no matching ${stream} line within ${timeoutMs} ms`),
      timeoutMs,
    );
    let done = false;
    const cleanup = () => {
      done = true;
      clearTimeout(timer);
      log.off("line", onLine);
    };
    log.on("line", onLine);
    // Lines are flushed before `exited` settles, so a last matching line still wins.
    void proc.exited.then(() => {
      if (!done) fail(`process exited before a matching ${stream} line`);
    });
  });
}

export interface RunResult extends ExitInfo {
  stdout: string;
  stderr: string;
}

/**
 * Runs a short-lived tool to completion. A non-zero exit is a result, not an error; only the
 * deadline rejects (after SIGKILL), with whatever the tool printed.
 */
export async function runToCompletion(
  cmd: string,
  args: readonly string[],
  opts: { input?: string | Buffer; timeoutMs?: number } & Omit<SpawnTrackedOptions, "stdin"> = {},
): Promise<RunResult> {
  const { input, timeoutMs = 10_000, ...spawnOpts } = opts;
  const proc = await spawnTracked(cmd, args, { ...spawnOpts, stdin: "pipe" });
  proc.child.stdin!.end(input);
  const exit = await within(proc.exited, timeoutMs);
  if (!exit) {
    await stopProcess(proc, { signal: "SIGKILL" });
    throw new Error(`runToCompletion: timed out after ${timeoutMs} ms\n${proc.describe()}`);
  }
  return { ...exit, stdout: proc.stdout(), stderr: proc.stderr() };
}
