// One subject space across protocols: the gateway's NATS endpoint (nats.js, unmodified)
// and its MQTT broker (mqtt.js 3.1.1 and 5) in one gateway, with one set of users and
// permissions, and NATS publishes forwarded to a real hub like MQTT ones. Synchronisation
// is by the protocols (flush = PING/PONG, SUBACK, PUBACK) and by polling with deadlines.
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import type { MqttClient } from "mqtt";
import { expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { cheapPasswordHash } from "../helpers/mqtt-sequence.js";
import { connectClient, streamMessages } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";

const text = (data: Uint8Array): string => Buffer.from(data).toString();

async function nats(gw: TestGateway, options: Record<string, unknown> = {}) {
  const nc = await connect({
    servers: `127.0.0.1:${gw.natsPort}`,
    reconnect: false,
    ...options,
  });
  return nc;
}

function closeAll(ncs: NatsConnection[], mqtts: MqttClient[]): Promise<unknown> {
  return Promise.all([
    ...ncs.map((nc) => (nc.isClosed() ? undefined : nc.close())),
    ...mqtts.map((c) => c.endAsync()),
  ]);
}

/** Collects MQTT messages as `topic:payload` until `n` have arrived. */
function mqttCollector(client: MqttClient) {
  const got: { topic: string; payload: string; properties: Record<string, unknown> }[] = [];
  client.on("message", (topic, payload, packet) => {
    got.push({
      topic,
      payload: payload.toString(),
      properties: (packet.properties ?? {}) as Record<string, unknown>,
    });
  });
  return got;
}

it("NATS publishes reach MQTT 3.1.1 and 5 subscribers, MQTT publishes reach NATS ones, in order", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const nc = await nats(gw);
  const v3 = await connectMqttJs(gw.mqttPort, { clientId: "x-v3" });
  const v5 = await connectMqttJs(gw.mqttPort, { clientId: "x-v5", protocolVersion: 5 });
  defer(() => closeAll([nc], [v3, v5]));
  const got3 = mqttCollector(v3);
  const got5 = mqttCollector(v5);
  await v3.subscribeAsync("sensors/+/temp", { qos: 0 });
  await v5.subscribeAsync("sensors/#", { qos: 0 });
  const natsSub = nc.subscribe("plant.>");
  await nc.flush();

  for (let i = 0; i < 20; i++) nc.publish(`sensors.s${i % 2}.temp`, `t${i}`);
  await nc.flush();
  await waitFor(() => got3.length === 20 && got5.length === 20, { message: "20 each on MQTT" });
  const expected = Array.from({ length: 20 }, (_, i) => `sensors/s${i % 2}/temp:t${i}`);
  expect(got3.map((m) => `${m.topic}:${m.payload}`)).toEqual(expected);
  expect(got5.map((m) => `${m.topic}:${m.payload}`)).toEqual(expected);

  for (let i = 0; i < 10; i++) await v3.publishAsync(`plant/line${i % 3}`, `m${i}`, { qos: 1 });
  const fromMqtt: string[] = [];
  for await (const m of natsSub) {
    fromMqtt.push(`${m.subject}:${text(m.data)}`);
    if (fromMqtt.length === 10) break;
  }
  expect(fromMqtt).toEqual(Array.from({ length: 10 }, (_, i) => `plant.line${i % 3}:m${i}`));
});

it("a NATS queue group and an MQTT shared subscription of the same name are one group", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const nc = await nats(gw);
  const v5 = await connectMqttJs(gw.mqttPort, { clientId: "x-share", protocolVersion: 5 });
  defer(() => closeAll([nc], [v5]));
  const viaMqtt = mqttCollector(v5);
  const viaNats: string[] = [];
  nc.subscribe("jobs.>", {
    queue: "workers",
    callback: (_e, m) => {
      viaNats.push(text(m.data));
    },
  });
  await nc.flush();
  await v5.subscribeAsync("$share/workers/jobs/#", { qos: 0 });
  const publisher = await nats(gw);
  defer(() => publisher.close());
  for (let i = 0; i < 30; i++) publisher.publish(`jobs.j${i}`, String(i));
  await publisher.flush();
  await waitFor(() => viaMqtt.length + viaNats.length === 30, { message: "30 jobs taken" });
  // Each job once, and turns taken: 15 each, no job in both.
  expect(viaNats.length).toBe(15);
  expect(viaMqtt.length).toBe(15);
  const all = [...viaNats, ...viaMqtt.map((m) => m.payload)].map(Number).sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: 30 }, (_, i) => i));
});

it("NATS headers become MQTT 5 user properties and MQTT 5 user properties become headers", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const nc = await nats(gw);
  const v5 = await connectMqttJs(gw.mqttPort, { clientId: "x-headers", protocolVersion: 5 });
  defer(() => closeAll([nc], [v5]));
  const got = mqttCollector(v5);
  await v5.subscribeAsync("h/from-nats", { qos: 0 });
  const h = headers();
  h.append("site", "north");
  h.append("unit", "C");
  h.append("unit", "K");
  nc.publish("h.from-nats", "21.5", { headers: h });
  await nc.flush();
  await waitFor(() => got.length === 1, { message: "the message on MQTT 5" });
  expect(got[0]!.properties.userProperties).toEqual({ site: "north", unit: ["C", "K"] });

  const sub = nc.subscribe("h.from-mqtt", { max: 1 });
  await nc.flush();
  await v5.publishAsync("h/from-mqtt", "on", {
    qos: 1,
    properties: { userProperties: { site: "south", shift: ["a", "b"] } },
  });
  for await (const m of sub) {
    expect(m.headers?.get("site")).toBe("south");
    expect(m.headers?.values("shift")).toEqual(["a", "b"]);
    expect(text(m.data)).toBe("on");
  }
});

it("a NATS request is answered by an MQTT 5 client on its response topic", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const nc = await nats(gw);
  const responder = await connectMqttJs(gw.mqttPort, {
    clientId: "x-responder",
    protocolVersion: 5,
  });
  defer(() => closeAll([nc], [responder]));
  responder.on("message", (_topic, payload, packet) => {
    const to = packet.properties?.responseTopic;
    if (to === undefined) return;
    void responder.publishAsync(to, `answer to ${payload.toString()}`, {
      qos: 0,
      properties: { correlationData: packet.properties?.correlationData ?? Buffer.alloc(0) },
    });
  });
  await responder.subscribeAsync("svc/time", { qos: 0 });
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    const reply = await nc.request("svc.time", `q${i}`, { timeout: 5_000 });
    answers.push(text(reply.data));
  }
  expect(answers).toEqual(["q0", "q1", "q2", "q3", "q4"].map((q) => `answer to ${q}`));
});

it("an MQTT 5 request is answered by a NATS service, its correlation data put back", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const service = await nats(gw);
  const requester = await connectMqttJs(gw.mqttPort, {
    clientId: "x-requester",
    protocolVersion: 5,
  });
  defer(() => closeAll([service], [requester]));
  service.subscribe("svc.echo", {
    callback: (_e, m) => {
      m.respond(`echo ${text(m.data)}`);
    },
  });
  await service.flush();
  const got = mqttCollector(requester);
  await requester.subscribeAsync("replies/x-requester", { qos: 0 });
  for (let i = 0; i < 3; i++) {
    await requester.publishAsync("svc/echo", `r${i}`, {
      qos: 1,
      properties: {
        responseTopic: "replies/x-requester",
        correlationData: Buffer.from(`corr-${i}`),
      },
    });
  }
  await waitFor(() => got.length === 3, { message: "3 answers" });
  const answers = got.map((m) => ({
    topic: m.topic,
    payload: m.payload,
    correlation: Buffer.from(m.properties.correlationData as Buffer).toString(),
  }));
  expect(answers).toEqual(
    [0, 1, 2].map((i) => ({
      topic: "replies/x-requester",
      payload: `echo r${i}`,
      correlation: `corr-${i}`,
    })),
  );
  expect(gw.gateway.status().requests).toMatchObject({ minted: 3, answered: 3, routes: 0 });
});

it("users and permissions apply to NATS clients as to MQTT ones", async ({ gateway, defer }) => {
  const gw = await gateway.start({
    authorization: {
      users: [
        {
          user: "meter",
          password: cheapPasswordHash("meter-pw"),
          permissions: {
            publish: { allow: ["meters.%u.>"] },
            subscribe: { allow: ["cmd.%u.>"] },
          },
        },
        { user: "ops", password: cheapPasswordHash("ops-pw") },
      ],
    },
  });
  // Refused: no credentials (anonymous is off once users exist), a wrong password.
  await expect(nats(gw)).rejects.toThrow(/Authorization Violation/);
  await expect(nats(gw, { user: "meter", pass: "wrong" })).rejects.toThrow(
    /Authorization Violation/,
  );
  const meter = await nats(gw, { user: "meter", pass: "meter-pw" });
  const ops = await nats(gw, { user: "ops", pass: "ops-pw" });
  const mqttOps = await connectMqttJs(gw.mqttPort, {
    clientId: "x-ops",
    username: "ops",
    password: "ops-pw",
  });
  defer(() => closeAll([meter, ops], [mqttOps]));
  const seen: string[] = [];
  ops.subscribe(">", {
    callback: (_e, m) => {
      seen.push(`${m.subject}:${text(m.data)}`);
    },
  });
  await ops.flush();

  const errors: string[] = [];
  void (async () => {
    for await (const s of meter.status()) {
      if (s.type === "error") errors.push(String((s as { error?: unknown }).error));
    }
  })();
  meter.publish("meters.meter.kwh", "1");
  meter.publish("other.kwh", "2");
  meter.publish("meters.meter.kwh", "3");
  await meter.flush();
  // A denied subscription: nats.js hands the error to the subscription.
  const denied = meter.subscribe("meters.>");
  const closedWith = await denied.closed.then(
    (err) => (err instanceof Error ? err.message : "closed without an error"),
    (err: Error) => err.message,
  );
  expect(closedWith).toMatch(/Permissions Violation for Subscription to "meters\.>"/);
  await ops.flush();
  await waitFor(() => seen.length === 2, { message: "the allowed publishes" });
  expect(seen).toEqual(["meters.meter.kwh:1", "meters.meter.kwh:3"]);
  expect(errors.some((e) => /Permissions Violation for Publish to "other\.kwh"/.test(e))).toBe(
    true,
  );
  // The connection stayed open through both refusals.
  expect(meter.isClosed()).toBe(false);
  const render = gw.gateway.metrics.render();
  expect(render).toMatch(/leafgate_nats_auth_failures_total\{refusal="anonymous-disabled"\} 1/);
  expect(render).toMatch(/leafgate_nats_auth_failures_total\{refusal="bad-credentials"\} 1/);
  expect(render).toMatch(/leafgate_nats_permission_denied_total\{kind="publish"\} 1/);
  expect(render).toMatch(/leafgate_nats_permission_denied_total\{kind="subscribe"\} 1/);
});

it("token auth gives the default permissions", async ({ gateway, defer }) => {
  const gw = await gateway.start({
    authorization: {
      token: cheapPasswordHash("s3cret-token"),
      default_permissions: { publish: { allow: ["dash.>"] } },
    },
  });
  await expect(nats(gw, { token: "nope" })).rejects.toThrow(/Authorization Violation/);
  await expect(nats(gw)).rejects.toThrow(/Authorization Violation/);
  const nc = await nats(gw, { token: "s3cret-token" });
  defer(() => nc.close());
  const sub = nc.subscribe("dash.x", { max: 1 });
  nc.publish("dash.x", "ok");
  for await (const m of sub) expect(text(m.data)).toBe("ok");
});

it("NATS publishes on exported subjects are buffered while the hub is away and forwarded in order, once", async ({
  hub,
  stream,
  gateway,
  defer,
}) => {
  // Killed, not stopped: its store (and the stream) stays for the restart.
  await hub.kill();
  const gw = await gateway.start({ upstream: { servers: [hub.url], stream } });
  const local = await nats(gw);
  defer(() => local.close());
  for (let i = 0; i < 50; i++) local.publish(`meters.m${i % 5}`, `v${i}`);
  await local.flush();
  await waitFor(() => gw.gateway.status().outbox.pending === 50, { message: "50 buffered" });
  await hub.restart();
  await waitFor(() => gw.gateway.status().outbox.pending === 0, {
    message: () => `the buffer drained to the hub: ${JSON.stringify(gw.gateway.status())}`,
    timeoutMs: 30_000,
  });
  // A client of its own: the fixture's may still be reconnecting after the kill.
  const reader = await connectClient(hub.url);
  const stored = await streamMessages(reader, stream);
  expect(stored.map((m) => `${m.subject}:${text(m.data)}`)).toEqual(
    Array.from({ length: 50 }, (_, i) => `edge.gw1.meters.m${i % 5}:v${i}`),
  );
});

it("a request nobody serves gets no-responders at once, though the outbox takes every subject", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start({ upstream: { export: [">"] } });
  const nc = await nats(gw);
  defer(() => nc.close());
  const started = Date.now();
  await expect(nc.request("nobody.home", "?", { timeout: 5_000 })).rejects.toThrow(
    /no responders/i,
  );
  expect(Date.now() - started).toBeLessThan(5_000);
  // Answered as undeliverable, so not stored either: the requester already knows.
  expect(gw.gateway.status().outbox.pending).toBe(0);
});

it("imported subjects are the hub's to write: a local NATS client is refused there", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start();
  const nc = await nats(gw);
  const watcher = await nats(gw);
  defer(() => Promise.all([nc.close(), watcher.close()]));
  const seen: string[] = [];
  watcher.subscribe("cmd.>", { callback: (_e, m) => void seen.push(m.subject) });
  await watcher.flush();
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") errors.push(String((s as { error?: unknown }).error));
    }
  })();
  nc.publish("cmd.gw1.valve.open", "forged");
  nc.publish("cmd.other-gw.valve", "not imported here");
  await nc.flush();
  await watcher.flush();
  await waitFor(() => seen.length === 1, { message: "the publish outside the import" });
  expect(seen).toEqual(["cmd.other-gw.valve"]);
  await waitFor(() => errors.length === 1, { message: "the permissions error" });
  expect(errors[0]).toMatch(/Permissions Violation for Publish to "cmd\.gw1\.valve\.open"/);
});

it("$SYS is the gateway's: MQTT 5 and NATS clients allowed everything are refused there", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.start({ sys: { interval: 0 } });
  const nc = await nats(gw);
  const watcher = await nats(gw);
  const mqttWatcher = await connectMqttJs(gw.mqttPort);
  const forger = await connectMqttJs(gw.mqttPort, { protocolVersion: 5 });
  defer(() => closeAll([nc, watcher], [mqttWatcher, forger]));
  const seen: string[] = [];
  watcher.subscribe(">", { callback: (_e, m) => void seen.push(m.subject) });
  await watcher.flush();
  const mqttSeen = mqttCollector(mqttWatcher);
  await mqttWatcher.subscribeAsync(["$SYS/#", "fence/#"], { qos: 1 });
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error") errors.push(String((s as { error?: unknown }).error));
    }
  })();

  nc.publish("$SYS.leafgate.gw1.uptime", "999999");
  await nc.flush();
  // PUBACK 0x87, Not authorized.
  await expect(
    forger.publishAsync("$SYS/leafgate/gw1/uptime", "999999", { qos: 1 }),
  ).rejects.toMatchObject({ code: 0x87 });
  // A fence from each, after the forgeries: once it arrives, nothing else will.
  nc.publish("fence.nats", "f");
  await forger.publishAsync("fence/mqtt", "f", { qos: 1 });
  await waitFor(() => seen.length === 2 && mqttSeen.length === 2, { message: "the fences" });
  expect(seen).toEqual(["fence.nats", "fence.mqtt"]);
  expect(mqttSeen.map((m) => m.topic)).toEqual(["fence/nats", "fence/mqtt"]);
  await waitFor(() => errors.length === 1, { message: "the permissions error" });
  expect(errors[0]).toMatch(/Permissions Violation for Publish to "\$SYS\.leafgate\.gw1\.uptime"/);
  expect(gw.gateway.metrics.value("leafgate_mqtt_denied_total", { kind: "publish" })).toBe(1);
});
