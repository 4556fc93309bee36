import type { ImportConfig } from "./schema.js";
import { JETSTREAM_NAME } from "./schema.js";

/** An `upstream.import` entry as the schema resolved it: the short or the long form. */
type ImportEntry =
  | string
  | {
      readonly subject?: string;
      readonly local?: string;
      readonly durable?: string;
      readonly stream?: string;
    }
  | undefined;

export interface ImportRules {
  readonly gatewayId: string | undefined;
  /** The account whose upstream.import this is, for `{account}`; absent at the top level. */
  readonly account?: string;
  /** Where the entries are (default `upstream.import`). */
  readonly at?: string;
  /**
   * Durable consumer names taken, with the path that took each: shared between the
   * top level and every account's entries, since no two may share a consumer.
   */
  readonly durables?: Map<string, string>;
  readonly mode: "jetstream" | "core" | undefined;
  /** The name a problem at a path is reported under. */
  readonly label: (at: string) => string;
  readonly problems: string[];
}

/** The wildcard tokens of a pattern, in order (`cmd.*.x.>` → `*`, `>`). */
const wildcards = (pattern: string): string[] =>
  pattern.split(".").filter((t) => t === "*" || t === ">");

const shown = (w: readonly string[]): string => (w.length === 0 ? "none" : w.join(" "));

/**
 * `upstream.import` in its long form with `{gateway}` substituted, after the rules
 * between an entry's keys (pushed onto `problems`, each with its fix):
 * - `local` has the wildcards of `subject` in the same order, since the hub tokens they
 *   match fill the local pattern's (`cmd.gw1.>` → `devices.>`);
 * - `stream` only with `durable`; `durable` only with `upstream.mode: jetstream`;
 * - a durable consumer's name holds the gateway's id (`{gateway}`), so two gateways never
 *   share one (they would split its messages), and no two entries name the same one.
 */
export function resolveImports(
  entries: readonly ImportEntry[] | undefined,
  rules: ImportRules,
): ImportConfig[] {
  const { gatewayId, account, label, problems } = rules;
  const base = rules.at ?? "upstream.import";
  const sub = (s: string): string => {
    const g = gatewayId === undefined ? s : s.replaceAll("{gateway}", gatewayId);
    return account === undefined ? g : g.replaceAll("{account}", account);
  };
  const out: ImportConfig[] = [];
  const durables = rules.durables ?? new Map<string, string>();
  for (const [i, entry] of (entries ?? []).entries()) {
    const at = (key: string): string => label(`${base}[${i}].${key}`);
    if (entry === undefined) continue;
    if (typeof entry === "string") {
      out.push({ subject: sub(entry), local: sub(entry), durable: null, stream: null });
      continue;
    }
    if (entry.subject === undefined) continue;
    const subject = sub(entry.subject);
    const local = entry.local === undefined ? subject : sub(entry.local);
    const want = wildcards(subject);
    const got = wildcards(local);
    if (want.join(" ") !== got.join(" ")) {
      problems.push(
        `${at("local")}: expected a pattern with the wildcards of subject in the same order ` +
          `(${shown(want)}), got "${entry.local}" (${shown(got)}); the hub tokens they match ` +
          `fill the local pattern's, as in subject "cmd.{gateway}.>" with local "devices.>"`,
      );
    }
    if (entry.stream !== undefined && entry.durable === undefined) {
      problems.push(
        `${at("stream")}: set without durable; only a durable import reads a stream: ` +
          `add durable (a consumer name holding {gateway}) or remove stream`,
      );
    }
    let durable: string | null = null;
    if (entry.durable !== undefined) {
      durable = sub(entry.durable);
      if (rules.mode === "core") {
        problems.push(
          `${at("durable")}: a durable import needs JetStream on the hub, but upstream.mode ` +
            "is core; set upstream.mode: jetstream, or remove durable for a core subscription",
        );
      }
      if (gatewayId !== undefined && !durable.includes(gatewayId)) {
        problems.push(
          `${at("durable")}: expected a consumer name holding {gateway}, got "${entry.durable}"; ` +
            "gateways sharing a durable consumer would split its messages between them: " +
            `write "${entry.durable}-{gateway}"`,
        );
      } else if (!JETSTREAM_NAME.test(durable)) {
        problems.push(
          `${at("durable")}: "${durable}" (with {gateway} substituted) is not ${JETSTREAM_NAME.expected}`,
        );
      }
      const first = durables.get(durable);
      if (first !== undefined) {
        problems.push(
          `${at("durable")}: "${durable}" is ${first} too; ` +
            "each durable import needs a consumer of its own",
        );
      } else durables.set(durable, `${base}[${i}].durable`);
    }
    out.push({ subject, local, durable, stream: entry.stream ?? null });
  }
  return out;
}
