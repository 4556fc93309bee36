// What the hub's memory grows with, measured on one nats-server (Debian's 2.9) for the fleet
// design (docs/fleet.md): its RSS before and after N messages with a distinct Nats-Msg-Id
// each (the duplicate window's entries), N messages on N distinct subjects (per-subject
// state), the same N messages on 4 subjects without ids (the baseline), and N idle client
// connections with two subscriptions each (a gateway's ack inbox and its command import).
import { connect as netConnect, type Socket } from "node:net";
import { jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { connectClient, startNatsServer } from "../../test/helpers/nats-server.js";
import { waitFor } from "../../test/helpers/wait.js";
import { timeout } from "./harness.js";
import { rssMiB } from "./measure.js";

/** Go returns freed memory lazily: RSS is read once it has stood still this long. */
const SETTLE_MS = 1_000;
const FLUSH_EVERY = 5_000;
const PAYLOAD_BYTES = 100;
const CONNECT_TIMEOUT_MS = 10_000;

export type ProbeKind = "baseline" | "msg-ids" | "subjects" | "connections";

export interface Probe {
  kind: ProbeKind;
  count: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** (after - before) / count. */
  bytesEach: number;
}

async function settledRss(pid: number): Promise<number> {
  await timeout(SETTLE_MS);
  return rssMiB(pid);
}

/** One probe on a fresh server. */
export async function probe(kind: ProbeKind, count: number): Promise<Probe> {
  const server = await startNatsServer();
  try {
    const nc = await connectClient(server.url);
    const jsm = await jetstreamManager(nc);
    // An hour's window: every id stays tracked for the whole probe.
    await jsm.streams.add({ name: "PROBE", subjects: ["edge.>"], duplicate_window: 3600e9 });
    const before = await settledRss(server.pid);
    let close = () => {};
    if (kind === "connections") {
      close = await idleConnections(server.port, count);
    } else {
      const payload = new Uint8Array(PAYLOAD_BYTES);
      for (let i = 0; i < count; i++) {
        const subject =
          kind === "subjects"
            ? `edge.gw${i % 10_000}.sensors.s${Math.floor(i / 10_000)}.data`
            : `edge.gw0001.sensors.s${i % 4}.data`;
        if (kind === "msg-ids") {
          const h = headers();
          h.set("Nats-Msg-Id", `gw0001-${i + 1}`);
          nc.publish(subject, payload, { headers: h });
        } else {
          nc.publish(subject, payload);
        }
        if ((i + 1) % FLUSH_EVERY === 0) await nc.flush();
      }
      await nc.flush();
      await waitFor(async () => (await jsm.streams.info("PROBE")).state.messages >= count, {
        timeoutMs: 120_000,
        intervalMs: 200,
        message: `probe ${kind}: the stream did not take ${count} messages`,
      });
    }
    const after = await settledRss(server.pid);
    close();
    await nc.close();
    return {
      kind,
      count,
      rssBeforeMiB: before,
      rssAfterMiB: after,
      bytesEach: ((after - before) * 1024 * 1024) / count,
    };
  } finally {
    await server.stop();
  }
}

/** `count` raw NATS connections, each CONNECTed with two SUBs and PONGed; returns close(). */
async function idleConnections(port: number, count: number): Promise<() => void> {
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = netConnect({ host: "127.0.0.1", port });
    sockets.push(s);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`connection ${i}: no PONG`)),
        CONNECT_TIMEOUT_MS,
      );
      let text = "";
      let sent = false;
      s.on("error", reject);
      s.on("data", (chunk: Buffer) => {
        text += chunk.toString("latin1");
        if (!sent && text.includes("INFO")) {
          sent = true;
          s.write(
            `CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"name":"gw${i}"}\r\n` +
              `SUB _INBOX.gw${i}.* 1\r\nSUB cmd.gw${i}.> 2\r\nPING\r\n`,
          );
        }
        if (text.includes("PONG")) {
          clearTimeout(timer);
          s.removeAllListeners("data");
          resolve();
        }
      });
    });
  }
  return () => {
    for (const s of sockets) s.destroy();
  };
}
