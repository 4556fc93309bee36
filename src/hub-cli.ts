/**
 * `leafgate hub check` and `leafgate hub create-stream`: the hub side of each account's link,
 * reached as the gateway reaches it (same servers, credentials, TLS), judged by the rules
 * of upstream/hub-admin.ts; docs/hub.md. Loaded only for `hub`.
 */
import { parseArgs } from "node:util";
import {
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  type AccountConfig,
  accountsOf,
  ConfigError,
  formatDuration,
  GLOBAL_ACCOUNT,
  type LeafgateConfig,
  maskUrls,
  parseDuration,
  parseSize,
  secretRedactor,
  secretsOf,
} from "./config/index.js";
import { errorMessage, patternCovers } from "./core/index.js";
import {
  connect,
  connectOptions,
  createWindowMs,
  defaultStreamName,
  describePlan,
  dialOptions,
  exportedSubjects,
  type Finding,
  JETSTREAM_API_TIMEOUT_MS,
  limitText,
  type StreamFacts,
  type StreamPlan,
  streamFacts,
  streamFindings,
  uncoveredBy,
  worst,
} from "./upstream/index.js";

/** Exit codes of `hub`: 0 all good, 1 a problem found, 2 usage or plan only, 3 hub unreachable. */
export const HUB_EXIT = { ok: 0, problem: 1, usage: 2, unreachable: 3 } as const;

/** JetStream API error code for "stream not found". */
const STREAM_NOT_FOUND = 10059;
/** JetStream API error code for "subjects overlap with an existing stream". */
const SUBJECTS_OVERLAP = 10065;
const NANOS_PER_MS = 1e6;
/** `create-stream --replicas`: a JetStream cluster has at most 5 replicas of a stream. */
const MAX_REPLICAS = 5;

type Out = (line: string) => void;

/** The one place this command writes: secrets of the config masked, URL user info masked. */
function printer(config: LeafgateConfig): Out {
  const scrub = secretRedactor(secretsOf(config));
  return (line) => process.stdout.write(`${scrub(maskUrls(line))}\n`);
}

function usage(help: string, message: string): number {
  process.stderr.write(`leafgate: hub: ${message}\n\n${help}`);
  return HUB_EXIT.usage;
}

/** `leafgate hub <check|create-stream> ...`; `load` reads the config as `run` would. */
export async function hub(
  args: string[],
  load: (file: string | undefined) => LeafgateConfig,
  help: string,
): Promise<number> {
  try {
    return await hubCommand(args, load, help);
  } finally {
    lingerNoLonger();
  }
}

async function hubCommand(
  args: string[],
  load: (file: string | undefined) => LeafgateConfig,
  help: string,
): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: "string", short: "c" },
      account: { type: "string" },
      name: { type: "string" },
      replicas: { type: "string" },
      "max-age": { type: "string" },
      "max-bytes": { type: "string" },
      yes: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help || sub === "-h" || sub === "--help") {
    process.stdout.write(help);
    return 0;
  }
  if (sub !== "check" && sub !== "create-stream") {
    return usage(help, `expected check or create-stream, got ${sub ?? "nothing"}`);
  }
  if (sub === "check") {
    for (const flag of ["name", "replicas", "max-age", "max-bytes", "yes"] as const) {
      if (values[flag] !== undefined && values[flag] !== false) {
        return usage(help, `--${flag} is for create-stream only`);
      }
    }
  }
  const config = load(values.config);
  const accounts = accountsOf(config);
  let chosen: readonly AccountConfig[] = accounts;
  if (values.account !== undefined) {
    chosen = accounts.filter((a) => a.name === values.account);
    if (chosen.length === 0) {
      throw new ConfigError(
        "LG_ERR_CONFIG_INVALID",
        `--account ${values.account}: no such account (accounts: ${accounts.map((a) => a.name).join(", ")})`,
      );
    }
  }
  const out = printer(config);
  if (sub === "check") {
    let code: number = HUB_EXIT.ok;
    for (const account of chosen) {
      code = Math.max(
        code,
        await checkAccount(config, account, accounts.length > 1, out, values.config),
      );
    }
    return code;
  }
  if (chosen.length > 1) {
    return usage(
      help,
      `the config has accounts ${chosen.map((a) => a.name).join(", ")}: name one with --account`,
    );
  }
  const plan = planOf(config, chosen[0]!, values);
  if (typeof plan === "string") return usage(help, plan);
  return createStream(config, chosen[0]!, plan, values.yes ?? false, out, values.config);
}

/**
 * nats.js leaves the socket of a connect that timed out before the server's INFO open (a
 * hub that accepts and never answers: its transport ignores close() when not connected),
 * which would keep this command alive after it is done. Set once the command has finished,
 * this timer does not keep the process alive itself: it fires only if something left does
 * (by then the lines are written, synchronously, and the exit code set), and ends it.
 */
function lingerNoLonger(): void {
  setTimeout(() => process.exit(), 0).unref();
}

/** The `--account` argument that names `account` again in a suggested command. */
function accountArg(account: AccountConfig, several: boolean): string {
  if (!several) return "";
  // Quoted for the shell when it is more than a plain word: `$G` would be expanded.
  return /^[\w-]+$/.test(account.name)
    ? ` --account ${account.name}`
    : ` --account '${account.name}'`;
}

/**
 * Dials each of the account's servers in turn, as the gateway does (connect-options),
 * until one answers; undefined (after saying why for each) when none does.
 */
async function reach(
  config: LeafgateConfig,
  account: AccountConfig,
  out: Out,
): Promise<{ nc: NatsConnection; server: string } | undefined> {
  const u = account.upstream;
  const base = connectOptions(u, config.gateway.id);
  const failures: string[] = [];
  for (let n = 0; n < u.servers.length; n++) {
    try {
      const nc = await connect(dialOptions(base, u.servers, n));
      return { nc, server: maskUrls(u.servers[n]!) };
    } catch (err) {
      const why = errorMessage(err);
      // nats.js says only "timeout" when the server accepted the connection but sent no INFO.
      const said =
        why === "timeout" ? "timeout (connected, but no answer from a NATS server)" : why;
      failures.push(`${maskUrls(u.servers[n]!)}: ${said}`);
    }
  }
  out(`  hub       unreachable: ${failures.join("; ")}`);
  out("    fix: start the hub (nats-server -js), or correct upstream.servers and its credentials");
  return undefined;
}

/** The hub's JetStream API, or undefined after saying that it has none and how to fix it. */
async function manager(
  nc: NatsConnection,
  u: AccountConfig["upstream"],
  out: Out,
): Promise<JetStreamManager | undefined> {
  try {
    return await jetstreamManager(nc, {
      timeout: JETSTREAM_API_TIMEOUT_MS,
      ...(u.domain ? { domain: u.domain } : {}),
    });
  } catch (err) {
    print(out, [
      {
        verdict: "fail",
        text: `JetStream is not enabled on the hub (${errorMessage(err)})`,
        fix: "run nats-server with -js (or jetstream {} in its config), or set upstream.mode: core",
      },
    ]);
    return undefined;
  }
}

/** A JetStream API failure past the first request (a timeout, a permission): a problem, said. */
function apiFailed(out: Out, err: unknown): number {
  print(out, [
    {
      verdict: "fail",
      text: `cannot inspect streams on the hub: ${errorMessage(err)}`,
      fix: "check the hub's log, and the account's permissions on $JS.API.>",
    },
  ]);
  return HUB_EXIT.problem;
}

function print(out: Out, findings: readonly Finding[]): void {
  for (const f of findings) {
    out(`  ${f.verdict.padEnd(4)}  ${f.text}`);
    if (f.fix !== undefined) out(`        fix: ${f.fix}`);
  }
}

function bytesText(n: number): string {
  return n < 1024
    ? `${n} B`
    : n < 1024 ** 2
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

async function checkAccount(
  config: LeafgateConfig,
  account: AccountConfig,
  several: boolean,
  out: Out,
  file: string | undefined,
): Promise<number> {
  const u = account.upstream;
  out(`account ${account.name}: prefix ${u.prefix}, export ${u.export.join(", ")}`);
  const reached = await reach(config, account, out);
  if (reached === undefined) return HUB_EXIT.unreachable;
  const { nc, server } = reached;
  try {
    out(`  hub       ${server} reachable (nats-server ${nc.info?.version ?? "?"})`);
    if (u.mode === "core") {
      print(out, [{ verdict: "ok", text: "upstream.mode core: no stream needed" }]);
      return HUB_EXIT.ok;
    }
    const jsm = await manager(nc, u, out);
    if (jsm === undefined) return HUB_EXIT.problem;
    out(`  jetstream enabled${u.domain ? ` (domain ${u.domain})` : ""}`);
    const exported = exportedSubjects(u);
    let facts: StreamFacts | undefined;
    let how = "named in upstream.stream";
    if (u.stream !== null) {
      try {
        facts = streamFacts(await jsm.streams.info(u.stream));
      } catch (err) {
        if ((err as { code?: number }).code !== STREAM_NOT_FOUND) throw err;
      }
    } else {
      how = "found by subject";
      // As the gateway looks for one (stream-check.ts): the first that captures them all.
      for await (const info of jsm.streams.list()) {
        if (uncoveredBy(info.config.subjects ?? [], exported).length === 0) {
          facts = streamFacts(info);
          break;
        }
      }
    }
    if (facts === undefined) {
      const named = u.stream === null ? "no stream captures" : `no stream ${u.stream} to capture`;
      print(out, [
        {
          verdict: "fail",
          text: `${named} ${exported.join(", ")}`,
          fix: `leafgate hub create-stream${configArg(file)}${accountArg(account, several)} --yes`,
        },
      ]);
      return HUB_EXIT.problem;
    }
    out(`  stream    ${facts.name} (${how})`);
    out(`  subjects  ${facts.subjects.join(", ")}`);
    out(`  storage   ${facts.storage}, replicas ${facts.replicas}`);
    out(`  duplicate window ${formatDuration(facts.duplicateWindowMs)}`);
    out(
      `  limits    max_msgs ${limitText(facts.maxMsgs)}, max_bytes ${limitText(facts.maxBytes)}, max_age ${limitText(facts.maxAgeMs, formatDuration)}, discard ${facts.discard}`,
    );
    out(`  messages  ${facts.messages} (${bytesText(facts.bytes)})`);
    const findings = streamFindings(facts, { upstream: u, buffer: account.buffer });
    print(out, findings);
    return worst(findings) === "fail" ? HUB_EXIT.problem : HUB_EXIT.ok;
  } catch (err) {
    return apiFailed(out, err);
  } finally {
    await nc.close().catch(() => {});
  }
}

/** `-c FILE` as given, for a suggested command line. */
function configArg(file: string | undefined): string {
  return file === undefined ? "" : ` -c ${file}`;
}

function planOf(
  config: LeafgateConfig,
  account: AccountConfig,
  values: { name?: string; replicas?: string; "max-age"?: string; "max-bytes"?: string },
): StreamPlan | string {
  const u = account.upstream;
  if (u.mode === "core")
    return `account ${account.name} has upstream.mode core: it needs no stream`;
  const replicas = Number(values.replicas ?? 1);
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) {
    return `--replicas: expected 1 to ${MAX_REPLICAS}, got "${values.replicas}"`;
  }
  const maxAgeMs = values["max-age"] === undefined ? 0 : parseDuration(values["max-age"]);
  if (maxAgeMs === undefined || maxAgeMs < 0) {
    return `--max-age: expected a duration (7d, 12h), got "${values["max-age"]}"`;
  }
  const maxBytes = values["max-bytes"] === undefined ? -1 : parseSize(values["max-bytes"]);
  if (maxBytes === undefined || maxBytes === 0) {
    return `--max-bytes: expected a size (10GB, 512MiB), got "${values["max-bytes"]}"`;
  }
  const name =
    values.name ??
    u.stream ??
    defaultStreamName(
      config.gateway.id,
      account.name === GLOBAL_ACCOUNT ? undefined : account.name,
    );
  const duplicateWindowMs = createWindowMs(u.ack_timeout);
  if (maxAgeMs > 0 && maxAgeMs < duplicateWindowMs) {
    return `--max-age ${values["max-age"]} is shorter than the duplicate window ${formatDuration(duplicateWindowMs)}`;
  }
  return { name, subjects: [`${u.prefix}.>`], replicas, duplicateWindowMs, maxAgeMs, maxBytes };
}

async function createStream(
  config: LeafgateConfig,
  account: AccountConfig,
  plan: StreamPlan,
  yes: boolean,
  out: Out,
  file: string | undefined,
): Promise<number> {
  const u = account.upstream;
  out(`account ${account.name}: prefix ${u.prefix}`);
  const reached = await reach(config, account, out);
  if (reached === undefined) return HUB_EXIT.unreachable;
  const { nc, server } = reached;
  try {
    const jsm = await manager(nc, u, out);
    if (jsm === undefined) return HUB_EXIT.problem;
    const existing = await jsm.streams.info(plan.name).catch((err: unknown) => {
      if ((err as { code?: number }).code === STREAM_NOT_FOUND) return undefined;
      throw err;
    });
    if (existing !== undefined) {
      const subjects = existing.config.subjects ?? [];
      const missing = uncoveredBy(subjects, plan.subjects);
      if (missing.length === 0) {
        out(
          `stream ${plan.name} already exists on ${server} and captures ${plan.subjects.join(", ")}; nothing to do`,
        );
        return HUB_EXIT.ok;
      }
      out(
        `stream ${plan.name} already exists on ${server} with subjects ${subjects.join(", ") || "none"}: it does not capture ${missing.join(", ")}`,
      );
      out(
        "  it is left as it is (this command never changes or deletes a stream): add the subjects to it, or create one under another name with --name",
      );
      return HUB_EXIT.problem;
    }
    out(`will create on ${server}:`);
    for (const line of describePlan(plan)) out(`  ${line}`);
    if (!yes) {
      out("add --yes to create it");
      return HUB_EXIT.usage;
    }
    try {
      await jsm.streams.add({
        name: plan.name,
        subjects: [...plan.subjects],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        num_replicas: plan.replicas,
        duplicate_window: plan.duplicateWindowMs * NANOS_PER_MS,
        max_age: plan.maxAgeMs * NANOS_PER_MS,
        max_bytes: plan.maxBytes,
      });
    } catch (err) {
      const code = (err as { api_error?: { err_code?: number } }).api_error?.err_code;
      out(`the hub refused to create stream ${plan.name}: ${errorMessage(err)}`);
      if (code === SUBJECTS_OVERLAP || /overlap/i.test(errorMessage(err))) {
        const others: string[] = [];
        for await (const info of jsm.streams.list()) {
          const theirs = info.config.subjects ?? [];
          if (
            theirs.some((s) =>
              plan.subjects.some((p) => patternCovers(s, p) || patternCovers(p, s)),
            )
          ) {
            others.push(`${info.config.name} (${theirs.join(", ")})`);
          }
        }
        out(
          `  a subject is captured by one stream only, and ${others.join(", ") || "another stream"} already captures subjects of ${plan.subjects.join(", ")}: name that stream in upstream.stream (leafgate hub check tells whether it will do), or narrow its subjects`,
        );
      }
      return HUB_EXIT.problem;
    }
    out(`created stream ${plan.name}; check it with: leafgate hub check${configArg(file)}`);
    return HUB_EXIT.ok;
  } catch (err) {
    return apiFailed(out, err);
  } finally {
    await nc.close().catch(() => {});
  }
}
