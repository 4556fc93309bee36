// upstream.import as the config reads it (both forms, the rules between an entry's keys,
// what local clients may not publish), and the hub → local subject mapping.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import YAML from "yaml";
import {
  authorizationOptions,
  ConfigError,
  formatConfig,
  type LeafgateConfig,
  loadConfig,
} from "../../src/config/index.js";
import { closeDatabase, ImportCursors, openDatabase } from "../../src/store/index.js";
import { consumerConfig } from "../../src/upstream/durable-import.js";
import { subjectMap } from "../../src/upstream/subject-map.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "leafgate-imports-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function load(text: string): LeafgateConfig {
  const file = path.join(dir, "leafgate.yaml");
  fs.writeFileSync(file, `gateway: { id: gw1 }\n${text}`);
  return loadConfig({ file, env: {}, hostname: "h" });
}

function problemsOf(text: string): readonly string[] {
  try {
    load(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("upstream.import", () => {
  it("takes a pattern (a core import on the same subject) or a mapping, {gateway} substituted", () => {
    const c = load(`upstream:
  import:
    - "cmd.{gateway}.>"
    - { subject: "cfg.{gateway}.*.set", local: "config.*.set" }
    - { subject: "cmd.{gateway}.devices.>", local: "devices.>", durable: "cmds-{gateway}", stream: CMDS }
    - { subject: "jobs.{gateway}.>", durable: "jobs-{gateway}" }
`);
    expect(c.upstream.import).toStrictEqual([
      { subject: "cmd.gw1.>", local: "cmd.gw1.>", durable: null, stream: null },
      { subject: "cfg.gw1.*.set", local: "config.*.set", durable: null, stream: null },
      { subject: "cmd.gw1.devices.>", local: "devices.>", durable: "cmds-gw1", stream: "CMDS" },
      { subject: "jobs.gw1.>", local: "jobs.gw1.>", durable: "jobs-gw1", stream: null },
    ]);
    // Local clients may publish on none of the subjects imports deliver on.
    expect(authorizationOptions(c).hubOnly).toStrictEqual([
      "cmd.gw1.>",
      "config.*.set",
      "devices.>",
      "jobs.gw1.>",
    ]);
  });

  it("round-trips through the effective config `leafgate check` prints", () => {
    const c = load(`upstream:
  import:
    - "cmd.{gateway}.>"
    - { subject: "cmd.{gateway}.devices.>", local: "devices.>", durable: "cmds-{gateway}" }
`);
    const printed = YAML.parse(formatConfig(c));
    expect(printed.upstream.import).toStrictEqual([
      { subject: "cmd.gw1.>", local: "cmd.gw1.>", durable: null, stream: null },
      { subject: "cmd.gw1.devices.>", local: "devices.>", durable: "cmds-gw1", stream: null },
    ]);
    expect(
      load(YAML.stringify({ upstream: { import: printed.upstream.import } })).upstream,
    ).toStrictEqual(c.upstream);
  });

  it("defaults to the core import cmd.{gateway}.>", () => {
    expect(load("").upstream.import).toStrictEqual([
      { subject: "cmd.gw1.>", local: "cmd.gw1.>", durable: null, stream: null },
    ]);
  });

  it.each([
    [
      "upstream: { import: [ 5 ] }",
      "upstream.import[0]: expected a NATS subject pattern, or a mapping with subject (and local, durable, stream), got 5",
    ],
    [
      "upstream: { import: [ { local: a.> } ] }",
      "upstream.import[0].subject: expected the hub subject pattern to import, got nothing",
    ],
    [
      "upstream: { import: [ { subject: a.>, locale: b.> } ] }",
      'upstream.import[0].locale: unknown key (did you mean "local"?)',
    ],
    [
      "upstream: { import: [ { subject: 'a..b' } ] }",
      'upstream.import[0].subject: expected a NATS subject pattern, got "a..b"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.{gateway}.>', local: 'devices.*' } ] }",
      'upstream.import[0].local: expected a pattern with the wildcards of subject in the same order (>), got "devices.*" (*); the hub tokens they match fill the local pattern\'s, as in subject "cmd.{gateway}.>" with local "devices.>"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.*.x.>', local: 'a.>.b' } ] }",
      'upstream.import[0].local: expected a NATS subject pattern, got "a.>.b"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.*.>', local: 'devices.>' } ] }",
      'upstream.import[0].local: expected a pattern with the wildcards of subject in the same order (* >), got "devices.>" (>); the hub tokens they match fill the local pattern\'s, as in subject "cmd.{gateway}.>" with local "devices.>"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.{gateway}.x', local: 'devices.>' } ] }",
      'upstream.import[0].local: expected a pattern with the wildcards of subject in the same order (none), got "devices.>" (>); the hub tokens they match fill the local pattern\'s, as in subject "cmd.{gateway}.>" with local "devices.>"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.>', stream: CMDS } ] }",
      "upstream.import[0].stream: set without durable; only a durable import reads a stream: add durable (a consumer name holding {gateway}) or remove stream",
    ],
    [
      "upstream: { import: [ { subject: 'cmd.>', durable: cmds } ] }",
      'upstream.import[0].durable: expected a consumer name holding {gateway}, got "cmds"; gateways sharing a durable consumer would split its messages between them: write "cmds-{gateway}"',
    ],
    [
      "upstream: { import: [ { subject: 'cmd.>', durable: 'a.b' } ] }",
      'upstream.import[0].durable: expected a JetStream name (no ".", "*", ">", "/", "\\" or whitespace), got "a.b"',
    ],
    [
      "upstream: { mode: core, import: [ { subject: 'cmd.>', durable: 'c-{gateway}' } ] }",
      "upstream.import[0].durable: a durable import needs JetStream on the hub, but upstream.mode is core; set upstream.mode: jetstream, or remove durable for a core subscription",
    ],
    [
      "upstream: { import: [ { subject: 'a.>', durable: 'c-{gateway}' }, { subject: 'b.>', durable: 'c-gw1' } ] }",
      'upstream.import[1].durable: "c-gw1" is upstream.import[0].durable too; each durable import needs a consumer of its own',
    ],
  ])("refuses %s", (text, problem) => {
    expect(problemsOf(text)).toStrictEqual([problem]);
  });

  it("accepts a durable name holding the gateway's id written out", () => {
    expect(
      load("upstream: { import: [ { subject: 'cmd.>', durable: cmds-gw1 } ] }").upstream.import[0]!
        .durable,
    ).toBe("cmds-gw1");
  });
});

describe("subjectMap", () => {
  it.each([
    ["cmd.gw1.>", "cmd.gw1.>", "cmd.gw1.a.b", "cmd.gw1.a.b"],
    ["cmd.gw1.devices.>", "devices.>", "cmd.gw1.devices.air-1.cmd.read", "devices.air-1.cmd.read"],
    ["cmd.gw1.>", "devices.>", "cmd.gw1.air-1.cmd.read", "devices.air-1.cmd.read"],
    ["cmd.*.set", "local.*.cfg", "cmd.lamp.set", "local.lamp.cfg"],
    ["a.*.b.*", "x.*.*", "a.1.b.2", "x.1.2"],
    ["a.*.>", "*.b.>", "a.1.2.3", "1.b.2.3"],
    ["cmd.gw1.x", "local.y", "cmd.gw1.x", "local.y"],
  ])("%s → %s: %s becomes %s", (from, to, subject, local) => {
    expect(subjectMap(from, to)(subject)).toBe(local);
  });

  it.each([
    ["cmd.gw1.>", "devices.>", "cmd.gw1"],
    ["cmd.gw1.>", "devices.>", "cmd.gw2.x"],
    ["cmd.*.set", "local.*.cfg", "cmd.lamp.set.now"],
    ["cmd.*.set", "local.*.cfg", "cmd.lamp"],
  ])("%s → %s: %s matches not, maps to nothing", (from, to, subject) => {
    expect(subjectMap(from, to)(subject)).toBeUndefined();
  });
});

describe("import cursors", () => {
  it("keep the last sequence per consumer, for the stream as it was created", () => {
    const db = openDatabase(dir, "normal");
    try {
      const cursors = new ImportCursors(db);
      const cmds = { stream: "CMDS", created: "2026-01-01T00:00:00Z" };
      expect(cursors.last("cmds-gw1", cmds)).toBe(0);
      cursors.record("cmds-gw1", cmds, 7);
      cursors.record("jobs-gw1", cmds, 3);
      cursors.record("cmds-gw1", cmds, 9);
      expect(cursors.last("cmds-gw1", cmds)).toBe(9);
      expect(cursors.last("jobs-gw1", cmds)).toBe(3);
      // The stream made again, or another stream: nothing recorded for it.
      expect(cursors.last("cmds-gw1", { ...cmds, created: "2026-02-01T00:00:00Z" })).toBe(0);
      expect(cursors.last("cmds-gw1", { ...cmds, stream: "OTHER" })).toBe(0);
      cursors.record("cmds-gw1", { ...cmds, stream: "OTHER" }, 2);
      expect(cursors.last("cmds-gw1", { ...cmds, stream: "OTHER" })).toBe(2);
    } finally {
      closeDatabase(db);
    }
  });
});

describe("a durable import's consumer", () => {
  it("is durable, acked explicitly, filtered on the hub subject, one unacked message at a time", () => {
    expect(
      consumerConfig({
        subject: "cmd.gw1.>",
        local: "devices.>",
        durable: "cmds-gw1",
        stream: null,
      }),
    ).toStrictEqual({
      durable_name: "cmds-gw1",
      ack_policy: "explicit",
      deliver_policy: "all",
      filter_subject: "cmd.gw1.>",
      max_ack_pending: 1,
      ack_wait: 5_000_000_000,
    });
  });
});
