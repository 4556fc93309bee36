// What a client may hold before it has logged in (issue 10, findings 6 and 7): sockets
// that have not sent CONNECT are bounded apart from max_connections, a CONNECT over
// max_connect_size is refused from its fixed header, connections are bounded per source
// address, and failed logins from one address lock it out without running scrypt.
import { afterEach, describe, expect, it } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import {
  startGateway,
  startGatewayProcess,
  type TestGateway,
  writeConfig,
} from "../helpers/gateway.js";
import { gatewayMetrics } from "../helpers/gateway-http.js";
import { runToCompletion, stopAll } from "../helpers/procs.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

/** A second loopback source address (Linux routes all of 127.0.0.0/8 to lo). */
const OTHER_ADDRESS = "127.0.0.2";

describe("limits before and at CONNECT", () => {
  let gw: TestGateway | undefined;
  const dirs: TempDir[] = [];

  afterEach(async () => {
    await closeRawClients();
    await stopAll();
    await gw?.dispose();
    gw = undefined;
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  const metric = (name: string, labels?: Record<string, string>) =>
    gw!.gateway.metrics.value(name, labels);

  it("sockets without CONNECT are bounded by max_pending_connections, apart from max_connections", async () => {
    gw = await startGateway({
      mqtt: { max_pending_connections: 5, max_connections: 4, connect_timeout: "60s" },
    });
    const port = gw.mqttPort;
    // Three connected clients do not count as pending.
    for (let i = 0; i < 3; i++) {
      const { connack } = await RawMqtt.connect(port, { clientId: `c${i}` });
      expect(connack.reasonCode).toBe(0);
    }
    const idle: RawMqtt[] = [];
    for (let i = 0; i < 5; i++) idle.push(await RawMqtt.open(port));
    await waitFor(() => metric("leafgate_mqtt_pending_connections") === 5);

    const sixth = await RawMqtt.open(port);
    await sixth.closedByServer();
    expect(sixth.packets).toEqual([]);
    expect(metric("leafgate_mqtt_connections_refused_total", { reason: "max-pending" })).toBe(1);

    // One pending socket goes; its place is free again.
    await idle[0]!.destroy();
    await waitFor(() => metric("leafgate_mqtt_pending_connections") === 4);
    idle.push(await RawMqtt.open(port));
    await waitFor(() => metric("leafgate_mqtt_pending_connections") === 5);
    expect(metric("leafgate_mqtt_connections_refused_total", { reason: "max-pending" })).toBe(1);

    // Full again, and all of them 127.0.0.1's: a device on another address does not wait
    // behind them. It takes the oldest one's place (closed), and logs in.
    const device = await RawMqtt.connect(port, { clientId: "device" }, 5, OTHER_ADDRESS);
    expect(device.connack.reasonCode).toBe(0);
    await idle[1]!.closedByServer();
    expect(idle.slice(2).map((c) => c.isClosed)).toEqual([false, false, false, false]);
    expect(metric("leafgate_mqtt_connections_refused_total", { reason: "max-pending" })).toBe(2);
  });

  it("a CONNECT over max_connect_size is refused from its fixed header, before its body", async () => {
    gw = await startGateway({ mqtt: { max_connect_size: "1KiB", connect_timeout: "60s" } });
    const big = await RawMqtt.open(gw.mqttPort);
    // CONNECT announcing 100,000 bytes, of which none follow: waiting for them would hold
    // the socket until connect_timeout; the header alone is enough to say no.
    big.write([0x10, 0xa0, 0x8d, 0x06]);
    await big.closedByServer();
    expect(metric("leafgate_mqtt_protocol_errors_total", { violation: "connectTooLarge" })).toBe(1);

    // Within the limit (a will of 900 bytes) it is an ordinary CONNECT.
    const ok = await RawMqtt.connect(gw.mqttPort, {
      clientId: "will-900",
      will: { topic: "w", payload: Buffer.alloc(900, 0x61), qos: 0, retain: false },
    });
    expect(ok.connack.reasonCode).toBe(0);
    // After CONNECT, max_packet_size is the limit again.
    ok.client.send({
      cmd: "publish",
      topic: "big",
      payload: Buffer.alloc(10_000, 0x62),
      qos: 1,
      messageId: 1,
      retain: false,
      dup: false,
    });
    expect((await ok.client.next("puback")).reasonCode).toBe(0);
  });

  it("connections per source address are bounded; another address is not affected", async () => {
    gw = await startGateway({ mqtt: { max_connections_per_address: 3 } });
    const port = gw.mqttPort;
    const mine: RawMqtt[] = [];
    // Two connected and one that has not sent CONNECT: all three count.
    for (let i = 0; i < 2; i++)
      mine.push((await RawMqtt.connect(port, { clientId: `a${i}` })).client);
    mine.push(await RawMqtt.open(port));
    await waitFor(() => metric("leafgate_mqtt_pending_connections") === 1);

    const fourth = await RawMqtt.open(port);
    await fourth.closedByServer();
    expect(fourth.packets).toEqual([]);
    expect(metric("leafgate_mqtt_connections_refused_total", { reason: "per-address" })).toBe(1);

    const other = await RawMqtt.connect(port, { clientId: "b0" }, 5, OTHER_ADDRESS);
    expect(other.connack.reasonCode).toBe(0);

    await mine[0]!.destroy();
    await waitFor(() => metric("leafgate_mqtt_connections") === 3);
    const again = await RawMqtt.connect(port, { clientId: "a-again" });
    expect(again.connack.reasonCode).toBe(0);
    expect(metric("leafgate_mqtt_connections_refused_total", { reason: "per-address" })).toBe(1);
  });

  it("200 bad logins from one address run scrypt 10 times; the rest are locked out, and another address still gets in", async () => {
    const hash = await hashPassword("pw-sensor");
    const { dir, file } = writeConfig({
      mqtt: { max_pending_connections: 300, max_connections_per_address: 300 },
      authorization: {
        failed_logins_per_address: 10,
        failed_login_window: "1m",
        users: [{ user: "sensor-1", password: hash }],
      },
      log: { level: "debug" },
    });
    dirs.push(dir);
    const child = await startGatewayProcess(file);
    // An attacker chooses the user name: long, and not to be echoed at warn.
    const evil = (i: number) => `evil-${"x".repeat(300)}-${i}`;
    const bad = (i: number) => ({
      clientId: `bad-${i}`,
      username: evil(i),
      password: Buffer.from("guess"),
    });

    // 100 at once (the ones still hashing count towards the limit), then 100 in turn.
    const burst = await Promise.all(
      Array.from({ length: 100 }, (_, i) => RawMqtt.connect(child.mqttPort, bad(i))),
    );
    const codes = burst.map((r) => r.connack.reasonCode);
    expect(codes.filter((c) => c === 0x86)).toHaveLength(10);
    // MQTT 5 has a code for it: 0x9F Connection rate exceeded.
    expect(codes.filter((c) => c === 0x9f)).toHaveLength(90);
    for (let i = 100; i < 200; i++) {
      const r = await RawMqtt.connect(child.mqttPort, bad(i), 4);
      // MQTT 3.1.1 has none: 5, not authorized (the password was never checked).
      expect(r.connack.returnCode).toBe(5);
      await r.client.closedByServer();
    }
    const m = await gatewayMetrics(child);
    expect(m.get('leafgate_mqtt_auth_failures_total{code="4"}')).toBe(10);
    expect(m.get("leafgate_mqtt_auth_lockouts_total")).toBe(190);

    // The lockout is the address's: even the right password is refused from it…
    const r = await runToCompletion(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(child.mqttPort), "-u", "sensor-1", "-P", "pw-sensor"].concat(
        ["-t", "sensors/x", "-m", "1"],
      ),
      { timeoutMs: 10_000 },
    );
    expect(r.stderr.toLowerCase()).toContain("not authori");
    // …while a device on another address logs in (Python paho, bound to 127.0.0.2).
    const script = [
      "import paho.mqtt.client as mqtt",
      "c = mqtt.Client(client_id='legit')",
      "c.username_pw_set('sensor-1', 'pw-sensor')",
      "rc = []",
      "c.on_connect = lambda cl, u, f, code: rc.append(code)",
      `c.connect('127.0.0.1', ${child.mqttPort}, 60, bind_address='${OTHER_ADDRESS}')`,
      "c.loop_start()",
      "import time",
      "for _ in range(100):",
      "    if rc: break",
      "    time.sleep(0.05)",
      "print('rc', rc, flush=True)",
      "c.disconnect(); c.loop_stop()",
    ].join("\n");
    const paho = await runToCompletion("/usr/bin/python3", ["-c", script], { timeoutMs: 15_000 });
    expect(paho.stdout.trim()).toBe("rc [0]");
    const after = await gatewayMetrics(child);
    expect(after.get("leafgate_mqtt_auth_lockouts_total")).toBe(191);
    expect(after.get('leafgate_mqtt_auth_failures_total{code="4"}')).toBe(10);

    // Logs: the address at warn, once per lockout; the chosen name only at debug, cut short.
    await waitFor(() => child.proc.stdout().includes('"remote":"127.0.0.2'));
    const lines = child.proc
      .stdout()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: number; msg: string; [k: string]: unknown });
    const warnings = lines.filter((l) => l.level >= 40);
    expect(warnings.filter((l) => JSON.stringify(l).includes("evil-"))).toEqual([]);
    const lockouts = warnings.filter((l) => /locked out/.test(l.msg));
    expect(lockouts.map((l) => [l.address, l.failures])).toEqual([["127.0.0.1", 10]]);
    const named = lines.filter((l) => JSON.stringify(l).includes("evil-"));
    expect(named).toHaveLength(10);
    for (const l of named) expect((l.user as string).length).toBeLessThanOrEqual(65);
  });
});
