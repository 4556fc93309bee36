import { jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { errorMessage, patternCovers } from "../core/index.js";

export type StreamCheck =
  | { readonly ok: true; readonly stream: string; readonly duplicateWindowMs: number }
  | { readonly ok: false; readonly problem: string };

/** JetStream API error code for "stream not found". */
const STREAM_NOT_FOUND = 10059;
/** How long a JetStream API request may take before the hub counts as not answering. */
export const JETSTREAM_API_TIMEOUT_MS = 5_000;
/** JetStream's own duplicate window when a stream sets none. */
const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;
const NANOS_PER_MS = 1e6;

/** The stream's duplicate window in ms (JetStream reports nanoseconds). */
export function windowMs(info: StreamInfo): number {
  const nanos = info.config.duplicate_window;
  return typeof nanos === "number" && nanos > 0
    ? Math.floor(nanos / NANOS_PER_MS)
    : DEFAULT_DUPLICATE_WINDOW_MS;
}

function uncovered(info: StreamInfo, wanted: readonly string[]): string[] {
  return uncoveredBy(info.config.subjects ?? [], wanted);
}

/** The subjects of `wanted` that no pattern of a stream's `subjects` captures. */
export function uncoveredBy(subjects: readonly string[], wanted: readonly string[]): string[] {
  return wanted.filter((w) => !subjects.some((s) => patternCovers(s, w)));
}

/**
 * Verifies that a stream on the hub captures every exported subject (under the
 * prefix). `stream` null means any stream will do: the first that covers them all.
 */
export async function checkStream(
  nc: NatsConnection,
  stream: string | null,
  exported: readonly string[],
  domain: string | null = null,
): Promise<StreamCheck> {
  // Our own command first (Debian ships no nats CLI); --defaults: without it the nats CLI
  // asks about every other setting of the stream.
  const fix = (name: string) =>
    "create it on the hub with leafgate hub create-stream --yes (and this gateway's -c; " +
    `docs/hub.md), or e.g. nats stream add ${name} --subjects '${exported.join("' --subjects '")}' --defaults`;
  let jsm: Awaited<ReturnType<typeof jetstreamManager>>;
  try {
    jsm = await jetstreamManager(nc, {
      timeout: JETSTREAM_API_TIMEOUT_MS,
      ...(domain ? { domain } : {}),
    });
  } catch (err) {
    return {
      ok: false,
      problem: `the hub has no JetStream (${errorMessage(err)}); enable it there or set upstream.mode: core`,
    };
  }
  try {
    if (stream !== null) {
      const info = await jsm.streams.info(stream);
      const missing = uncovered(info, exported);
      if (missing.length === 0) return { ok: true, stream, duplicateWindowMs: windowMs(info) };
      return {
        ok: false,
        problem: `stream ${stream} on the hub does not capture ${missing.join(", ")} (its subjects: ${(info.config.subjects ?? []).join(", ") || "none"}); add them to the stream`,
      };
    }
    const names: string[] = [];
    for await (const info of jsm.streams.list()) {
      names.push(info.config.name);
      if (uncovered(info, exported).length === 0) {
        return { ok: true, stream: info.config.name, duplicateWindowMs: windowMs(info) };
      }
    }
    return {
      ok: false,
      problem: `no stream on the hub captures ${exported.join(", ")} (streams: ${names.join(", ") || "none"}); ${fix("EDGE")}`,
    };
  } catch (err) {
    if ((err as { code?: number }).code === STREAM_NOT_FOUND) {
      return { ok: false, problem: `the hub has no stream ${stream}; ${fix(stream ?? "EDGE")}` };
    }
    return { ok: false, problem: `cannot inspect streams on the hub: ${errorMessage(err)}` };
  }
}
