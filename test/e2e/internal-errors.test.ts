// A bug in a callback the event loop runs (a timer, a socket event) must cost only the
// connection it belongs to, never the process: every such callback runs under the guard,
// which counts the failure (leafgate_internal_errors_total{where}), logs it once with its
// stack, and cuts that one connection. The bundle runs as a child process, as users run it,
// with its process-level handler (which stops the gateway) in place.
//
// The bug is injected from outside the bundle: a preload (NODE_OPTIONS=--require) makes
// net.Socket#pause throw once, for the one socket whose client port the test names. The
// gateway pauses a socket when it closes the connection, so the victim's keepalive timer
// (which closes it) is the callback that throws; nothing in the shipped code is a test hook.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Bystanders, connectBystanders } from "../helpers/bystanders.js";
import { type ChildGateway, startGatewayProcess, writeConfig } from "../helpers/gateway.js";
import { gatewayMetrics, metricTotal } from "../helpers/gateway-http.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { stopAll } from "../helpers/procs.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

/** The victim's keepalive; the gateway gives up on it after 1.5 times that [MQTT-3.1.2-24]. */
const VICTIM_KEEPALIVE_S = 1;
/** Keepalive timeout plus a loaded machine's delay. */
const VICTIM_CUT_DEADLINE_MS = 15_000;

const PRELOAD = `
const net = require("node:net");
const fs = require("node:fs");
const file = process.env.LG_TEST_FAULT_PORT_FILE;
const pause = net.Socket.prototype.pause;
let fired = false;
net.Socket.prototype.pause = function () {
  if (!fired) {
    let port = NaN;
    try { port = Number(fs.readFileSync(file, "utf8")); } catch {}
    if (this.remotePort === port) {
      fired = true;
      throw new Error("injected fault: socket pause failed");
    }
  }
  return pause.call(this);
};
`;

describe("a callback that throws costs only its own connection", () => {
  let dir: TempDir | undefined;
  let gw: ChildGateway;
  let portFile: string;
  let bystanders: Bystanders;

  beforeAll(async () => {
    const config = writeConfig({ gateway: { id: "guard" } });
    dir = config.dir;
    const preload = join(dir.path, "fault.cjs");
    portFile = join(dir.path, "fault-port");
    writeFileSync(preload, PRELOAD);
    gw = await startGatewayProcess(config.file, {
      NODE_OPTIONS: `--require ${preload}`,
      LG_TEST_FAULT_PORT_FILE: portFile,
    });
    bystanders = await connectBystanders(gw.mqttPort, {
      subscriber: { clientId: "guard-bystander-sub" },
      publisher: { clientId: "guard-bystander-pub", protocolVersion: 5 },
      filter: "guard/ok/#",
    });
  });

  afterAll(async () => {
    await closeRawClients();
    await bystanders?.end();
    await stopAll();
    await dir?.cleanup();
  });

  it("the victim's keepalive timer throws: counted once, logged once with its stack, only the victim is cut", async () => {
    const { publisher, received, disruptions, clients } = bystanders;
    await publisher.publishAsync("guard/ok/1", "before", { qos: 1 });
    await waitFor(() => received.length === 1);

    const victim = await RawMqtt.open(gw.mqttPort, 5);
    writeFileSync(portFile, String(victim.socket.localPort));
    const connack = await victim.sendConnect({
      clientId: "guard-victim",
      keepalive: VICTIM_KEEPALIVE_S,
    });
    expect(connack.reasonCode).toBe(0);
    // Silent from now on: its keepalive timer fires and closes it, and the close throws.
    await victim.closedByServer(VICTIM_CUT_DEADLINE_MS);
    expect(gw.proc.stdout(), gw.proc.describe()).not.toContain('"msg":"uncaught exception"');
    expect(gw.proc.exitInfo, gw.proc.describe()).toBeUndefined();

    const metrics = await gatewayMetrics(gw);
    expect(metrics.get('leafgate_internal_errors_total{where="mqtt.keepalive"}')).toBe(1);
    expect(metricTotal(metrics, "leafgate_internal_errors_total")).toBe(1);
    // The victim's session is gone with it; the bystanders' two remain.
    await waitFor(async () => (await gatewayMetrics(gw)).get("leafgate_mqtt_sessions") === 2);

    const reports = gw.proc
      .stdout()
      .split("\n")
      .filter((line) => line.includes('"where":"mqtt.keepalive"'))
      .map((line) => JSON.parse(line) as { level: number; err?: { stack?: string } });
    expect(reports).toHaveLength(1);
    expect(reports[0]!.level).toBe(50);
    expect(reports[0]!.err?.stack).toContain("injected fault: socket pause failed");
    expect(reports[0]!.err?.stack).toContain("\n    at ");

    // Everyone else carries on: the bystanders were never disturbed, and a new client works.
    await publisher.publishAsync("guard/ok/2", "after", { qos: 1 });
    await waitFor(() => received.length === 2);
    expect(received).toEqual(["before", "after"]);
    const late = await connectMqttJs(gw.mqttPort, { clientId: "guard-late" });
    clients.push(late);
    await late.publishAsync("guard/ok/3", "late", { qos: 1 });
    await waitFor(() => received.length === 3);
    expect(received).toEqual(["before", "after", "late"]);
    expect(disruptions).toEqual([]);
    expect(gw.proc.exitInfo).toBeUndefined();
    // Nothing reached the process-level handler, nor Node's own reporting.
    expect(gw.proc.stdout()).not.toContain('"msg":"uncaught exception"');
    expect(gw.proc.stderr()).toBe("");
  });
});
