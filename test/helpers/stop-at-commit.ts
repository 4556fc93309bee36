// Stops a process on entering its next SQLite write, before that write happens: strace
// attaches to its main thread (where better-sqlite3 runs every statement) and, on the first
// pwrite64 (SQLite's unix VFS writes the WAL and the database with it), makes the call fail
// unexecuted and delivers SIGSTOP. The process then stands still with everything it did
// before the commit done — the packets it wrote are on the wire — and the commit not done.
// A `kill -9` at that moment lands between the two by construction, the way a crash could.
// Needs the Debian package strace, and ptrace (root, or a child of the same user).
import { readFileSync } from "node:fs";
import { spawnTracked, type TrackedProcess, waitForLine } from "./procs.js";

/** Long enough to attach on a loaded machine. */
const ATTACH_TIMEOUT_MS = 10_000;
/** From the action that leads to a commit to the stop: a turn or two of the event loop. */
const STOP_TIMEOUT_MS = 5_000;

export interface CommitStop {
  /** Resolves once the process stands still at the commit (strace saw the stop). */
  stopped(timeoutMs?: number): Promise<void>;
}

/** /proc/PID/stat's state field: `t` tracing stop, `T` stopped, `S` sleeping... */
function state(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name, in parentheses, may hold spaces: the state follows its ")".
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ", 1)[0]!;
}

/** Arms the stop; resolves once strace is attached, so the next commit is caught. */
export async function stopAtNextCommit(proc: TrackedProcess): Promise<CommitStop> {
  const args = ["-p", String(proc.pid), "-e", "trace=pwrite64"];
  args.push("-e", "inject=pwrite64:error=EINTR:signal=SIGSTOP:when=1");
  const strace = await spawnTracked("strace", args).catch((err: unknown) => {
    throw new Error("cannot run strace (Debian package strace, installed by .ci/run)", {
      cause: err,
    });
  });
  await waitForLine(strace, (l) => l.includes("attached"), ATTACH_TIMEOUT_MS, "stderr");
  return {
    async stopped(timeoutMs = STOP_TIMEOUT_MS) {
      // strace stops the process at every system call it makes; this line is the stop.
      await waitForLine(strace, (l) => l.includes("stopped by SIGSTOP"), timeoutMs, "stderr");
      const now = state(proc.pid);
      if (now !== "t" && now !== "T") throw new Error(`pid ${proc.pid} is in state ${now}`);
    },
  };
}
