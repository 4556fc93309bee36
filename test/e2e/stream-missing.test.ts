// A hub with JetStream but no stream for the gateway (README, Guarantees: "checks at each
// connect that a stream captures the exported subjects — if none does, it says so, with
// the command to create one, keeps buffering, and checks again every 5 s"), with the
// shipped bundle as a child process, whose log is what an operator reads:
// - the warning, with the command, comes once per hub connection, not at every recheck;
// - acknowledged messages are kept meanwhile;
// - once the stream the command describes exists, a recheck finds it ("hub stream found")
//   and everything arrives exactly once, in order.
import { jetstreamManager } from "@nats-io/jetstream";
import type { Msg } from "@nats-io/transport-node";
import { describe, expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import type { ChildGateway } from "../helpers/gateway.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { streamMessages } from "../helpers/nats-server.js";
import { waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

/** The JetStream API request a check with `upstream.stream: null` makes (list streams). */
const STREAM_LIST = "$JS.API.STREAM.LIST";
/** README: "checks again every 5 s"; a recheck is awaited at most this long. */
const RECHECK_WAIT_MS = 15_000;
const WARNING = "cannot forward yet";
/** What is wrong and the fix, in the log line and in /status `upstream.lastError`. */
const PROBLEM =
  "no stream on the hub captures edge.gw1.> (streams: none); create it on the hub with " +
  "leafgate hub create-stream --yes (and this gateway's -c; docs/hub.md), or e.g. " +
  "nats stream add EDGE --subjects 'edge.gw1.>' --defaults";
const WARNING_LINE = `${WARNING}: ${PROBLEM}; buffering and checking again`;
const LOST = "hub connection lost; reconnecting";
const FOUND = "hub stream found";

const decoder = new TextDecoder();
const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}-${i + 1}`);

/** The messages of the log lines that tell about the stream and the hub connection. */
function story(gw: ChildGateway): string[] {
  return gw.proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => (JSON.parse(l) as { msg: string }).msg)
    .filter((m) => m.startsWith(WARNING) || m === LOST || m === FOUND);
}

describe("no stream captures the exported subjects", () => {
  it("says so once per connection, keeps buffering, and forwards once the stream exists", async ({
    nc,
    hubProxy,
    gateway,
  }) => {
    // Every stream check of the gateway, seen on the hub, and the hub's replies to them.
    const checks: Msg[] = [];
    const replied = new Set<string>();
    nc.subscribe(STREAM_LIST, {
      callback: (_err, m) => {
        checks.push(m);
      },
    });
    nc.subscribe("_INBOX.>", {
      callback: (_err, m) => {
        replied.add(m.subject);
      },
    });
    await nc.flush();
    const answered = (n: number) => checks.length >= n && replied.has(checks[n - 1]!.reply!);

    // Through a proxy, so that the test can end a hub connection.
    const proxy = await hubProxy();
    const gw = await gateway.spawn({
      upstream: { servers: [proxy.url], reconnect_delay_max: "200ms" },
    });
    await waitForLine(gw.proc, (l) => l.includes(WARNING));

    // Acknowledged and kept while the gateway waits for a stream.
    const before = lines(30, "before");
    await mosquittoPubLines(gw.mqttPort, "sensors/a", before);

    // A recheck (5 s on) finds nothing new, and says nothing new.
    await waitFor(() => answered(2), { timeoutMs: RECHECK_WAIT_MS });
    // A new connection checks at once, and says so again.
    proxy.cut();
    proxy.restore();
    await waitFor(() => answered(3));
    await waitFor(() => story(gw).filter((m) => m === WARNING_LINE).length >= 2);
    expect(story(gw)).toEqual([WARNING_LINE, LOST, WARNING_LINE]);
    const during = lines(30, "during");
    await mosquittoPubLines(gw.mqttPort, "sensors/a", during);
    const pending = await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json();
    expect(pending).toMatchObject({ outbox: { pending: 60 }, upstream: { lastError: PROBLEM } });

    // The operator runs the command the warning gives (here through the API: the same
    // stream name and subjects).
    const command = /nats stream add (\S+) --subjects '([^']+)' --defaults/.exec(PROBLEM)!;
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: command[1]!, subjects: [command[2]!] });
    await waitForLine(gw.proc, (l) => l.includes(FOUND), RECHECK_WAIT_MS);
    expect(story(gw)).toEqual([WARNING_LINE, LOST, WARNING_LINE, FOUND]);

    // Everything, once, in order.
    await waitFor(async () => {
      const status = await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json();
      return (status as { outbox: { pending: number } }).outbox.pending === 0;
    });
    const messages = await streamMessages(nc, "EDGE");
    expect(messages.map((m) => [m.subject, decoder.decode(m.data)])).toEqual(
      [...before, ...during].map((p) => ["edge.gw1.sensors.a", p]),
    );
    expect(messages.map((m) => m.headers["Nats-Msg-Id"]![0])).toEqual(
      Array.from({ length: 60 }, (_, i) => `gw1-${i + 1}`),
    );
  });
});
