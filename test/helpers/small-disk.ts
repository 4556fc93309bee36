// A small real filesystem for a test: a tmpfs of a few MiB mounted on a fresh temp dir, so
// the gateway's data_dir can fill up for real (ENOSPC from the kernel, not a page cap). A
// filler file takes the space a test does not want the gateway to have, and gives it back.
//
// Needs root (or passwordless sudo) for mount/umount; without either it fails and says so,
// it never skips. Always `dispose()` in afterEach, after the processes using the mount are
// stopped (a busy mount cannot be unmounted).
import { closeSync, openSync, rmSync, statfsSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { runToCompletion } from "./procs.js";
import { tempDir } from "./wait.js";

/** Filler writes in chunks this large; the last one is cut to leave exactly the slack. */
const FILL_CHUNK_BYTES = 1024 * 1024;
const FILLER = "filler";

export interface SmallDisk {
  /** Mount point; put `data_dir` below it. */
  readonly path: string;
  readonly sizeBytes: number;
  /** Bytes free to an unprivileged writer now (statfs `f_bavail`). */
  freeBytes(): number;
  /**
   * Grows the filler file until at most `slackBytes` are free (tmpfs counts whole pages,
   * so the slack is rounded down to a page). Returns the free bytes left.
   */
  fill(slackBytes: number): number;
  /** Deletes the filler file: the space it held is free again at once. */
  unfill(): void;
  /** Unmounts (even when a test failed) and removes the mount point. */
  dispose(): Promise<void>;
}

/** `cmd args` as root: directly when we are root, else through `sudo -n` (never prompts). */
async function asRoot(args: string[]): Promise<void> {
  const root = process.getuid?.() === 0;
  const [cmd, rest] = root ? [args[0]!, args.slice(1)] : ["sudo", ["-n", ...args]];
  const result = await runToCompletion(cmd, rest).catch((err: Error) => ({
    code: -1,
    stdout: "",
    stderr: err.message,
  }));
  if (result.code !== 0) {
    throw new Error(
      `small-disk: \`${args.join(" ")}\` failed${root ? "" : " (not root, tried sudo -n)"}: ${result.stderr.trim()}\n` +
        "These tests need a real small filesystem: run them as root, or give this user " +
        "passwordless sudo for mount and umount.",
    );
  }
}

/** Mounts a tmpfs of `sizeBytes` (a multiple of the page size) on a fresh temp dir. */
export async function mountSmallDisk(sizeBytes: number): Promise<SmallDisk> {
  const dir = tempDir("disk");
  try {
    // mode=1777: writable by whoever runs the test, as /tmp is.
    await asRoot(["mount", "-t", "tmpfs", "-o", `size=${sizeBytes},mode=1777`, "tmpfs", dir.path]);
  } catch (err) {
    await dir.cleanup();
    throw err;
  }
  const filler = join(dir.path, FILLER);
  const freeBytes = (): number => {
    const s = statfsSync(dir.path);
    return s.bavail * s.bsize;
  };
  let mounted = true;
  return {
    path: dir.path,
    sizeBytes,
    freeBytes,
    fill(slackBytes: number): number {
      const chunk = Buffer.alloc(FILL_CHUNK_BYTES, 0x66);
      const fd = openSync(filler, "a");
      try {
        for (let free = freeBytes(); free > slackBytes; free = freeBytes()) {
          try {
            writeSync(fd, chunk, 0, Math.min(chunk.length, free - slackBytes));
          } catch (err) {
            // The gateway took the space meanwhile: the disk is as full as asked.
            if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
            throw err;
          }
        }
      } finally {
        closeSync(fd);
      }
      return freeBytes();
    },
    unfill(): void {
      rmSync(filler, { force: true });
    },
    async dispose(): Promise<void> {
      if (mounted) {
        mounted = false;
        try {
          await asRoot(["umount", dir.path]);
        } catch (err) {
          // Still busy (a process we did not start?): detach it anyway, and say so.
          await asRoot(["umount", "-l", dir.path]);
          throw err;
        }
      }
      await dir.cleanup();
    },
  };
}

/** Size of `file` in bytes, 0 when it does not exist. */
export function fileBytes(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
