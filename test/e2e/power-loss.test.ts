// Power loss: what `buffer.durability` promises, read off the gateway's own system calls.
//
// A power cut loses whatever the kernel had not yet written to the disk; only what an
// fsync/fdatasync reached is safe. So "an acknowledged message survives power loss" means: the
// message was written to the SQLite WAL, and that file was synced, before the PUBACK went out.
// The bundle runs as a child process with strace attached (write, writev, pwrite64, fsync,
// fdatasync, with fd paths) while mqtt.js publishes QoS 1 messages, one at a time and in a
// burst (one group commit for many); each PUBACK found on the wire is matched, by packet id,
// to the WAL page write that carried its message.
//
// - `durability: fsync`: for every PUBACK, a WAL sync lies between the first WAL write holding
//   that message and the PUBACK.
// - `durability: normal`: the WAL write precedes every PUBACK (kill -9 loses nothing: the
//   kernel has the page), but no WAL sync happens at all: a power cut may lose those commits.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { spawnTracked, stopAll, stopProcess, waitForLine } from "../helpers/procs.js";
import type { TempDir } from "../helpers/wait.js";

/** Published one at a time: each PUBACK follows its own commit. */
const SEQUENTIAL = 10;
/** Published without waiting: acknowledged after a few group commits. */
const BURST = 40;
/** strace prints at most this many bytes of a buffer; a WAL page is 4 KiB. */
const STRACE_STRING_BYTES = 8192;
/** MQTT PUBACK: fixed header 0x40, remaining length 2, then the packet id. */
const PUBACK = 0x40;

type TraceEvent =
  | { kind: "wal-write"; data: Buffer }
  | { kind: "wal-sync" }
  | { kind: "mqtt-write"; data: Buffer };

/** Decodes one strace `-xx` string ("\x41\x42…") to its bytes. */
function hexString(text: string): Buffer {
  return Buffer.from(text.replaceAll("\\x", ""), "hex");
}

/**
 * The events of the gateway's main thread, in order, from an `strace -f -xx -yy` log. SQLite
 * and the MQTT socket writes both run on the main thread, so its order is the real order.
 */
function parseTrace(log: string, mainPid: number, mqttPort: number): TraceEvent[] {
  const events: TraceEvent[] = [];
  // pid syscall(fd<path>, "data", …) = result; -xx prints paths and data as \xNN.
  // A socket's path holds "->", so the path ends at the first ">," or ">)".
  const line = /^(\d+) +(write|writev|pwrite64|fsync|fdatasync)\((\d+)<(.*?)>([,)].*)$/;
  const tcp = `TCP:[127.0.0.1:${mqttPort}->`;
  for (const raw of log.split("\n")) {
    const m = line.exec(raw);
    if (m === null || Number(m[1]) !== mainPid) continue;
    const [, , call, , fdPath, rest] = m as unknown as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const path = fdPath.startsWith("TCP:") ? fdPath : hexString(fdPath).toString("utf8");
    // A syscall that failed did not happen, as far as durability goes.
    if (!/= \d+$/.test(rest)) continue;
    const strings = [...rest.matchAll(/"((?:\\x[0-9a-f]{2})*)"/g)].map((s) => hexString(s[1]!));
    if (path.endsWith(".db-wal")) {
      if (call === "fsync" || call === "fdatasync") events.push({ kind: "wal-sync" });
      else if (call === "pwrite64") events.push({ kind: "wal-write", data: strings[0]! });
    } else if (path.startsWith(tcp) && (call === "write" || call === "writev")) {
      events.push({ kind: "mqtt-write", data: Buffer.concat(strings) });
    }
  }
  return events;
}

/** Packet ids of the PUBACKs in a stream of MQTT packets from the server. */
function pubackIds(data: Buffer): number[] {
  const ids: number[] = [];
  let i = 0;
  while (i < data.length) {
    const type = data[i]!;
    let length = 0;
    let shift = 0;
    let j = i + 1;
    for (;;) {
      const b = data[j++]!;
      length |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) === 0) break;
    }
    if (type === PUBACK) ids.push(data.readUInt16BE(j));
    i = j + length;
  }
  return ids;
}

interface Verdict {
  /** PUBACKs seen on the wire, in order. */
  acks: number;
  /** PUBACKs whose message was in a WAL write before them. */
  writtenBefore: number;
  /** PUBACKs with a WAL sync between that write and them. */
  syncedBefore: number;
  /** WAL syncs before the last PUBACK. */
  walSyncs: number;
}

function judge(events: readonly TraceEvent[], payloadById: ReadonlyMap<number, string>): Verdict {
  const verdict: Verdict = { acks: 0, writtenBefore: 0, syncedBefore: 0, walSyncs: 0 };
  /** Index of the first WAL write that carried each payload. */
  const firstWrite = new Map<string, number>();
  let lastSync = -1;
  let syncs = 0;
  events.forEach((e, index) => {
    if (e.kind === "wal-sync") {
      lastSync = index;
      syncs++;
      return;
    }
    if (e.kind === "wal-write") {
      for (const payload of payloadById.values()) {
        if (!firstWrite.has(payload) && e.data.includes(payload)) firstWrite.set(payload, index);
      }
      return;
    }
    for (const id of pubackIds(e.data)) {
      verdict.acks++;
      verdict.walSyncs = syncs;
      const written = firstWrite.get(payloadById.get(id) ?? "");
      if (written === undefined) continue;
      verdict.writtenBefore++;
      if (lastSync > written) verdict.syncedBefore++;
    }
  });
  return verdict;
}

/** Publishes QoS 1, sequentially then in a burst; returns each packet id's (unique) payload. */
async function publishAll(client: MqttClient, tag: string): Promise<Map<number, string>> {
  const payloadById = new Map<number, string>();
  client.on("packetsend", (packet) => {
    if (packet.cmd === "publish" && packet.messageId !== undefined) {
      payloadById.set(packet.messageId, String(packet.payload));
    }
  });
  for (let i = 0; i < SEQUENTIAL; i++) {
    await client.publishAsync("power/seq", `${tag}-seq-${i}-${"s".repeat(20)}`, { qos: 1 });
  }
  await Promise.all(
    Array.from({ length: BURST }, (_, i) =>
      client.publishAsync("power/burst", `${tag}-burst-${i}-${"b".repeat(20)}`, { qos: 1 }),
    ),
  );
  return payloadById;
}

describe.each([
  ["fsync", true],
  ["normal", false],
] as const)("buffer.durability: %s", (durability, syncs) => {
  let dir: TempDir | undefined;

  afterEach(async () => {
    await stopAll();
    await dir?.cleanup();
    dir = undefined;
  });

  it(
    syncs
      ? "syncs the WAL after writing a message and before its PUBACK, for every PUBACK"
      : "writes the WAL before every PUBACK, and never syncs it",
    async () => {
      const config = writeConfig({ gateway: { id: "pl" }, buffer: { durability } });
      dir = config.dir;
      const gw: ChildGateway = await startGatewayProcess(config.file);
      const traceFile = join(dir.path, "strace.log");
      const strace = await spawnTracked("strace", [
        "-f",
        "-xx",
        "-yy",
        "-s",
        String(STRACE_STRING_BYTES),
        "-e",
        "trace=write,writev,pwrite64,fsync,fdatasync",
        "-o",
        traceFile,
        "-p",
        String(gw.proc.pid),
      ]);
      await waitForLine(
        strace,
        (l) => l.includes(`Process ${gw.proc.pid} attached`),
        10_000,
        "stderr",
      );

      const client = await connectMqttJs(gw.mqttPort, { clientId: `power-${durability}` });
      const payloadById = await publishAll(client, durability);
      await client.endAsync();
      expect(payloadById.size).toBe(SEQUENTIAL + BURST);
      // strace ends with the gateway, having written every line.
      await stopProcess(gw.proc);
      await strace.exited;

      const events = parseTrace(readFileSync(traceFile, "utf8"), gw.proc.pid, gw.mqttPort);
      const verdict = judge(events, payloadById);
      const total = SEQUENTIAL + BURST;
      expect([verdict.acks, verdict.writtenBefore]).toEqual([total, total]);
      if (syncs) {
        expect(verdict.syncedBefore).toBe(total);
        // At least one sync per commit: each sequential message was a commit of its own.
        expect(verdict.walSyncs).toBeGreaterThan(SEQUENTIAL);
      } else {
        expect([verdict.syncedBefore, verdict.walSyncs]).toEqual([0, 0]);
      }
    },
  );
});
