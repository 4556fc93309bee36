// The soak: the gateway as users run it (the bundle, a child process) under steady real
// traffic and every fault at once, for LEAFGATE_SOAK_SECONDS (default 60; `npm run soak`:
// 30 minutes).
//
// What runs:
//  - 100 mqtt.js clients (MQTT 3.1.1), half publishing QoS 1 and half QoS 0, each at
//    PUBLISH_RATE_PER_S, from 20 loopback source addresses; payload `c<i>-<n>`;
//  - two serial devices played by the firmware simulators on socat pty pairs (a PMS5003,
//    binary, and an env-sensor, JSON lines) at SERIAL_RATE_PER_S frames each;
//  - the hub link through a fault proxy that is cut or blackholed every few seconds;
//  - the hub (nats-server, JetStream) restarted once;
//  - a fuzzer opening a connection every FUZZ_INTERVAL_MS with random bytes or random
//    valid-looking packets, and a client that never reads (PINGREQ and QoS 1 floods,
//    subscribed to everything);
//  - the gateway killed (-9) and restarted twice, on the same data dir.
// Fault times come from a seed, printed (LEAFGATE_CHAOS_SEED=<seed> replays them).
//
// What is asserted, once the traffic stopped, the link is restored and the outbox is empty:
//  1. Per row (README, "Exactly once into a JetStream stream"): every outbox row the
//     gateway ever committed (ids 1..lastId, never reused) is in the stream exactly once.
//  2. Per payload (README, "Acknowledged means stored"; MQTT QoS 1 is at least once): every
//     QoS 1 payload a client had a PUBACK for is in the stream at least once, and no payload
//     more often than it was sent (a second copy only where mqtt.js resent it after a
//     restart); QoS 0 payloads at most once; each PMS5003 frame at most once.
//  3. Every gateway process lived until we killed it, and each one took PUBACKs and serial
//     frames.
//  4. RSS (from /status, every second) after warm-up never grew more than 20% above its
//     value at the end of warm-up, in every gateway process.
//  5. Event-loop lag, measured from outside as PINGREQ round trips (test/helpers/lag-probe;
//     the gateway has no lag metric), p99 after warm-up under 50 ms plus the machine's own
//     scheduling noise (the p99 lateness of the probe thread's timer; ~1 ms on an idle box).
// A summary is printed: sent / acked / in the hub / duplicates, the RSS curve, lag p50/p99.

import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { envSensor, pms5003, Simulator } from "../../firmware-sim/index.js";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.js";
import { createEdgeStream } from "../helpers/fixtures.js";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import { gatewayStatus } from "../helpers/gateway-http.js";
import {
  type HostileClient,
  startListenerFuzzer,
  startNeverReader,
} from "../helpers/hostile-clients.js";
import { type LagReport, percentile, startLagProbe } from "../helpers/lag-probe.js";
import {
  closeClients,
  connectClient,
  type NatsServer,
  startNatsServer,
} from "../helpers/nats-server.js";
import { stopAll, stopProcess } from "../helpers/procs.js";
import { chaosSeed, rng } from "../helpers/seed.js";
import { StreamCursor } from "../helpers/stream-cursor.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

const SOAK_S = Number(process.env.LEAFGATE_SOAK_SECONDS ?? 60);
const SOAK_MS = SOAK_S * 1000;
const GATEWAY_ID = "soak";
const STREAM = "EDGE";
const CLIENTS = 100;
/** Per client; 100 clients make 200 PUBLISH/s, half of them QoS 1. */
const PUBLISH_RATE_PER_S = 2;
/** A client publishes only while fewer than this many of its QoS 1 PUBLISHes await a PUBACK. */
const CLIENT_WINDOW = 20;
/** Source addresses the clients come from (5 clients each), as devices on a shop floor do. */
const CLIENT_ADDRESSES = 20;
const SERIAL_RATE_PER_S = 10;
const FUZZ_INTERVAL_MS = 100;
/**
 * The never-reading client's floods: 200 KB/s of PINGREQ. The kernel's socket buffers take
 * the first ~3 MB of answers (~13 s); a gateway that goes on reading and answering after
 * that holds them in memory (~35 bytes of RSS per unread PINGRESP, measured: +110 MB in
 * the next 16 s). One that stops reading a client that does not read stays flat.
 */
const NEVER_READER_PINGS_PER_S = 100_000;
const NEVER_READER_PUBLISHES_PER_S = 50;
/** Hub link faults: one every LINK_FAULT_EVERY_MS (jittered by half), lasting LINK_FAULT_MS. */
const LINK_FAULT_EVERY_MS = 6_000;
const LINK_FAULT_MS: [number, number] = [500, 3_000];
/** The gateway is killed at these fractions of the run (jittered), the hub restarted at the middle. */
const KILL_AT = [0.2, 0.4] as const;
const HUB_RESTART_AT = 0.6;
const JITTER = 0.05;
/**
 * A gateway process warms up this long (JIT, heap, SQLite cache, backlog) before its RSS
 * is the reference: measured here, RSS climbs for ~13 s under this traffic, then flattens.
 */
const WARMUP_MS = Math.min(60_000, Math.max(15_000, SOAK_MS / 4));
const RSS_TOLERANCE = 0.2;
/** The RSS curve is printed with one sample in this many (one every ~N seconds). */
const RSS_CURVE_EVERY = Math.max(1, Math.round(SOAK_S / 30));
const LAG_P99_LIMIT_MS = 50;
/** Once the traffic stopped: the outbox empties into a healthy hub within this. */
const DRAIN_TIMEOUT_MS = 60_000 + SOAK_MS / 10;
/** mqtt.js publishes still waiting for a PUBACK at the end get this long. */
const SETTLE_TIMEOUT_MS = 30_000;

const decoder = new TextDecoder();

interface Epoch {
  /** Gateway process number (0: the first). */
  readonly index: number;
  readonly gw: ChildGateway;
  readonly startedAtMs: number;
  /** PUBACKs received while it ran. */
  acks: number;
  /** Number of the first PMS5003 frame sent while it ran. */
  readonly pmsFrameFrom: number;
  rss: { atMs: number; mib: number }[];
  killed: boolean;
}

interface Publisher {
  readonly client: MqttClient;
  readonly qos: 0 | 1;
  next: number;
  inFlight: number;
}

describe("soak", () => {
  const dirs: TempDir[] = [];
  const sims: Simulator[] = [];
  const publishers: Publisher[] = [];
  const hostile: HostileClient[] = [];
  let proxy: FaultProxy | undefined;
  let hub: NatsServer | undefined;

  afterAll(async () => {
    for (const h of hostile) h.stop();
    for (const p of publishers) p.client.end(true);
    for (const s of sims) await s.close();
    await proxy?.close();
    await closeClients();
    await stopAll({ graceMs: 2_000 });
    for (const d of dirs) await d.cleanup();
  });

  it(
    `${SOAK_S} s of traffic, faults, fuzzing, a never-reading client and two kill -9s`,
    async ({ onTestFailed }) => {
      const seed = chaosSeed();
      const random = rng(seed);
      const jitter = (at: number): number => at + (random() * 2 - 1) * JITTER;
      const log: string[] = [];
      const say = (line: string): void => {
        log.push(`${((Date.now() - t0) / 1000).toFixed(1)}s ${line}`);
      };
      onTestFailed(() => {
        console.error(`soak: seed ${seed} (LEAFGATE_CHAOS_SEED=${seed})\n${log.join("\n")}`);
      });
      console.log(`soak: ${SOAK_S} s, seed ${seed} (replay: LEAFGATE_CHAOS_SEED=${seed})`);

      // -- the parts ----------------------------------------------------------------------
      const work = tempDir("soak");
      dirs.push(work);
      const pms = new Simulator(
        pms5003,
        join(work.path, "tty-pms"),
        join(work.path, "tty-pms-sim"),
      );
      const env = new Simulator(
        envSensor,
        join(work.path, "tty-env"),
        join(work.path, "tty-env-sim"),
      );
      sims.push(pms, env);
      await pms.open();
      await env.open();

      hub = await startNatsServer();
      const hubNc = await connectClient(hub.url);
      await createEdgeStream(hubNc);
      await hubNc.close();
      proxy = await startFaultProxy(hub.port);
      const { dir, file } = writeConfig({
        gateway: { id: GATEWAY_ID },
        upstream: {
          servers: [proxy.url],
          stream: STREAM,
          // A blackholed link is found dead after two silent pings: 2 x 1 s, not 2 x 10 s.
          ping_interval: "1s",
          reconnect_delay_max: "1s",
          ack_timeout: "5s",
        },
        serial: {
          ports: [
            { path: pms.devicePath, profile: "pms5003", device: "air-1" },
            { path: env.devicePath, profile: "env-sensor", device: "env-1" },
          ],
        },
      });
      dirs.push(dir);

      // -- the gateway, and following it across restarts ------------------------------------
      const epochs: Epoch[] = [];
      let port = 0;
      const t0 = Date.now();
      const lag = startLagProbe({ clientId: "lag-probe", localAddress: "127.0.4.1" });
      const neverReader = startNeverReader({
        pingsPerSecond: NEVER_READER_PINGS_PER_S,
        publishesPerSecond: NEVER_READER_PUBLISHES_PER_S,
        topic: "hostile/never-reads",
        subscribe: "#",
        localAddress: "127.0.3.1",
      });
      const fuzzer = startListenerFuzzer({
        seed,
        intervalMs: FUZZ_INTERVAL_MS,
        topicPrefix: "hostile/fuzz",
        localAddresses: Array.from({ length: 20 }, (_, i) => `127.0.2.${i + 1}`),
      });
      hostile.push(neverReader, fuzzer);

      const startEpoch = async (): Promise<Epoch> => {
        const gw = await startGatewayProcess(file);
        const { outbox } = await gatewayStatus(gw);
        const epoch: Epoch = {
          index: epochs.length,
          gw,
          startedAtMs: Date.now(),
          acks: 0,
          pmsFrameFrom: pms.sent.length,
          rss: [],
          killed: false,
        };
        epochs.push(epoch);
        port = gw.mqttPort;
        lag.setPort(port);
        neverReader.setPort(port);
        fuzzer.setPort(port);
        say(`gateway ${epoch.index} up (pid ${gw.proc.pid}, outbox last id ${outbox.lastId})`);
        return epoch;
      };
      let current = await startEpoch();

      // -- 100 publishers -------------------------------------------------------------------
      /** Per payload: PUBLISH packets sent (resends included), and whether a PUBACK came. */
      const sends = new Map<string, number>();
      const acked = new Set<string>();
      const qosOf = new Map<string, 0 | 1>();
      for (let i = 0; i < CLIENTS; i++) {
        const localAddress = `127.0.1.${1 + (i % CLIENT_ADDRESSES)}`;
        const client = new mqtt.MqttClient(
          () => netConnect({ host: "127.0.0.1", port, localAddress }),
          {
            clientId: `soak-c${i}`,
            protocolVersion: 4,
            clean: true,
            keepalive: 30,
            reconnectPeriod: 200,
            connectTimeout: 5_000,
          },
        );
        client.on("error", () => {});
        client.on("packetsend", (packet) => {
          if (packet.cmd !== "publish") return;
          const payload = String(packet.payload);
          sends.set(payload, (sends.get(payload) ?? 0) + 1);
        });
        publishers.push({ client, qos: i % 2 === 0 ? 1 : 0, next: 0, inFlight: 0 });
      }
      await waitFor(() => publishers.every((p) => p.client.connected), {
        timeoutMs: 30_000,
        message: "100 publishers connected",
      });
      say("publishers connected");

      let publishing = true;
      const publish = (p: Publisher, i: number): void => {
        if (!publishing || !p.client.connected || p.inFlight >= CLIENT_WINDOW) return;
        const payload = `c${i}-${p.next++}`;
        qosOf.set(payload, p.qos);
        if (p.qos === 0) {
          p.client.publish(`soak/c${i}/q0`, payload, { qos: 0 });
          return;
        }
        p.inFlight++;
        p.client.publish(`soak/c${i}/q1`, payload, { qos: 1 }, (err) => {
          p.inFlight--;
          if (err) return;
          acked.add(payload);
          current.acks++;
        });
      };
      // Each client on its own steady timer, spread over the period.
      const periodMs = 1000 / PUBLISH_RATE_PER_S;
      const publishTimers = publishers.map((p, i) =>
        setTimeout(
          () => {
            const t = setInterval(() => publish(p, i), periodMs);
            publishTimers[i] = t;
          },
          (i * periodMs) / CLIENTS,
        ),
      );

      // -- serial devices ---------------------------------------------------------------------
      const serialEveryMs = 1000 / SERIAL_RATE_PER_S;
      const serialTimer = setInterval(() => {
        pms.sendGood();
        env.sendGood();
      }, serialEveryMs);

      // -- RSS, every second ------------------------------------------------------------------
      const rssTimer = setInterval(() => {
        const e = current;
        if (e.gw.proc.exitInfo !== undefined) return;
        fetch(`http://127.0.0.1:${e.gw.httpPort}/status`)
          .then((r) => r.json() as Promise<{ memory: { rss: number } }>)
          .then((s) => e.rss.push({ atMs: Date.now() - e.startedAtMs, mib: s.memory.rss }))
          .catch(() => {}); // killed meanwhile
      }, 1000);

      // -- the fault schedule ---------------------------------------------------------------
      type Fault = {
        atMs: number;
        what: "kill" | "hub-restart" | "cut" | "blackhole";
        ms?: number;
      };
      const faults: Fault[] = [
        ...KILL_AT.map((f) => ({ atMs: jitter(f) * SOAK_MS, what: "kill" as const })),
        { atMs: jitter(HUB_RESTART_AT) * SOAK_MS, what: "hub-restart" },
      ];
      for (let at = LINK_FAULT_EVERY_MS / 2; at < SOAK_MS - LINK_FAULT_EVERY_MS / 2; ) {
        const ms = LINK_FAULT_MS[0] + random() * (LINK_FAULT_MS[1] - LINK_FAULT_MS[0]);
        faults.push({ atMs: at, what: random() < 0.7 ? "cut" : "blackhole", ms });
        at += LINK_FAULT_EVERY_MS * (0.5 + random());
      }
      faults.sort((a, b) => a.atMs - b.atMs);
      const link = proxy;
      const currentHub = hub;
      const linkFault = async (f: Fault): Promise<void> => {
        if (f.what === "cut") link.cut();
        else link.blackhole();
        say(`hub link ${f.what} for ${Math.round(f.ms!)} ms`);
        await delay(f.ms!);
        link.restore();
      };
      const linkFaults: Promise<void>[] = [];
      for (const f of faults) {
        const wait = t0 + f.atMs - Date.now();
        if (wait > 0) await delay(wait);
        if (f.what === "cut" || f.what === "blackhole") {
          linkFaults.push(linkFault(f));
        } else if (f.what === "hub-restart") {
          say("hub restarting");
          await currentHub.restart();
          say("hub back");
        } else {
          const victim = current;
          victim.killed = true;
          victim.gw.proc.child.kill("SIGKILL");
          const exit = await victim.gw.proc.exited;
          expect(exit.signal, victim.gw.proc.describe()).toBe("SIGKILL");
          say(`gateway ${victim.index} killed (-9)`);
          current = await startEpoch();
        }
      }
      const endWait = t0 + SOAK_MS - Date.now();
      if (endWait > 0) await delay(endWait);

      // -- stop the traffic, let everything settle ----------------------------------------------
      publishing = false;
      for (const t of publishTimers) clearInterval(t);
      clearInterval(serialTimer);
      for (const h of hostile) h.stop();
      await Promise.all(linkFaults);
      link.restore();
      const lagReport: LagReport = await lag.stop();
      clearInterval(rssTimer);
      say("traffic stopped");
      await waitFor(() => publishers.every((p) => p.inFlight === 0), {
        timeoutMs: SETTLE_TIMEOUT_MS,
        message: () =>
          `publishes still awaiting a PUBACK: ${publishers.reduce((n, p) => n + p.inFlight, 0)}`,
      });
      for (const p of publishers) p.client.end(true);
      const last = current;
      await waitFor(async () => (await gatewayStatus(last.gw)).outbox.pending === 0, {
        timeoutMs: DRAIN_TIMEOUT_MS,
        message: () => `outbox not drained\n${log.join("\n")}\n${last.gw.proc.describe()}`,
      });
      const { outbox } = await gatewayStatus(last.gw);
      const metrics = await (await fetch(`http://127.0.0.1:${last.gw.httpPort}/metrics`)).text();
      say("outbox empty");

      const nc = await connectClient(currentHub.url);
      const messages = await new StreamCursor(nc, STREAM).read({ timeoutMs: 120_000 });
      say(`read ${messages.length} messages from the hub`);

      // -- 1. per row: 1..lastId, each exactly once -------------------------------------------
      const rowCount = new Map<number, number>();
      const copies = new Map<string, number>();
      const pmsFrames = new Map<number, number>();
      let serialMessages = 0;
      for (const m of messages) {
        const id = m.headers["Nats-Msg-Id"]?.[0] ?? "";
        const match = new RegExp(`^${GATEWAY_ID}-(\\d+)$`).exec(id);
        expect(match, `seq ${m.seq}: Nats-Msg-Id "${id}"`).not.toBeNull();
        const row = Number(match![1]);
        rowCount.set(row, (rowCount.get(row) ?? 0) + 1);
        const payload = decoder.decode(m.data);
        if (m.subject.startsWith(`edge.${GATEWAY_ID}.soak.`)) {
          copies.set(payload, (copies.get(payload) ?? 0) + 1);
        } else if (m.subject === `edge.${GATEWAY_ID}.sensors.air-1.air`) {
          const n = (JSON.parse(payload) as { particles_0_3um: number }).particles_0_3um - 1200;
          pmsFrames.set(n, (pmsFrames.get(n) ?? 0) + 1);
          serialMessages++;
        } else if (m.subject.startsWith(`edge.${GATEWAY_ID}.sensors.env-1.`)) {
          serialMessages++;
        }
      }
      const twice = [...rowCount].filter(([, n]) => n > 1).map(([row]) => row);
      const missing: number[] = [];
      for (let row = 1; row <= outbox.lastId; row++) if (!rowCount.has(row)) missing.push(row);
      const dropped = metrics
        .split("\n")
        .filter((l) => l.startsWith("leafgate_buffer_dropped_total"))
        .join("; ");

      // -- 2. per payload --------------------------------------------------------------------
      let sentPayloads = 0;
      let qos0Sent = 0;
      let qos0InHub = 0;
      const lostAcked: string[] = [];
      const moreThanSent: string[] = [];
      const qos0Twice: string[] = [];
      let duplicates = 0;
      for (const [payload, n] of sends) {
        sentPayloads++;
        const inHub = copies.get(payload) ?? 0;
        if (inHub > 1) duplicates += inHub - 1;
        if (inHub > n) moreThanSent.push(`${payload}: ${inHub} copies, sent ${n} times`);
        if (qosOf.get(payload) === 0) {
          qos0Sent++;
          if (inHub > 0) qos0InHub++;
          if (inHub > 1) qos0Twice.push(payload);
        } else if (acked.has(payload) && inHub === 0) {
          lostAcked.push(payload);
        }
      }
      const pmsTwice = [...pmsFrames].filter(([, n]) => n > 1).map(([n]) => n);

      // -- 3. every process lived until killed, and each took PUBACKs and serial frames ------
      const unexpectedExits = epochs
        .filter((e) => !e.killed && e.gw.proc.exitInfo !== undefined)
        .map((e) => e.gw.proc.describe());
      const idle = epochs.filter((e) => e.acks === 0).map((e) => e.index);
      const pmsByEpoch = epochs.map((e, i) => {
        const to = epochs[i + 1]?.pmsFrameFrom ?? pms.sent.length;
        let n = 0;
        for (const frame of pmsFrames.keys()) if (frame >= e.pmsFrameFrom && frame < to) n++;
        return n;
      });

      // -- 4. RSS ----------------------------------------------------------------------------
      const rssReport = epochs.map((e) => {
        const after = e.rss.filter((s) => s.atMs >= WARMUP_MS);
        const reference = after[0]?.mib ?? Number.NaN;
        const values = after.map((s) => s.mib);
        const max = Math.max(...values);
        const min = Math.min(...values);
        return {
          epoch: e.index,
          samples: e.rss.length,
          warmupEnd: reference,
          min,
          max,
          last: values.at(-1) ?? Number.NaN,
          within: values.every((v) => v <= reference * (1 + RSS_TOLERANCE)),
        };
      });

      // -- 5. lag ----------------------------------------------------------------------------
      // Round trips while a process was warming up (its start: opening the database,
      // restoring sessions, draining the backlog) are shown but not held to the limit.
      const steady = lagReport.samples.filter((_, i) => {
        const at = lagReport.at[i]!;
        const epoch = epochs.findLast((e) => e.startedAtMs <= at);
        return epoch !== undefined && at - epoch.startedAtMs >= WARMUP_MS;
      });
      const p50 = percentile(steady, 50);
      const p99 = percentile(steady, 99);
      const p99All = percentile(lagReport.samples, 99);
      const lagMax = Math.max(...lagReport.samples);
      const noise99 = percentile(lagReport.control, 99);

      const qos1Sent = sentPayloads - qos0Sent;
      const summary = [
        `soak: ${SOAK_S} s, seed ${seed}; ${epochs.length} gateway processes (${epochs.filter((e) => e.killed).length} killed -9)`,
        `mqtt: ${sentPayloads} payloads sent (${qos1Sent} QoS 1, ${qos0Sent} QoS 0), ` +
          `${[...sends.values()].reduce((a, b) => a + b, 0)} PUBLISH packets; ${acked.size} acked; ` +
          `in the hub: ${[...copies.values()].reduce((a, b) => a + b, 0)} copies of ${copies.size} payloads, ` +
          `${duplicates} duplicates (resent after a restart); QoS 0 in the hub: ${qos0InHub} of ${qos0Sent}`,
        `serial: ${pms.sent.length} PMS5003 + ${env.sent.length} env-sensor frames sent; ` +
          `${serialMessages} messages in the hub; PMS5003 frames per process: ${pmsByEpoch.join(", ")}`,
        `rows: last id ${outbox.lastId}, ${rowCount.size} in the hub, ${twice.length} twice, ${missing.length} missing; drops: ${dropped || "none"}`,
        `hostile: fuzzer ${fuzzer.stats.connections} connections (${fuzzer.stats.closedByServer} closed by the gateway); ` +
          `never-reader ${neverReader.stats.connections} connections, ${neverReader.stats.closedByServer} closed by the gateway, ` +
          `${(neverReader.stats.bytesWritten / 1e6).toFixed(1)} MB written`,
        `rss MiB per process (after ${WARMUP_MS / 1000} s warm-up: at its end / min / max / last): ` +
          rssReport
            .map(
              (r) =>
                `#${r.epoch} ${r.warmupEnd}/${r.min}/${r.max}/${r.last} (${r.samples} samples)`,
            )
            .join("; "),
        `lag (PINGREQ round trip, after warm-up): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms ` +
          `over ${steady.length} samples; with warm-ups p99 ${p99All.toFixed(1)} ms, max ${lagMax.toFixed(1)} ms ` +
          `over ${lagReport.samples.length}; ${lagReport.stalls} stalls, ${lagReport.reconnects} reconnects; ` +
          `machine noise (the probe's own timer lateness) p99 ${noise99.toFixed(1)} ms`,
      ].join("\n");
      const curves = epochs.map(
        (e) =>
          `rss #${e.index}: ${e.rss
            .filter((_, i) => i % RSS_CURVE_EVERY === 0)
            .map((x) => `${Math.round(x.atMs / 1000)}s ${x.mib}`)
            .join(", ")}`,
      );
      console.log(`${summary}\n${curves.join("\n")}\n${log.join("\n")}`);

      expect(unexpectedExits, "gateway processes that exited without being killed").toEqual([]);
      expect(twice, "rows in the hub more than once").toEqual([]);
      expect(missing, `rows never in the hub (drops: ${dropped})`).toEqual([]);
      expect(lostAcked, "PUBACKed payloads not in the hub").toEqual([]);
      expect(moreThanSent, "payloads in the hub more often than sent").toEqual([]);
      expect(qos0Twice, "QoS 0 payloads in the hub twice").toEqual([]);
      expect(pmsTwice, "PMS5003 frames in the hub twice").toEqual([]);
      expect(idle, "gateway processes that took no PUBACK").toEqual([]);
      expect(
        pmsByEpoch.filter((n) => n === 0),
        "processes without a serial frame",
      ).toEqual([]);
      expect(
        rssReport.filter((r) => !r.within),
        `RSS moved more than ${RSS_TOLERANCE * 100}% after warm-up`,
      ).toEqual([]);
      // The machine's own scheduling delay (its p99) is allowed on top: on two cores shared
      // with other test runs, any process waits that long for a core now and then.
      expect(
        p99,
        `event-loop lag p99 (ms), machine noise p99 ${noise99.toFixed(1)} ms`,
      ).toBeLessThan(LAG_P99_LIMIT_MS + noise99);
      await stopProcess(last.gw.proc);
    },
    SOAK_MS + 300_000,
  );
});
