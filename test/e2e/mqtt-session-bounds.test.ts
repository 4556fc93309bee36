// Persistent sessions that cannot amplify disk (issue 10, finding 5). Thousands of random
// client ids with clean session off, subscribed to `#` and gone, and one publisher: the
// database grows by the payload once, not once per session. With `buffer.max_file_size`
// set, an attacker's sessions fill their own quota and a real device's QoS 1 ingest goes
// on. A restart with many stored sessions loads their metadata and subscriptions only:
// its peak RSS is measured beside an empty gateway's. Every refusal is counted exactly.
import { statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { IPublishPacket } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/core/index.js";
import { Gateway } from "../../src/gateway.js";
import { fileCap } from "../../src/store/database.js";
import {
  closeDatabase,
  DATABASE_FILE,
  type NewStoredMessage,
  openDatabase,
  SessionStore,
} from "../../src/store/index.js";
import {
  startGateway,
  startGatewayProcess,
  type TestGateway,
  writeConfig,
} from "../helpers/gateway.js";
import { stopAll, stopProcess } from "../helpers/procs.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { chaosSeed, rng } from "../helpers/seed.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

let gw: TestGateway | undefined;
const restarted: Gateway[] = [];
const temps: TempDir[] = [];

afterEach(async () => {
  await closeRawClients();
  for (const g of restarted.splice(0)) await g.stop();
  await gw?.dispose();
  gw = undefined;
  await stopAll();
  await Promise.all(temps.splice(0).map((t) => t.cleanup()));
});

const DROPPED = "leafgate_mqtt_messages_dropped_total";
/**
 * The file cap of the starvation test: the database gets a little under half of it (the
 * rest is its worst-case WAL), and the sessions a quarter of that.
 */
const MAX_FILE_BYTES = 4 * 1024 * 1024;
/** SQLite's default page size, which the gateway keeps. */
const SQLITE_PAGE_BYTES = 4096;
const text = (p: IPublishPacket) => Buffer.from(p.payload as Buffer).toString();

/** Client ids as an attacker makes them: random, never used twice. */
function randomIds(n: number, prefix: string): string[] {
  const seed = chaosSeed();
  const next = rng(seed);
  const ids = new Set<string>();
  while (ids.size < n) ids.add(`${prefix}-${Math.floor(next() * 2 ** 48).toString(36)}`);
  return [...ids];
}

/**
 * Persistent 3.1.1 sessions (clean session 0) subscribed to `filter` at QoS 1, their
 * clients gone after a normal DISCONNECT; `parallel` connections at a time.
 */
async function offlineSessions(
  port: number,
  ids: readonly string[],
  filter = "#",
  parallel = 25,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const clientId = ids[next++]!;
      const { client, connack } = await RawMqtt.connect(
        port,
        { clientId, protocolVersion: 4, clean: false },
        4,
      );
      expect(connack.returnCode).toBe(0);
      const suback = await client.subscribe(1, [{ topic: filter, qos: 1 }]);
      expect(suback.granted).toEqual([1]);
      client.send({ cmd: "disconnect" });
      await client.closed;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** Bytes of the database on disk once closed (the WAL checkpointed into it). */
function databaseBytes(dataDir: string): number {
  const file = join(dataDir, DATABASE_FILE);
  let wal = 0;
  try {
    wal = statSync(`${file}-wal`).size;
  } catch {}
  return statSync(file).size + wal;
}

async function restart(config: Gateway["config"]): Promise<{ gateway: Gateway; port: number }> {
  const gateway = new Gateway({ config, log: silentLogger });
  restarted.push(gateway);
  await gateway.start();
  return { gateway, port: gateway.addresses().mqtt[0]!.port };
}

describe("persistent sessions do not amplify disk", () => {
  it("2,000 random offline sessions on `#` and one 80 KB publish: the database grows by the payload once", async () => {
    const SESSIONS = 2000;
    const PAYLOAD = Buffer.alloc(80 * 1024, 0x5a);
    gw = await startGateway();
    const ids = randomIds(SESSIONS, "r");
    await offlineSessions(gw.mqttPort, ids);
    const config = gw.gateway.config;
    await gw.stop();
    const before = databaseBytes(config.gateway.data_dir);

    let { gateway, port } = await restart(config);
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 5 });
    pub.client.send({
      cmd: "publish",
      topic: "big/one",
      payload: PAYLOAD,
      qos: 1,
      messageId: 1,
      retain: false,
      dup: false,
    });
    const ack = await pub.client.next("puback");
    expect([ack.messageId, ack.reasonCode]).toEqual([1, 0]);
    expect(gateway.metrics.value("leafgate_mqtt_session_store_messages")).toBe(SESSIONS);
    await pub.client.end();
    await gateway.stop();
    const growth = databaseBytes(config.gateway.data_dir) - before;
    // The payload once in the session store, once in the outbox (the hub is down), and a
    // row per session that names it: a few dozen bytes each, not 80 KB each.
    const budget = 2 * PAYLOAD.length + SESSIONS * 160;
    expect(growth, `grew ${growth} bytes`).toBeLessThan(budget);

    // And every session still has it, whole.
    ({ gateway, port } = await restart(config));
    for (const clientId of [ids[0]!, ids[SESSIONS - 1]!]) {
      const s = await RawMqtt.connect(port, { clientId, protocolVersion: 4, clean: false }, 4);
      expect(s.connack.sessionPresent).toBe(true);
      const p = await s.client.next("publish");
      expect([p.topic, p.qos, Buffer.compare(p.payload as Buffer, PAYLOAD)]).toEqual([
        "big/one",
        1,
        0,
      ]);
      s.client.send({ cmd: "puback", messageId: p.messageId! });
      await s.client.end();
    }
    await waitFor(
      () => gateway.metrics.value("leafgate_mqtt_session_store_messages") === SESSIONS - 2,
    );
  }, 120_000);

  it("buffer.max_file_size: an attacker's sessions fill their quota; a device's QoS 1 ingest carries on", async () => {
    const ATTACKERS = 20;
    const FLOOD = 40;
    const DEVICE = 50;
    gw = await startGateway({ buffer: { max_file_size: MAX_FILE_BYTES } });
    const { gateway, mqttPort: port } = gw;
    await offlineSessions(port, randomIds(ATTACKERS, "a"));

    // The attacker floods its own sessions: 16 KiB a message, 20 copies of each today.
    const attacker = await RawMqtt.connect(port, { clientId: "attacker", protocolVersion: 5 });
    const flood = Buffer.alloc(16 * 1024, 0x41);
    for (let i = 1; i <= FLOOD; i++) {
      attacker.client.send({
        cmd: "publish",
        topic: "flood/x",
        payload: flood,
        qos: 1,
        messageId: i,
        retain: false,
        dup: false,
      });
    }
    const floodAcks = [];
    for (let i = 1; i <= FLOOD; i++) floodAcks.push(await attacker.client.next("puback"));
    expect(floodAcks.map((a) => a.reasonCode)).toEqual(Array(FLOOD).fill(0));

    // A real device, publishing QoS 1 as it always does: every message acknowledged.
    const device = await RawMqtt.connect(port, { clientId: "device-1", protocolVersion: 5 });
    const acks: number[] = [];
    for (let i = 1; i <= DEVICE; i++) {
      device.client.send({
        cmd: "publish",
        topic: "sensors/device-1/t",
        payload: Buffer.from(`{"t":${i}}`.padEnd(1024, " ")),
        qos: 1,
        messageId: i,
        retain: false,
        dup: false,
      });
      acks.push((await device.client.next("puback")).reasonCode ?? 0);
    }
    expect(acks).toEqual(Array(DEVICE).fill(0));
    expect(device.client.isClosed).toBe(false);
    expect((gateway.status().outbox as { pending: number }).pending).toBe(FLOOD + DEVICE);
    expect(
      gateway.metrics.value("leafgate_buffer_dropped_total", {
        class: "default",
        reason: "evicted",
      }),
    ).toBe(0);

    // The sessions took what their quota held; every other copy is counted.
    // A quarter of what max_file_size leaves the database file beside its WAL.
    const cap = fileCap(MAX_FILE_BYTES, SQLITE_PAGE_BYTES);
    const quota = Math.floor((cap.databasePages * SQLITE_PAGE_BYTES) / 4);
    const storeBytes = gateway.metrics.value("leafgate_mqtt_session_store_bytes");
    expect(storeBytes).toBeLessThanOrEqual(quota);
    const stored = gateway.metrics.value("leafgate_mqtt_session_store_messages");
    const refused = gateway.metrics.value(DROPPED, { reason: "session-store-full" });
    expect(refused).toBeGreaterThan(0);
    expect(stored + refused).toBe(ATTACKERS * (FLOOD + DEVICE));
    expect(gateway.metrics.value(DROPPED, { reason: "queue-full" })).toBe(0);
    // The quota, not the file cap, stopped them: no session write failed.
    expect(gateway.metrics.value(DROPPED, { reason: "session-store-failed" })).toBe(0);
  }, 60_000);
});

describe("restart with many sessions", () => {
  /** Peak RSS (VmHWM) of a process, in bytes. */
  async function peakRss(pid: number): Promise<number> {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)![1]);
    return kb * 1024;
  }

  async function startChild(file: string): Promise<{ ms: number; peak: number }> {
    const started = Date.now();
    const child = await startGatewayProcess(file);
    const ms = Date.now() - started;
    const peak = await peakRss(child.proc.pid);
    await stopProcess(child.proc);
    return { ms, peak };
  }

  it("loads sessions and subscriptions only: 2,000 sessions with 100,000 queued messages start in small RSS", async () => {
    const SESSIONS = 2000;
    const QUEUED = 50;
    const empty = writeConfig();
    const full = writeConfig();
    temps.push(empty.dir, full.dir);
    const db = openDatabase(join(full.dir.path, "data"), "normal");
    const store = new SessionStore(db);
    // The same 1 KiB messages for every session, as one publish reaches all of them.
    const messages: NewStoredMessage[] = Array.from({ length: QUEUED }, (_, i) => ({
      subject: `sensors.m${i}`,
      payload: Buffer.alloc(1024, 0x30 + (i % 10)),
      qos: 1,
      retain: false,
      receivedAtMs: Date.now(),
      expiresAtMs: undefined,
      publisher: "pub",
      properties: undefined,
      headers: undefined,
      subscriptionIds: undefined,
    }));
    for (let s = 0; s < SESSIONS; s++) {
      const clientId = `dev-${s}`;
      store.saveSession(clientId, 3600_000, Date.now());
      store.saveSubscription(clientId, {
        filter: "sensors/#",
        qos: 1,
        noLocal: false,
        retainAsPublished: false,
        retainHandling: 0,
        subscriptionId: undefined,
      });
    }
    for (const m of messages) {
      for (let s = 0; s < SESSIONS; s++) store.add(`dev-${s}`, m, m);
      store.flush();
    }
    closeDatabase(db);

    const base = await startChild(empty.file);
    const loaded = await startChild(full.file);
    console.log(
      `start: empty ${base.ms} ms, peak RSS ${(base.peak / 2 ** 20).toFixed(1)} MiB; ` +
        `${SESSIONS} sessions × ${QUEUED} queued: ${loaded.ms} ms, peak RSS ${(loaded.peak / 2 ** 20).toFixed(1)} MiB`,
    );
    // All queued rows in memory would be 100 MB of payload alone.
    expect(loaded.peak - base.peak).toBeLessThan(40 * 2 ** 20);
  }, 120_000);
});

describe("max_sessions", () => {
  it.each([4, 5] as const)(
    "level %i: a CONNECT making one session too many is refused (0x97 / return code 3), counted; resuming and clean sessions are not",
    async (version) => {
      gw = await startGateway({ mqtt: { max_sessions: 3 } });
      const { gateway, mqttPort: port } = gw;
      const connect = (clientId: string, persistent: boolean) =>
        RawMqtt.connect(
          port,
          version === 5
            ? {
                clientId,
                protocolVersion: 5,
                clean: !persistent,
                properties: { sessionExpiryInterval: persistent ? 300 : 0 },
              }
            : { clientId, protocolVersion: 4, clean: !persistent },
          version,
        );
      const code = (c: { connack: { returnCode?: number; reasonCode?: number } }) =>
        version === 5 ? c.connack.reasonCode : c.connack.returnCode;
      const refused = () =>
        gateway.metrics.value("leafgate_mqtt_sessions_refused_total", { reason: "max-sessions" });

      await offlineSessions(port, ["s1", "s2"], "x/#", 1);
      const s3 = await connect("s3", true);
      expect(code(s3)).toBe(0);
      expect(gateway.metrics.value("leafgate_mqtt_persistent_sessions")).toBe(3);

      const s4 = await connect("s4", true);
      expect(code(s4)).toBe(version === 5 ? 0x97 : 3);
      expect(s4.connack.sessionPresent).toBe(false);
      await s4.client.closedByServer();
      expect(refused()).toBe(1);

      // A clean session is no persistent session; resuming one is not one more.
      const clean = await connect("c1", false);
      expect(code(clean)).toBe(0);
      const again = await connect("s1", true);
      expect([code(again), again.connack.sessionPresent]).toEqual([0, true]);
      expect(refused()).toBe(1);

      // A session that ends frees its place.
      const end = await connect("s2", false);
      expect(code(end)).toBe(0);
      await waitFor(() => gateway.metrics.value("leafgate_mqtt_persistent_sessions") === 2);
      const s5 = await connect("s5", true);
      expect(code(s5)).toBe(0);
      expect(refused()).toBe(1);
      expect(gateway.metrics.value("leafgate_mqtt_persistent_sessions")).toBe(3);
    },
  );
});

describe("per-session bounds", () => {
  it("max_session_queued_bytes: an offline session queues up to its bytes; the rest is counted queue-full", async () => {
    // Each message: topic "qb/t" (4 bytes) + 996 bytes of payload = 1000 bytes.
    gw = await startGateway({ mqtt: { max_session_queued_bytes: 3500 } });
    const { gateway, mqttPort: port } = gw;
    await offlineSessions(port, ["qb"], "qb/#", 1);
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 5 });
    for (let i = 1; i <= 6; i++) {
      pub.client.send({
        cmd: "publish",
        topic: "qb/t",
        payload: Buffer.from(`m${i}`.padEnd(996, ".")),
        qos: 1,
        messageId: i,
        retain: false,
        dup: false,
      });
      expect((await pub.client.next("puback")).reasonCode).toBe(0);
    }
    expect(gateway.metrics.value(DROPPED, { reason: "queue-full" })).toBe(3);
    const s = await RawMqtt.connect(port, { clientId: "qb", protocolVersion: 4, clean: false }, 4);
    for (let i = 0; i < 3; i++) {
      const p = await s.client.next("publish");
      s.client.send({ cmd: "puback", messageId: p.messageId! });
    }
    pub.client.send({
      cmd: "publish",
      topic: "qb/t",
      payload: Buffer.from("marker"),
      qos: 1,
      messageId: 7,
      retain: false,
      dup: false,
    });
    await s.client.next("publish", (p) => text(p) === "marker");
    expect(s.client.all("publish").map((p) => text(p).slice(0, 2))).toEqual([
      "m1",
      "m2",
      "m3",
      "ma",
    ]);
    expect(gateway.metrics.value(DROPPED, { reason: "queue-full" })).toBe(3);
  });

  it.each([4, 5] as const)(
    "level %i: max_subscriptions_per_client: SUBACK 0x97 (3.1.1: 0x80) past it, counted; replacing one still works",
    async (version) => {
      gw = await startGateway({ mqtt: { max_subscriptions_per_client: 2 } });
      const { gateway, mqttPort: port } = gw;
      const refused = () =>
        gateway.metrics.value("leafgate_mqtt_subscriptions_refused_total", {
          reason: "max-subscriptions-per-client",
        });
      const c = await RawMqtt.connect(
        port,
        { clientId: `sub-${version}`, protocolVersion: version },
        version,
      );
      const first = await c.client.subscribe(1, [
        { topic: "a/#", qos: 1 },
        { topic: "b/#", qos: 1 },
        { topic: "c/#", qos: 1 },
      ]);
      const no = version === 5 ? 0x97 : 0x80;
      expect(first.granted).toEqual([1, 1, no]);
      expect(refused()).toBe(1);
      // Same filter again: replaced, not added [MQTT-3.8.4-3].
      const replace = await c.client.subscribe(2, [
        { topic: "a/#", qos: 2 },
        { topic: "d", qos: 0 },
      ]);
      expect(replace.granted).toEqual([2, no]);
      expect(refused()).toBe(2);
      c.client.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: ["b/#"] });
      await c.client.next("unsuback");
      expect((await c.client.subscribe(4, [{ topic: "d", qos: 0 }])).granted).toEqual([0]);
      expect(refused()).toBe(2);
    },
  );
});

describe("lazy loading", () => {
  it("after a restart a session gets its in-flight messages again (DUP, same ids), then 300 queued in order, read in windows", async () => {
    gw = await startGateway({ mqtt: { max_inflight: 10 } });
    const port = gw.mqttPort;
    const s = await RawMqtt.connect(
      port,
      { clientId: "lazy", protocolVersion: 4, clean: false },
      4,
    );
    await s.client.subscribe(1, [{ topic: "lz/#", qos: 1 }]);
    // MQTT 3.1.1: a burst past the Receive Maximum an MQTT 5 client is held to would be cut.
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 4 }, 4);
    for (let i = 0; i < 302; i++) {
      pub.client.send({
        cmd: "publish",
        topic: "lz/t",
        payload: Buffer.from(`m${i}`),
        qos: 1,
        messageId: (i % 60000) + 1,
        retain: false,
        dup: false,
      });
    }
    for (let i = 0; i < 302; i++) await pub.client.next("puback");
    // The window of 10 went out; 2 are acknowledged, 8 stay in flight.
    const sent = [];
    for (let i = 0; i < 10; i++) sent.push(await s.client.next("publish"));
    for (const p of sent.slice(0, 2)) s.client.send({ cmd: "puback", messageId: p.messageId! });
    await waitFor(() => s.client.all("publish").length === 12);
    const ids = s.client.all("publish").map((p) => [text(p), p.messageId]);
    s.client.socket.destroy();
    await s.client.closed;
    const config = gw.gateway.config;
    await gw.stop();

    const { port: port2 } = await restart(config);
    const again = await RawMqtt.connect(
      port2,
      { clientId: "lazy", protocolVersion: 4, clean: false },
      4,
    );
    expect(again.connack.sessionPresent).toBe(true);
    const got: string[] = [];
    const resent: (string | number | undefined)[][] = [];
    while (got.length < 300) {
      const p = await again.client.next("publish");
      if (p.dup) resent.push([text(p), p.messageId]);
      got.push(text(p));
      again.client.send({ cmd: "puback", messageId: p.messageId! });
    }
    expect(resent).toEqual(ids.slice(2, 12));
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => `m${i + 2}`));
  }, 60_000);
});

describe("retained bounds", () => {
  it("past max_retained_messages a new topic is not retained (still delivered), counted; replacing and clearing always work", async () => {
    gw = await startGateway({ mqtt: { max_retained_messages: 2 } });
    const { gateway, mqttPort: port } = gw;
    const refused = (reason: string) =>
      gateway.metrics.value("leafgate_mqtt_retained_refused_total", { reason });
    const live = await RawMqtt.connect(port, { clientId: "live", protocolVersion: 5 });
    await live.client.subscribe(1, [{ topic: "st/#", qos: 1 }]);
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 5 });
    let id = 1;
    const retain = async (topic: string, payload: string) => {
      pub.client.send({
        cmd: "publish",
        topic,
        payload: Buffer.from(payload),
        qos: 1,
        messageId: id++,
        retain: true,
        dup: false,
      });
      expect((await pub.client.next("puback")).reasonCode).toBe(0);
    };
    await retain("st/a", "a1");
    await retain("st/b", "b1");
    await retain("st/c", "c1"); // refused as retained
    expect(refused("max-retained-messages")).toBe(1);
    await retain("st/a", "a2"); // replacing works
    await retain("st/b", ""); // clearing works
    await retain("st/c", "c2"); // room again
    expect(refused("max-retained-messages")).toBe(1);
    await retain("st/d", "d1"); // refused
    expect(refused("max-retained-messages")).toBe(2);
    // Every one of them reached the live subscriber.
    await waitFor(() => live.client.all("publish").length === 7);
    expect(live.client.all("publish").map(text)).toEqual(["a1", "b1", "c1", "a2", "", "c2", "d1"]);
    expect(gateway.metrics.value("leafgate_mqtt_retained_messages")).toBe(2);

    const late = await RawMqtt.connect(port, { clientId: "late", protocolVersion: 5 });
    await late.client.subscribe(1, [{ topic: "st/#", qos: 0 }]);
    await waitFor(() => late.client.all("publish").length === 2);
    expect(
      late.client
        .all("publish")
        .map((p) => [p.topic, text(p)])
        .sort(),
    ).toEqual([
      ["st/a", "a2"],
      ["st/c", "c2"],
    ]);
  });

  it("past max_retained_bytes likewise, by bytes (topic + payload)", async () => {
    gw = await startGateway({ mqtt: { max_retained_bytes: 250 } });
    const { gateway, mqttPort: port } = gw;
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 5 });
    let id = 1;
    const retain = async (topic: string, bytes: number) => {
      pub.client.send({
        cmd: "publish",
        topic,
        payload: Buffer.alloc(bytes, 0x62),
        qos: 1,
        messageId: id++,
        retain: true,
        dup: false,
      });
      await pub.client.next("puback");
    };
    await retain("r/a", 97); // 100
    await retain("r/b", 97); // 200
    await retain("r/c", 97); // 300: refused
    expect(
      gateway.metrics.value("leafgate_mqtt_retained_refused_total", {
        reason: "max-retained-bytes",
      }),
    ).toBe(1);
    await retain("r/b", 47); // replaced: 150
    await retain("r/c", 97); // 250: fits exactly
    expect(gateway.metrics.value("leafgate_mqtt_retained_bytes")).toBe(250);
    expect(gateway.metrics.value("leafgate_mqtt_retained_messages")).toBe(3);
    expect(
      gateway.metrics.value("leafgate_mqtt_retained_refused_total", {
        reason: "max-retained-bytes",
      }),
    ).toBe(1);
  });
});

describe("lazy loading and a session that stops being stored", () => {
  it("v5: resuming with Session Expiry 0 after a restart still delivers every queued message, in order", async () => {
    gw = await startGateway();
    const port = gw.mqttPort;
    const s = await RawMqtt.connect(port, {
      clientId: "to-zero",
      protocolVersion: 5,
      clean: true,
      properties: { sessionExpiryInterval: 300 },
    });
    await s.client.subscribe(1, [{ topic: "tz/#", qos: 1 }]);
    s.client.send({ cmd: "disconnect", reasonCode: 0 });
    await s.client.closed;
    // MQTT 3.1.1: a burst past the Receive Maximum an MQTT 5 client is held to would be cut.
    const pub = await RawMqtt.connect(port, { clientId: "pub", protocolVersion: 4 }, 4);
    for (let i = 0; i < 150; i++) {
      pub.client.send({
        cmd: "publish",
        topic: "tz/t",
        payload: Buffer.from(`m${i}`),
        qos: 1,
        messageId: i + 1,
        retain: false,
        dup: false,
      });
    }
    for (let i = 0; i < 150; i++) await pub.client.next("puback");
    const config = gw.gateway.config;
    await gw.stop();

    const { gateway, port: port2 } = await restart(config);
    const again = await RawMqtt.connect(port2, {
      clientId: "to-zero",
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 0 },
    });
    expect(again.connack.sessionPresent).toBe(true);
    const got: string[] = [];
    while (got.length < 150) {
      const p = await again.client.next("publish");
      got.push(text(p));
      again.client.send({ cmd: "puback", messageId: p.messageId! });
    }
    expect(got).toEqual(Array.from({ length: 150 }, (_, i) => `m${i}`));
    // Not stored any more: its rows and its payloads are gone.
    expect(gateway.metrics.value("leafgate_mqtt_session_store_messages")).toBe(0);
    expect(gateway.metrics.value("leafgate_mqtt_session_store_bytes")).toBe(0);
    expect(gateway.metrics.value("leafgate_mqtt_persistent_sessions")).toBe(0);
  }, 60_000);
});
