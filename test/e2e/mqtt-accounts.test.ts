// The MQTT broker serving two accounts in one gateway (issue 13), with clients no one here
// wrote: mqtt.js (3.1.1 and 5) and mosquitto_sub subscribed to `#`. A publish, a retained
// message and a will stay in their account; the same client id in both accounts is two
// persistent sessions that survive a restart apart; an export/import pair delivers exactly
// what the import names, under its prefix, and nothing flows back. NATS users share their
// account's subject space with its MQTT users.
import { connect } from "@nats-io/transport-node";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { afterEach, describe, expect } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import type { GatewayConfigInput } from "../helpers/config.js";
import { type GatewayLauncher, it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { spawnTracked, type TrackedProcess, waitForLine } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const PASSWORD = "pw";

/** $G: g1 and anonymous clients; a: a1, a2 (exports energy.> and hvac.>); b: b1, b2. */
async function accountsConfig(
  imports: { stream: string; account: string; prefix?: string }[] = [],
): Promise<GatewayConfigInput> {
  const password = await hashPassword(PASSWORD);
  const user = (name: string) => ({ user: name, password });
  return {
    // Anonymous clients too, in $G.
    mqtt: { allow_anonymous: true },
    authorization: { users: [user("g1")] },
    accounts: {
      a: {
        users: [user("a1"), user("a2")],
        exports: [{ stream: "energy.>" }, { stream: "hvac.>" }],
      },
      b: { users: [user("b1"), user("b2")], imports },
    },
  };
}

const clients: MqttClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.end(true);
});

async function mqttJs(port: number, options: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectMqttJs(port, {
    ...(options.username !== undefined ? { password: PASSWORD } : {}),
    ...options,
  });
  clients.push(c);
  return c;
}

interface Got {
  topic: string;
  payload: string;
  retain: boolean;
}

function collect(c: MqttClient): Got[] {
  const got: Got[] = [];
  c.on("message", (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  return got;
}

/** mosquitto_sub on `#`, as `user` (anonymous when undefined); resolves once subscribed. */
async function mosquittoSub(
  port: number,
  version: "mqttv311" | "mqttv5",
  user: string | undefined,
): Promise<TrackedProcess> {
  const args = [
    ...["-h", "127.0.0.1", "-p", String(port), "-V", version, "-d", "-q", "1"],
    ...(user !== undefined ? ["-u", user, "-P", PASSWORD] : []),
    ...["-F", "MSG|%t|%r|%p", "-t", "#"],
  ];
  // Line-buffered, or the lines would sit in stdio's buffer while stdout is a pipe.
  const proc = await spawnTracked("stdbuf", ["-oL", "mosquitto_sub", ...args]);
  await waitForLine(proc, (l) => l.includes("received SUBACK"));
  return proc;
}

/** What mosquitto_sub printed: "topic|retain|payload". */
function printed(proc: TrackedProcess): string[] {
  return proc
    .stdout()
    .split("\n")
    .filter((l) => l.startsWith("MSG|"))
    .map((l) => l.slice(4));
}

describe("MQTT with two accounts in one gateway", () => {
  let gw: TestGateway | undefined;

  async function start(gateway: GatewayLauncher, input: GatewayConfigInput): Promise<number> {
    gw = await gateway.start(input);
    return gw.mqttPort;
  }

  it("publishes, retained messages and wills stay in their account (mosquitto_sub on # in each)", async ({
    gateway,
  }) => {
    const port = await start(gateway, await accountsConfig());
    // Retained before anyone subscribes: one per account, on the same topic.
    const pubA = await mqttJs(port, { username: "a1", clientId: "pub" });
    const pubB = await mqttJs(port, { username: "b1", clientId: "pub", protocolVersion: 5 });
    const pubG = await mqttJs(port, { clientId: "pub" });
    await pubA.publishAsync("status/x", "a-retained", { qos: 1, retain: true });
    await pubB.publishAsync("status/x", "b-retained", { qos: 1, retain: true });
    await pubG.publishAsync("status/x", "g-retained", { qos: 1, retain: true });

    const subA = await mosquittoSub(port, "mqttv5", "a2");
    const subB = await mosquittoSub(port, "mqttv311", "b2");
    const subG = await mosquittoSub(port, "mqttv5", undefined);
    const subG1 = await mosquittoSub(port, "mqttv311", "g1");

    await pubA.publishAsync("t/1", "from-a", { qos: 1 });
    await pubB.publishAsync("t/1", "from-b", { qos: 1 });
    await pubG.publishAsync("t/1", "from-g", { qos: 1 });
    // a's device vanishes: its will is published in a.
    const dying = await mqttJs(port, {
      username: "a1",
      clientId: "dev",
      protocolVersion: 5,
      will: { topic: "dev/gone", payload: Buffer.from("bye"), qos: 1, retain: false },
    });
    dying.stream.destroy();
    await waitFor(() => printed(subA).includes("dev/gone|0|bye"));
    expect(gw!.gateway.metrics.value("leafgate_mqtt_wills_published_total")).toBe(1);
    // A marker last in each account: what came before it is all there is.
    await pubA.publishAsync("end", "a", { qos: 1 });
    await pubB.publishAsync("end", "b", { qos: 1 });
    await pubG.publishAsync("end", "g", { qos: 1 });
    for (const s of [subA, subB, subG, subG1]) {
      await waitFor(() => printed(s).some((l) => l.startsWith("end|")));
    }
    expect(printed(subA)).toEqual([
      "status/x|1|a-retained",
      "t/1|0|from-a",
      "dev/gone|0|bye",
      "end|0|a",
    ]);
    expect(printed(subB)).toEqual(["status/x|1|b-retained", "t/1|0|from-b", "end|0|b"]);
    const inG = ["status/x|1|g-retained", "t/1|0|from-g", "end|0|g"];
    expect(printed(subG)).toEqual(inG);
    expect(printed(subG1)).toEqual(inG);
  });

  it("the same client id in both accounts is two persistent sessions, apart across a restart", async ({
    gateway,
  }) => {
    const input = await accountsConfig();
    const port = await start(gateway, input);
    const persistent = (user: string): IClientOptions => ({
      username: user,
      clientId: "dev",
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
    });
    const devA = await mqttJs(port, persistent("a1"));
    await devA.subscribeAsync({ "cmd/#": { qos: 1 } });
    const devB = await mqttJs(port, persistent("b1"));
    await devB.subscribeAsync({ "cfg/#": { qos: 1 } });
    // Both connected at once: neither took the other over.
    expect([devA.connected, devB.connected]).toEqual([true, true]);
    await devA.endAsync();
    await devB.endAsync();
    // Queued while offline, each in its account: one for the session, one it does not want.
    const pubA = await mqttJs(port, { username: "a2" });
    const pubB = await mqttJs(port, { username: "b2" });
    await pubA.publishAsync("cmd/1", "a-cmd", { qos: 1 });
    await pubA.publishAsync("cfg/1", "a-cfg", { qos: 1 });
    await pubB.publishAsync("cfg/1", "b-cfg", { qos: 1 });
    await pubB.publishAsync("cmd/1", "b-cmd", { qos: 1 });
    pubA.end(true);
    pubB.end(true);
    await gw!.stop();

    const again = await start(gateway, { ...input, gateway: { data_dir: gw!.dataDir } });
    const received = async (user: string, live: string, expected: Got[]) => {
      // Listening before CONNACK: the queued message may come in the same read.
      const c = mqtt.connect({
        host: "127.0.0.1",
        port: again,
        reconnectPeriod: 0,
        ...persistent(user),
        password: PASSWORD,
      });
      clients.push(c);
      const got = collect(c);
      let present: boolean | undefined;
      c.once("connect", (connack) => {
        present = connack.sessionPresent;
      });
      await waitFor(() => present !== undefined);
      expect(present).toBe(true);
      const pub = await mqttJs(again, { username: user === "a1" ? "a2" : "b2" });
      await pub.publishAsync(live, "live", { qos: 1 });
      await waitFor(() => got.some((g) => g.payload === "live"));
      expect(got).toEqual(expected);
    };
    await received("a1", "cmd/2", [
      { topic: "cmd/1", payload: "a-cmd", retain: false },
      { topic: "cmd/2", payload: "live", retain: false },
    ]);
    await received("b1", "cfg/2", [
      { topic: "cfg/1", payload: "b-cfg", retain: false },
      { topic: "cfg/2", payload: "live", retain: false },
    ]);
    expect(gw!.gateway.metrics.value("leafgate_mqtt_persistent_sessions")).toBe(2);
  });

  it("an export/import pair delivers exactly what the import names, under its prefix, one way", async ({
    gateway,
  }) => {
    const port = await start(
      gateway,
      await accountsConfig([{ stream: "energy.*", account: "a", prefix: "shared" }]),
    );
    const inB = await mosquittoSub(port, "mqttv5", "b2");
    const inB5 = await mqttJs(port, { username: "b2", protocolVersion: 5 });
    const got5 = collect(inB5);
    await inB5.subscribeAsync({ "#": { qos: 1 } });
    const inA = await mosquittoSub(port, "mqttv311", "a2");
    const pubA = await mqttJs(port, { username: "a1" });
    const pubB = await mqttJs(port, { username: "b1", protocolVersion: 5 });
    // energy.m1 is imported; energy.m1.x (two tokens) is not; hvac.1 is exported but not
    // imported; power.m1 is not exported.
    for (const topic of ["energy/m1", "energy/m1/x", "hvac/1", "power/m1"]) {
      await pubA.publishAsync(topic, `a:${topic}`, { qos: 1 });
    }
    // b's own energy.m2 stays in b.
    await pubB.publishAsync("energy/m2", "b:energy/m2", { qos: 1 });
    await pubA.publishAsync("end", "a", { qos: 1 });
    await pubB.publishAsync("end", "b", { qos: 1 });
    await waitFor(() => printed(inA).some((l) => l.startsWith("end|")));
    await waitFor(() => printed(inB).some((l) => l.startsWith("end|")));
    await waitFor(() => got5.some((g) => g.topic === "end"));
    expect(printed(inB)).toEqual([
      "shared/energy/m1|0|a:energy/m1",
      "energy/m2|0|b:energy/m2",
      "end|0|b",
    ]);
    expect(got5.map((g) => `${g.topic}|${g.payload}`)).toEqual([
      "shared/energy/m1|a:energy/m1",
      "energy/m2|b:energy/m2",
      "end|b",
    ]);
    expect(printed(inA)).toEqual([
      "energy/m1|0|a:energy/m1",
      "energy/m1/x|0|a:energy/m1/x",
      "hvac/1|0|a:hvac/1",
      "power/m1|0|a:power/m1",
      "end|0|a",
    ]);
  });

  it("NATS users work in their account beside its MQTT users; other accounts see nothing", async ({
    gateway,
  }) => {
    await start(gateway, await accountsConfig());
    const nats = async (user: string) => {
      const nc = await connect({
        servers: `127.0.0.1:${gw!.natsPort}`,
        reconnect: false,
        user,
        pass: PASSWORD,
      });
      const got: string[] = [];
      nc.subscribe(">", { callback: (_e, m) => void got.push(`${m.subject}=${m.string()}`) });
      await nc.flush();
      return { nc, got };
    };
    const [a1, b1, g1] = [await nats("a1"), await nats("b1"), await nats("g1")];
    const mqttA = await mqttJs(gw!.mqttPort, { clientId: "mqtt-a2", username: "a2" });
    await mqttA.publishAsync("hvac/ahu", "19", { qos: 1 });
    b1.nc.publish("hvac.ahu", "from b");
    g1.nc.publish("hvac.ahu", "from g");
    await Promise.all([b1.nc.flush(), g1.nc.flush()]);
    await waitFor(() => a1.got.length === 1 && b1.got.length === 1 && g1.got.length === 1, {
      message: () => JSON.stringify([a1.got, b1.got, g1.got]),
    });
    // A last round trip each: nothing more is on its way.
    await Promise.all([a1.nc.flush(), b1.nc.flush(), g1.nc.flush()]);
    expect([a1.got, b1.got, g1.got]).toEqual([
      ["hvac.ahu=19"],
      ["hvac.ahu=from b"],
      ["hvac.ahu=from g"],
    ]);
    await Promise.all([a1.nc.close(), b1.nc.close(), g1.nc.close()]);
  });
});
