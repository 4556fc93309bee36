/**
 * `leafgate status [--url URL] [--token T] [--json] [-c FILE]`: asks a running gateway
 * for `/status`, `/readyz` and `/metrics` (its drop counters) and prints a summary. Loaded only for this
 * command. Exit codes: 0 ready, 1 not ready, 2 bad usage, 3 no usable answer.
 */
import { request } from "node:http";
import { parseArgs } from "node:util";
import type { Readiness } from "./readiness.js";
import { type Drop, dropsOf, formatSummary, type StatusView } from "./status-summary.js";

export const EXIT_READY = 0;
export const EXIT_NOT_READY = 1;
export const EXIT_USAGE = 2;
export const EXIT_UNREACHABLE = 3;

/** How long the gateway has to answer all three requests. */
const TIMEOUT_MS = 3000;
const DEFAULT_URL = "http://127.0.0.1:8222";

export interface StatusDeps {
  /** Loads `-c FILE` (defaults and LEAFGATE_* applied, as `run` would). */
  readonly loadConfig: (file: string) => {
    readonly http: {
      readonly enabled: boolean;
      readonly host: string;
      readonly port: number;
      readonly token?: string | undefined;
    };
  };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** The URL a config's endpoint answers at, as seen from this machine. */
export function urlOf(http: { readonly host: string; readonly port: number }): string {
  const any = http.host === "0.0.0.0" || http.host === "" ? "127.0.0.1" : http.host;
  const host = any === "::" ? "::1" : any;
  return `http://${host.includes(":") ? `[${host}]` : host}:${http.port}`;
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

function get(url: URL, token: string | undefined, signal: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "GET",
        signal,
        headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

class Unreachable extends Error {}

/** Both answers, within TIMEOUT_MS, or an Unreachable saying what went wrong. */
async function fetchBoth(
  base: string,
  token: string | undefined,
): Promise<{ status: StatusView; ready: Readiness; drops: Drop[] }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let answers: Answer[];
  try {
    answers = await Promise.all(
      ["/status", "/readyz", "/metrics"].map((p) => get(new URL(p, base), token, abort.signal)),
    );
  } catch (err) {
    const why = abort.signal.aborted
      ? `no answer within ${TIMEOUT_MS / 1000} s`
      : ((err as Error).message ?? String(err));
    throw new Unreachable(
      `no gateway answers at ${base}: is it running? is http.enabled true? (${why})`,
    );
  } finally {
    clearTimeout(timer);
  }
  const [status, ready, metrics] = answers as [Answer, Answer, Answer];
  if (status.status === 401 || ready.status === 401) {
    throw new Unreachable(
      `the gateway at ${base} wants a bearer token${token === undefined ? "" : " and refused this one"}: ` +
        "give --token, LEAFGATE_HTTP_TOKEN, or -c with the config that sets http.token",
    );
  }
  try {
    if (
      status.status !== 200 ||
      (ready.status !== 200 && ready.status !== 503) ||
      metrics.status !== 200
    ) {
      throw new Error(
        `HTTP ${status.status} for /status, ${ready.status} for /readyz, ${metrics.status} for /metrics`,
      );
    }
    return {
      status: JSON.parse(status.body),
      ready: JSON.parse(ready.body),
      drops: dropsOf(metrics.body),
    };
  } catch (err) {
    throw new Unreachable(
      `${base} answers, but not as a leafgate gateway does: ${(err as Error).message}`,
    );
  }
}

export async function statusCommand(args: string[], help: string, deps: StatusDeps) {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      url: { type: "string" },
      token: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    deps.out(help);
    return EXIT_READY;
  }
  const config = values.config !== undefined ? deps.loadConfig(values.config) : undefined;
  if (config !== undefined && values.url === undefined && config.http.port === 0) {
    deps.err(
      `leafgate: status: http.port is 0 in ${values.config} (a port chosen at start): give --url\n`,
    );
    return EXIT_USAGE;
  }
  let base = values.url ?? (config !== undefined ? urlOf(config.http) : DEFAULT_URL);
  try {
    const parsed = new URL(base);
    if (parsed.protocol !== "http:") throw new Error("not http");
    base = parsed.origin;
  } catch {
    deps.err(`leafgate: status: --url: expected http://HOST:PORT, got "${base}"\n`);
    return EXIT_USAGE;
  }
  if (config !== undefined && values.url === undefined && !config.http.enabled) {
    deps.err(
      `leafgate: status: http.enabled is false in ${values.config}: that gateway serves no status\n`,
    );
    return EXIT_UNREACHABLE;
  }
  const token = values.token ?? (deps.env.LEAFGATE_HTTP_TOKEN || undefined) ?? config?.http.token;
  let answer: { status: StatusView; ready: Readiness; drops: Drop[] };
  try {
    answer = await fetchBoth(base, token);
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err;
    deps.err(`leafgate: status: ${err.message}\n`);
    return EXIT_UNREACHABLE;
  }
  if (values.json) {
    const { ready, status, drops } = answer;
    deps.out(`${JSON.stringify({ url: base, ready, status, drops })}\n`);
  } else {
    deps.out(formatSummary(base, answer.status, answer.ready, answer.drops));
  }
  return answer.ready.ready ? EXIT_READY : EXIT_NOT_READY;
}
