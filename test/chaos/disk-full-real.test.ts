// A real full disk: the gateway's data_dir is on a small tmpfs that a filler file fills, so
// the kernel itself refuses writes (ENOSPC), not SQLite's max_page_count. The bundle runs
// as a child process, publishers are mqtt.js (MQTT 5 and 3.1.1), the hub is a real
// nats-server with JetStream that is down while the disk fills (except in 6).
//
// What SQLite does on a full disk (measured on tmpfs, and on ext4 on a loop device, with
// synchronous NORMAL and FULL): a WAL append that finds no space fails with SQLITE_FULL;
// so does a checkpoint that must grow the database file to take WAL pages, and so does a
// DELETE, which is a WAL append too; no SQLITE_IOERR_* appeared. An automatic checkpoint
// that fails is silent (the commit stands) and the WAL grows on. There is no `-shm` file:
// the database is opened with locking_mode=EXCLUSIVE before journal_mode=WAL, so SQLite
// keeps the WAL index in heap memory; the tests assert the data dir holds only the
// database, its WAL and the gateway's disk reserve. That reserve (16 MiB,
// src/store/disk-guard.ts) is what makes a full disk workable: released when the disk
// refuses a write, it lets the WAL be checkpointed, and the database is then held at its
// size, where evictions and deletes rewrite the WAL in place.
//
// Proven here, each with exact counts derived from what the test observes (PUBACKs,
// /metrics, /status, the stream):
//  1. reject: once the disk is full every new message is refused — MQTT 5 gets PUBACK
//     0x97, MQTT 3.1.1 gets no PUBACK and a closed connection — and counted in
//     leafgate_buffer_dropped_total{reason="disk_full"} and logged as drops are (not an
//     error line per message); the gateway stays healthy; when space returns ingest
//     resumes without a restart; every PUBACKed message reaches the stream exactly once,
//     in order; the database passes integrity_check.
//  2. drop_oldest: on the full disk every telemetry message is still PUBACKed, the oldest
//     give way (exactly those, counted as evicted); alarms (reject) get room from telemetry
//     and are refused only once no telemetry is left.
//  3. kill -9 while the disk is full, then a restart with no byte free: the gateway starts,
//     has lost nothing acked, refuses what does not fit; the hub returns with the disk
//     still full: everything drains, and the room it frees takes new messages.
//  4. The worst case: no reserve, no byte free, a WAL whose pages the database file must
//     grow to take — every checkpoint (at start, in upkeep) fails with SQLITE_FULL, nothing
//     crashes or corrupts, everything new is refused; the hub gets every row once, but
//     they can be deleted only when space returns, and then they are, without a restart.
//  5. With no reserve to release and a WAL that cannot be checkpointed, a message that
//     does not fit is refused without evicting rows that could not make room for it.
//  6. The hub returns while the disk is full: deleting forwarded rows works (the delete is
//     what finds the disk full, and releases the reserve), and their room takes new
//     messages.
// LEAFGATE_CHAOS_FULL=1: a larger disk and slack (so SQLite checkpoints on its own while
// filling it), and durability fsync.
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import Database from "better-sqlite3";
import mqtt, { type MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import type { GatewayConfigInput } from "../helpers/config.js";
import { createEdgeStream } from "../helpers/fixtures.js";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import {
  closeClients,
  connectClient,
  type NatsServer,
  startNatsServer,
  streamInfo,
  streamMessages,
} from "../helpers/nats-server.js";
import { stopAll, stopProcess, waitForLine } from "../helpers/procs.js";
import { mountSmallDisk, type SmallDisk } from "../helpers/small-disk.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

const FULL = process.env.LEAFGATE_CHAOS_FULL === "1";
/** The larger run also syncs every commit (the error codes are the same). */
const DURABILITY = FULL ? "fsync" : "normal";
const GATEWAY_ID = "disk-gw";
const STREAM = "EDGE";
/** The gateway's reserve (16 MiB, src/store/disk-guard.ts) plus the database and room to fill. */
const DISK_BYTES = (FULL ? 64 : 32) * 1024 * 1024;
/** What the filler leaves to the gateway: the database grows into this until ENOSPC. */
const SLACK_BYTES = (FULL ? 8 : 1) * 1024 * 1024;
/** Payloads are large so the disk fills in a few hundred messages. */
const PAYLOAD_BYTES = 8 * 1024;
/** Refusals asked for after the first, to show they go on while the disk is full. */
const MORE_REFUSED = 5;
/** Messages published once space is back. */
const AFTER_SPACE = 5;
/** A bound on publishes while waiting for the disk to refuse (the slack holds far fewer). */
const MAX_PUBLISHES = Math.ceil(DISK_BYTES / PAYLOAD_BYTES);
/** Telemetry published after the disk is full: several times what the capped buffer holds. */
const TELEMETRY_AFTER_FULL = Math.ceil((3 * SLACK_BYTES) / PAYLOAD_BYTES);
/**
 * Acked rows that live only in the WAL: about 3 pages each, well under SQLite's automatic
 * checkpoint (1000 pages), so a checkpoint must grow the database file for all of them.
 */
const WAL_ONLY_ROWS = 80;
/** A message larger than the space left (LARGE_SLACK_BYTES) and at most the rows above. */
const LARGE_BYTES = 256 * 1024;
/**
 * Space left for the large message's WAL append: its frames take it all. Evicting twice
 * the message's bytes of 8 KiB rows rewrites about one leaf page per 8 rows, which fits in
 * what the failed append took; inserting the message again would not.
 */
const LARGE_SLACK_BYTES = 128 * 1024;
/** PUBACK reason code "Quota exceeded" (MQTT 5, 3.4.2.1). */
const QUOTA_EXCEEDED = 0x97;
const DATA_FILES = ["leafgate.db", "leafgate.db-wal", "leafgate.reserve"];

const decoder = new TextDecoder();

function payload(tag: string, n: number): Buffer {
  const head = Buffer.from(`${tag}-${n}:`);
  return Buffer.concat([head, Buffer.alloc(PAYLOAD_BYTES - head.length, 0x61)]);
}

/** `tag-n` from a payload made by `payload`. */
function label(data: Uint8Array): string {
  const text = decoder.decode(data.subarray(0, 32));
  return text.slice(0, text.indexOf(":"));
}

type Outcome = "acked" | "refused" | "closed";

/** Publishes QoS 1 and tells what came back: PUBACK, PUBACK 0x97, or the connection closed. */
async function publish(client: MqttClient, topic: string, body: Buffer): Promise<Outcome> {
  if (client.disconnected || !client.connected) return "closed";
  let onClose!: () => void;
  const closed = new Promise<Outcome>((resolve) => {
    onClose = () => resolve("closed");
    client.once("close", onClose);
  });
  try {
    return await Promise.race([
      client.publishAsync(topic, body, { qos: 1 }).then(
        () => "acked" as const,
        (err: { code?: number }) => {
          if (err.code === QUOTA_EXCEEDED) return "refused" as const;
          throw err;
        },
      ),
      closed,
    ]);
  } finally {
    client.off("close", onClose);
  }
}

async function connect(port: number, protocolVersion: 4 | 5): Promise<MqttClient> {
  const client = mqtt.connect({
    host: "127.0.0.1",
    port,
    protocolVersion,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  client.on("error", () => {}); // a refused 3.1.1 publish closes the socket: an outcome here
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("close", () => reject(new Error("mqtt.js: closed before CONNACK")));
  });
  return client;
}

interface ClassStatus {
  name: string;
  messages: number;
  bytes: number;
}

interface Status {
  healthy: boolean;
  disk: { state: string; resumeAtFreeBytes: number };
  outbox: { pending: number; lastId: number; classes: ClassStatus[] };
}

async function status(gw: ChildGateway): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as Status;
}

async function classStatus(gw: ChildGateway, name: string): Promise<ClassStatus> {
  return (await status(gw)).outbox.classes.find((c) => c.name === name)!;
}

/** One sample from /metrics; labels as the registry renders them (sorted by key). */
async function metric(
  gw: ChildGateway,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  const keys = Object.keys(labels).sort();
  const series =
    keys.length === 0 ? name : `${name}{${keys.map((k) => `${k}="${labels[k]}"`).join(",")}}`;
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const DROPPED = "leafgate_buffer_dropped_total";

function integrity(dataDir: string): unknown {
  const db = new Database(join(dataDir, "leafgate.db"));
  try {
    return db.pragma("integrity_check", { simple: true });
  } finally {
    db.close();
  }
}

describe("a real full disk (tmpfs data_dir)", () => {
  let hub: NatsServer | undefined;
  let disk: SmallDisk | undefined;
  const clients: MqttClient[] = [];
  const dirs: TempDir[] = [];

  afterEach(async () => {
    try {
      for (const c of clients.splice(0)) c.end(true);
      await closeClients();
      await stopAll({ graceMs: 2_000 }); // gateways and the hub, by PID
    } finally {
      hub = undefined;
      const mounted = disk;
      disk = undefined;
      await mounted?.dispose(); // after every process on it is gone
      for (const d of dirs.splice(0)) await d.cleanup();
    }
  });

  /**
   * Hub with the stream, then down; a gateway on the small disk buffering for it, with
   * `buffer` the settings under `buffer:` besides its durability.
   */
  async function setUp(buffer: GatewayConfigInput["buffer"]): Promise<{
    gw: ChildGateway;
    file: string;
    dataDir: string;
    start: () => Promise<ChildGateway>;
  }> {
    disk = await mountSmallDisk(DISK_BYTES);
    hub = await startNatsServer();
    const nc = await connectClient(hub.url);
    await createEdgeStream(nc);
    await nc.close();
    await hub.kill();
    const { dir, file } = writeConfig({
      gateway: { id: GATEWAY_ID },
      upstream: { servers: [hub.url], stream: STREAM },
      buffer: { durability: DURABILITY, ...buffer },
    });
    dirs.push(dir);
    const dataDir = join(disk.path, "data");
    const start = () => startGatewayProcess(file, { LEAFGATE_GATEWAY_DATA_DIR: dataDir });
    const gw = await start();
    return { gw, file, dataDir, start };
  }

  async function client(gw: ChildGateway, protocolVersion: 4 | 5): Promise<MqttClient> {
    const c = await connect(gw.mqttPort, protocolVersion);
    clients.push(c);
    return c;
  }

  /** The hub comes back; resolves once the gateway has forwarded everything. */
  async function hubBack(gw: ChildGateway): Promise<NatsConnection> {
    await hub!.restart();
    const nc = await connectClient(hub!.url);
    await waitFor(async () => (await status(gw)).outbox.pending === 0, { timeoutMs: 20_000 });
    return nc;
  }

  /** Every message in the stream as `tag-n`, in stream order, once `expected` are there. */
  async function streamed(nc: NatsConnection, expected: number): Promise<string[]> {
    await waitFor(async () => (await streamInfo(nc, STREAM)).state.messages >= expected);
    const messages = await streamMessages(nc, STREAM);
    const ids = messages.map((m) => m.headers["Nats-Msg-Id"]?.[0]);
    expect(new Set(ids).size).toBe(messages.length); // each row once
    return messages.map((m) => label(m.data));
  }

  async function drained(gw: ChildGateway, expected: number): Promise<string[]> {
    return streamed(await hubBack(gw), expected);
  }

  /** SIGTERM; the database must then pass integrity_check. */
  async function stopAndCheck(gw: ChildGateway, dataDir: string): Promise<void> {
    expect(await stopProcess(gw.proc)).toEqual({ code: 0, signal: null });
    expect(integrity(dataDir)).toBe("ok");
  }

  it("reject: refuses with 0x97 or no PUBACK, counts exactly, resumes when space returns, loses nothing", async () => {
    const { gw, dataDir } = await setUp({ on_full: "reject" });
    expect(readdirSync(dataDir).sort()).toEqual(DATA_FILES);
    disk!.fill(SLACK_BYTES);

    const v5 = await client(gw, 5);
    const acked: string[] = [];
    let refused = 0;
    for (let n = 0; refused === 0; n++) {
      expect(n, "the disk never refused").toBeLessThan(MAX_PUBLISHES);
      const outcome = await publish(v5, "r/s", payload("r", n));
      if (outcome === "acked") acked.push(`r-${n}`);
      else if (outcome === "refused") refused++;
      else throw new Error("MQTT 5 publisher disconnected instead of PUBACK 0x97");
    }
    // Full stays full: every further message is refused too.
    for (let i = 0; i < MORE_REFUSED; i++) {
      expect(await publish(v5, "r/s", payload("x", i))).toBe("refused");
      refused++;
    }
    // MQTT 3.1.1 has no negative PUBACK: the connection is closed, the client keeps it.
    const v4 = await client(gw, 4);
    expect(await publish(v4, "r/s", payload("x4", 0))).toBe("closed");
    refused++;

    expect(await metric(gw, DROPPED, { class: "default", reason: "disk_full" })).toBe(refused);
    expect(await metric(gw, "leafgate_outbox_commit_failures_total", { code: "SQLITE_FULL" })).toBe(
      refused,
    );
    expect(
      await metric(gw, "leafgate_mqtt_messages_dropped_total", { reason: "buffer-full" }),
    ).toBe(refused);
    expect(await metric(gw, "leafgate_buffer_disk_full")).toBe(1);
    // Refusals are logged as drops are (at most every 10 s per class), not one error each.
    expect(gw.proc.stdout()).not.toContain("outbox commit failed");
    const full = await status(gw);
    expect(full.healthy).toBe(true);
    expect(full.outbox.pending).toBe(acked.length);
    // /status and /readyz say so (docs/status.md).
    expect(full.disk).toMatchObject({ state: "full", resumeAtFreeBytes: 20 * 1024 * 1024 });
    const readyz = (await (await fetch(`http://127.0.0.1:${gw.httpPort}/readyz`)).json()) as {
      reasons: string[];
    };
    expect(readyz.reasons).toContain(
      "the disk is full: the buffer is held at its current size (drop_oldest classes evict, reject classes refuse) until 20 MiB are free in the data dir",
    );
    // The reserve was given up to make the full disk workable; no -shm ever appears.
    expect(readdirSync(dataDir).sort()).toEqual(["leafgate.db", "leafgate.db-wal"]);

    // Space returns: the next publishes are acknowledged, no restart.
    disk!.unfill();
    for (let i = 0; i < AFTER_SPACE; i++) {
      expect(await publish(v5, "r/s", payload("after", i))).toBe("acked");
      acked.push(`after-${i}`);
    }
    expect(await metric(gw, "leafgate_buffer_disk_full")).toBe(0);
    expect((await status(gw)).disk.state).toBe("ok");
    expect(readdirSync(dataDir).sort()).toEqual(DATA_FILES);
    expect(await metric(gw, DROPPED, { class: "default", reason: "disk_full" })).toBe(refused);

    expect(await drained(gw, acked.length)).toEqual(acked);
    await stopAndCheck(gw, dataDir);
  });

  it("drop_oldest: every telemetry message is acked and the oldest give way; alarms get room from telemetry", async () => {
    const { gw, dataDir } = await setUp({
      on_full: "drop_oldest",
      classes: [{ name: "alarms", subjects: ["a.>"], on_full: "reject" }],
    });
    disk!.fill(SLACK_BYTES);
    const capped = waitForLine(gw.proc, (l) => l.includes("the disk is full"));
    let isFull = false;
    void capped.then(
      () => {
        isFull = true;
      },
      () => {},
    );

    // Telemetry until the disk refused, then several times more than fits: all acked.
    const telemetry = await client(gw, 5);
    const acked: string[] = [];
    let n = 0;
    for (; !isFull; n++) {
      expect(n, "the disk never refused").toBeLessThan(MAX_PUBLISHES);
      expect(await publish(telemetry, "t/s", payload("t", n))).toBe("acked");
      acked.push(`t-${n}`);
    }
    const capLine = JSON.parse(await capped) as { databaseBytes: number };
    for (let i = 0; i < TELEMETRY_AFTER_FULL; i++, n++) {
      expect(await publish(telemetry, "t/s", payload("t", n))).toBe("acked");
      acked.push(`t-${n}`);
    }
    const evicted = await metric(gw, DROPPED, { class: "default", reason: "evicted" });
    let kept = await classStatus(gw, "default");
    expect(kept.messages + evicted).toBe(acked.length);
    // The buffer stays within the database's size when the disk filled: the oldest went.
    expect(kept.bytes).toBeLessThanOrEqual(capLine.databaseBytes);
    expect(await metric(gw, DROPPED, { class: "default", reason: "disk_full" })).toBe(0);
    // An odd number of telemetry rows: each alarm that needs room evicts two (twice its
    // size), so the last telemetry row is left alone, and must still give way — it holds
    // what an alarm needs. One more telemetry message flips the parity (it adds a row, or
    // evicts two to add one).
    if (kept.messages % 2 === 0) {
      expect(await publish(telemetry, "t/s", payload("t", n))).toBe("acked");
      acked.push(`t-${n}`);
      n++;
      kept = await classStatus(gw, "default");
    }
    expect(kept.messages % 2).toBe(1);

    // Alarms take telemetry's room, and are refused only once telemetry holds less than
    // an alarm needs (evicting it would not make room).
    const alarms = await client(gw, 5);
    const alarmsAcked: string[] = [];
    let alarmRefused = false;
    for (let i = 0; !alarmRefused; i++) {
      expect(i, "alarms were never refused").toBeLessThan(MAX_PUBLISHES);
      const outcome = await publish(alarms, "a/s", payload("a", i));
      if (outcome === "acked") alarmsAcked.push(`a-${i}`);
      else if (outcome === "refused") alarmRefused = true;
      else throw new Error("MQTT 5 alarm publisher disconnected instead of PUBACK 0x97");
    }
    const left = await classStatus(gw, "default");
    expect(left.bytes).toBeLessThan(PAYLOAD_BYTES + "a.s".length);
    expect(await metric(gw, DROPPED, { class: "alarms", reason: "disk_full" })).toBe(1);
    expect(await metric(gw, DROPPED, { class: "alarms", reason: "evicted" })).toBe(0);
    const evictedTotal = await metric(gw, DROPPED, { class: "default", reason: "evicted" });
    expect(left.messages + evictedTotal).toBe(acked.length);
    expect((await status(gw)).healthy).toBe(true);

    disk!.unfill();
    expect(await publish(alarms, "a/s", payload("a", 9999))).toBe("acked");
    alarmsAcked.push("a-9999");

    // Exactly the newest telemetry survived, in order, and every acked alarm.
    const survivors = acked.slice(evictedTotal);
    const stream = await drained(gw, survivors.length + alarmsAcked.length);
    expect(stream.filter((s) => s.startsWith("t-"))).toEqual(survivors);
    expect(stream.filter((s) => s.startsWith("a-"))).toEqual(alarmsAcked);
    await stopAndCheck(gw, dataDir);
  });

  /** Publishes `r-0`, `r-1`… until the first PUBACK 0x97; returns the acked labels. */
  async function publishUntilRefused(c: MqttClient, tag: string): Promise<string[]> {
    const acked: string[] = [];
    for (let n = 0; ; n++) {
      expect(n, "the disk never refused").toBeLessThan(MAX_PUBLISHES);
      const outcome = await publish(c, "r/s", payload(tag, n));
      if (outcome === "refused") return acked;
      expect(outcome).toBe("acked");
      acked.push(`${tag}-${n}`);
    }
  }

  it("kill -9 while the disk is full, restart with no byte free: starts, loses nothing acked, drains, accepts again", async () => {
    const { gw, dataDir, start } = await setUp({ on_full: "reject" });
    disk!.fill(SLACK_BYTES);
    const acked = await publishUntilRefused(await client(gw, 5), "r");
    gw.proc.child.kill("SIGKILL");
    await gw.proc.exited;
    // Not even the space of the released reserve is left.
    expect(disk!.fill(0)).toBe(0);

    const again = await start();
    const restarted = await status(again);
    expect(restarted.healthy).toBe(true);
    expect(restarted.outbox.pending).toBe(acked.length);
    expect(await metric(again, "leafgate_buffer_disk_full")).toBe(1);
    const v5 = await client(again, 5);
    for (let i = 0; i < MORE_REFUSED; i++) {
      expect(await publish(v5, "r/s", payload("x", i))).toBe("refused");
    }
    expect(await metric(again, DROPPED, { class: "default", reason: "disk_full" })).toBe(
      MORE_REFUSED,
    );

    // The hub comes back while the disk is still full: forwarded rows are deleted (the
    // WAL is rewritten in place), and their pages take new messages.
    const nc = await hubBack(again);
    expect(await streamed(nc, acked.length)).toEqual(acked);
    for (let i = 0; i < AFTER_SPACE; i++) {
      expect(await publish(v5, "r/s", payload("after", i))).toBe("acked");
      acked.push(`after-${i}`);
    }
    expect(disk!.freeBytes()).toBe(0);
    expect(await streamed(nc, acked.length)).toEqual(acked);
    await stopAndCheck(again, dataDir);
  });

  it("no reserve, no byte free, a WAL the database must grow to take: starts, refuses everything, forwards, deletes once space returns", async () => {
    // A class no message uses, whose max_age makes upkeep (expiry, WAL checkpoint) run
    // every second.
    const { gw, dataDir, start } = await setUp({
      on_full: "drop_oldest",
      classes: [{ name: "upkeep", subjects: ["upkeep.>"], on_full: "drop_oldest", max_age: "10s" }],
    });
    // Acked rows that live only in the WAL (SQLite checkpoints at 1000 pages).
    const acked: string[] = [];
    const first = await client(gw, 5);
    for (let n = 0; n < WAL_ONLY_ROWS; n++) {
      expect(await publish(first, "r/s", payload("r", n))).toBe("acked");
      acked.push(`r-${n}`);
    }
    gw.proc.child.kill("SIGKILL");
    await gw.proc.exited;
    // An operator took the reserve's space back, and something else filled the disk.
    rmSync(join(dataDir, "leafgate.reserve"));
    expect(disk!.fill(0)).toBe(0);

    const again = await start();
    // The checkpoints at start and in upkeep cannot grow the database file: SQLITE_FULL,
    // logged, not fatal.
    await waitForLine(again.proc, (l) => l.includes("WAL checkpoint on a full disk failed"));
    await waitForLine(again.proc, (l) => l.includes('"msg":"WAL checkpoint failed"'));
    expect((await status(again)).outbox.pending).toBe(acked.length);
    // Even a drop_oldest message is refused: no PUBACK, the connection is closed. Evicting
    // cannot even be written: a DELETE is a WAL append too.
    expect(await publish(await client(again, 5), "r/s", payload("x", 0))).toBe("closed");
    expect(await metric(again, DROPPED, { class: "default", reason: "disk_full" })).toBe(1);
    expect(await metric(again, DROPPED, { class: "default", reason: "evicted" })).toBe(0);
    expect((await status(again)).healthy).toBe(true);

    // The hub returns while nothing can be written: it gets every row, once, but the
    // gateway cannot delete them yet (a DELETE is a WAL append).
    await hub!.restart();
    const nc = await connectClient(hub!.url);
    expect(await streamed(nc, acked.length)).toEqual(acked);
    await waitForLine(again.proc, (l) => l.includes("cannot delete forwarded rows"));
    expect((await status(again)).outbox.pending).toBe(acked.length);

    // Space returns: upkeep lifts the cap and deletes the forwarded rows; ingest resumes.
    disk!.unfill();
    await waitFor(async () => (await status(again)).outbox.pending === 0);
    expect(await metric(again, "leafgate_buffer_disk_full")).toBe(0);
    const v5 = await client(again, 5);
    for (let i = 0; i < AFTER_SPACE; i++) {
      expect(await publish(v5, "r/s", payload("after", i))).toBe("acked");
      acked.push(`after-${i}`);
    }
    expect(await streamed(nc, acked.length)).toEqual(acked);
    await stopAndCheck(again, dataDir);
  });

  it("the disk fills with no reserve to release: a large message is refused, no row is evicted in vain", async () => {
    const { gw, dataDir } = await setUp({ on_full: "drop_oldest" });
    const c = await client(gw, 5);
    const acked: string[] = [];
    for (let n = 0; n < WAL_ONLY_ROWS; n++) {
      expect(await publish(c, "r/s", payload("r", n))).toBe("acked");
      acked.push(`r-${n}`);
    }
    // An operator took the reserve's space back, and something else took all but a little.
    rmSync(join(dataDir, "leafgate.reserve"));
    disk!.fill(LARGE_SLACK_BYTES);
    // The message's WAL append stops at ENOSPC, having taken what was left; the checkpoint
    // cannot grow the database file, so the WAL cannot be reused. Evicting rows could still
    // be written into what the failed append took, but the message would not fit after it.
    const large = Buffer.concat([Buffer.from("large-0:"), Buffer.alloc(LARGE_BYTES, 0x62)]);
    expect(await publish(c, "r/s", large)).toBe("closed");
    expect(await metric(gw, DROPPED, { class: "default", reason: "disk_full" })).toBe(1);
    expect(await metric(gw, DROPPED, { class: "default", reason: "evicted" })).toBe(0);
    expect(await metric(gw, "leafgate_buffer_disk_full")).toBe(1);
    const full = await status(gw);
    expect(full.healthy).toBe(true);
    expect(full.outbox.pending).toBe(acked.length);

    disk!.unfill();
    const v5 = await client(gw, 5);
    for (let i = 0; i < AFTER_SPACE; i++) {
      expect(await publish(v5, "r/s", payload("after", i))).toBe("acked");
      acked.push(`after-${i}`);
    }
    expect(await drained(gw, acked.length)).toEqual(acked);
    await stopAndCheck(gw, dataDir);
  });

  it("the hub returns while the disk is full: forwarded rows are deleted all the same, and their room takes new messages", async () => {
    const { gw, dataDir } = await setUp({ on_full: "reject" });
    const c = await client(gw, 5);
    const acked: string[] = [];
    for (let n = 0; n < WAL_ONLY_ROWS; n++) {
      expect(await publish(c, "r/s", payload("r", n))).toBe("acked");
      acked.push(`r-${n}`);
    }
    // Something else takes every byte; the gateway's first write after that is a delete.
    expect(disk!.fill(0)).toBe(0);
    const nc = await hubBack(gw);
    expect(await streamed(nc, acked.length)).toEqual(acked);
    expect(await metric(gw, "leafgate_buffer_disk_full")).toBe(1);
    for (let i = 0; i < AFTER_SPACE; i++) {
      expect(await publish(c, "r/s", payload("after", i))).toBe("acked");
      acked.push(`after-${i}`);
    }
    expect(await streamed(nc, acked.length)).toEqual(acked);
    expect(await metric(gw, DROPPED, { class: "default", reason: "disk_full" })).toBe(0);
    await stopAndCheck(gw, dataDir);
  });
});
