// A session belongs to the user who made it (issue 10, finding 2): another user (or an
// anonymous client) naming its client id is refused, and the owner keeps its connection
// and its session; a resumed session's subscriptions are checked again against the
// user's permissions of the day.
import type { MqttClient } from "mqtt";
import { afterEach, describe, expect } from "vitest";
import { hashPassword } from "../../src/mqtt/index.js";
import type { GatewayConfigInput, PermissionsInput } from "../helpers/config.js";
import { type GatewayLauncher, it } from "../helpers/fixtures.js";
import type { TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { closeRawClients, RawMqtt } from "../helpers/raw-mqtt.js";
import { waitFor } from "../helpers/wait.js";

/** MQTT 5 CONNACK Not authorized; MQTT 3.1.1 return code 5. */
const NOT_AUTHORIZED_V5 = 0x87;
const NOT_AUTHORIZED_V3 = 5;

describe("sessions belong to their user", () => {
  let gw: TestGateway | undefined;
  const clients: MqttClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true);
    await closeRawClients();
    gw = undefined;
  });

  /** alice and bob, passwords pw-alice and pw-bob; alice's permissions if given. */
  async function users(
    alicePermissions?: PermissionsInput,
  ): Promise<GatewayConfigInput["authorization"]> {
    const alice = await hashPassword("pw-alice");
    const bob = await hashPassword("pw-bob");
    return {
      users: [
        {
          user: "alice",
          password: alice,
          ...(alicePermissions && { permissions: alicePermissions }),
        },
        { user: "bob", password: bob },
      ],
    };
  }

  async function start(
    gateway: GatewayLauncher,
    mqtt: GatewayConfigInput["mqtt"] = {},
  ): Promise<TestGateway> {
    // Both may do everything: the refusal is about whose session it is, not about topics.
    gw = await gateway.start({ mqtt, authorization: await users() });
    return gw;
  }

  async function watcher(port: number): Promise<MqttClient> {
    const c = await connectMqttJs(port, { username: "bob", password: "pw-bob" });
    clients.push(c);
    return c;
  }

  const text = (p: { payload: Buffer | string }) => p.payload.toString();
  const persistent = (clientId: string, user: string, clean = false) => ({
    clientId,
    clean,
    username: user,
    password: Buffer.from(`pw-${user}`),
    properties: { sessionExpiryInterval: 3600 },
  });

  it("v5: another user naming the client id is refused with 0x87; the owner stays connected and keeps its session", async ({
    gateway,
  }) => {
    await start(gateway);
    const port = gw!.mqttPort;
    const a = await RawMqtt.connect(port, persistent("shared-id", "alice"));
    expect(a.connack.reasonCode).toBe(0);
    await a.client.subscribe(1, [{ topic: "plant/alice/#", qos: 1 }]);

    // Resuming (clean start 0) and replacing (clean start 1) are both refused.
    for (const clean of [false, true]) {
      const b = await RawMqtt.connect(port, persistent("shared-id", "bob", clean));
      expect([b.connack.reasonCode, b.connack.sessionPresent]).toEqual([NOT_AUTHORIZED_V5, false]);
      await b.client.closedByServer();
      expect(b.client.all("publish")).toEqual([]);
    }

    // Alice was not disconnected and still gets what her subscription matches.
    const pub = await watcher(port);
    await pub.publishAsync("plant/alice/t", "one", { qos: 1 });
    const one = await a.client.next("publish");
    expect(text(one)).toBe("one");
    a.client.send({ cmd: "puback", messageId: one.messageId! });
    expect(a.client.isClosed).toBe(false);
    expect(a.client.all("disconnect")).toEqual([]);

    // Offline, the session is still hers: queued messages wait for her, not for Bob.
    a.client.send({ cmd: "disconnect", reasonCode: 0 });
    await a.client.closed;
    await pub.publishAsync("plant/alice/t", "queued", { qos: 1 });
    const b = await RawMqtt.connect(port, persistent("shared-id", "bob"));
    expect(b.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await b.client.closedByServer();
    expect(b.client.all("publish")).toEqual([]);
    const again = await RawMqtt.connect(port, persistent("shared-id", "alice"));
    expect([again.connack.reasonCode, again.connack.sessionPresent]).toEqual([0, true]);
    expect(text(await again.client.next("publish"))).toBe("queued");
    expect(gw!.gateway.metrics.value("leafgate_mqtt_auth_failures_total", { code: "5" })).toBe(3);
  });

  it("3.1.1 (mqtt.js): another user resuming a kept session gets return code 5", async ({
    gateway,
  }) => {
    await start(gateway);
    const port = gw!.mqttPort;
    const alice = await connectMqttJs(port, {
      clientId: "mqttjs-shared",
      clean: false,
      username: "alice",
      password: "pw-alice",
    });
    clients.push(alice);
    await alice.subscribeAsync({ "plant/alice/#": { qos: 1 } });
    const got: string[] = [];
    alice.on("message", (_t, payload) => got.push(payload.toString()));

    const refused = await connectMqttJs(port, {
      clientId: "mqttjs-shared",
      clean: false,
      username: "bob",
      password: "pw-bob",
      reconnectPeriod: 0,
    }).then(
      (c) => {
        clients.push(c);
        return undefined;
      },
      (err: { code?: number }) => err.code,
    );
    expect(refused).toBe(NOT_AUTHORIZED_V3);

    const pub = await watcher(port);
    await pub.publishAsync("plant/alice/x", "still-hers", { qos: 1 });
    await waitFor(() => got.length === 1);
    expect(got).toEqual(["still-hers"]);
    expect(alice.connected).toBe(true);
  });

  it("anonymous is its own owner: neither a user nor anonymous takes the other's session", async ({
    gateway,
  }) => {
    await start(gateway, { allow_anonymous: true });
    const port = gw!.mqttPort;
    const anon = await RawMqtt.connect(port, {
      clientId: "anon-1",
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    await anon.client.subscribe(1, [{ topic: "plant/anon/#", qos: 1 }]);
    anon.client.send({ cmd: "disconnect", reasonCode: 0 });
    await anon.client.closed;

    const asAlice = await RawMqtt.connect(port, persistent("anon-1", "alice"));
    expect(asAlice.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await asAlice.client.closedByServer();
    const anonAgain = await RawMqtt.connect(port, {
      clientId: "anon-1",
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    expect([anonAgain.connack.reasonCode, anonAgain.connack.sessionPresent]).toEqual([0, true]);

    const a = await RawMqtt.connect(port, persistent("alice-1", "alice"));
    expect(a.connack.reasonCode).toBe(0);
    const anonAsAlice = await RawMqtt.connect(port, {
      clientId: "alice-1",
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
    });
    expect(anonAsAlice.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await anonAsAlice.client.closedByServer();
    expect(a.client.isClosed).toBe(false);
  });

  it("the owner survives a restart; resumed subscriptions and queued messages are checked against today's permissions", async ({
    gateway,
  }) => {
    const aliceSubscribes = (pattern: string) => ({
      publish: { allow: [">"] },
      subscribe: { allow: [pattern] },
    });
    gw = await gateway.start({ authorization: await users(aliceSubscribes("plant.>")) });
    const pub1 = await watcher(gw.mqttPort);
    const a = await RawMqtt.connect(gw.mqttPort, persistent("alice-r", "alice"));
    const suback = await a.client.subscribe(1, [
      { topic: "plant/#", qos: 1 },
      { topic: "plant/a/#", qos: 1 },
    ]);
    expect(suback.granted).toEqual([1, 1]);
    a.client.send({ cmd: "disconnect", reasonCode: 0 });
    await a.client.closed;
    // Queued for the offline session: one under each subscription.
    await pub1.publishAsync("plant/b/q", "b-queued", { qos: 1 });
    await pub1.publishAsync("plant/a/q", "a-queued", { qos: 1 });
    pub1.end(true);
    await gw.stop();

    // Next run, on the same data: Alice may only subscribe under plant.a.>.
    const { gateway: again, mqttPort: port } = await gateway.start({
      gateway: { data_dir: gw.dataDir },
      authorization: await users(aliceSubscribes("plant.a.>")),
    });

    // Bob cannot take it after the restart either: the owner was stored.
    const b = await RawMqtt.connect(port, persistent("alice-r", "bob"));
    expect(b.connack.reasonCode).toBe(NOT_AUTHORIZED_V5);
    await b.client.closedByServer();

    const resumed = await RawMqtt.connect(port, persistent("alice-r", "alice"));
    expect([resumed.connack.reasonCode, resumed.connack.sessionPresent]).toEqual([0, true]);
    const pub2 = await watcher(port);
    await pub2.publishAsync("plant/b/x", "b-live", { qos: 1 });
    await pub2.publishAsync("plant/a/x", "a-live", { qos: 1 });
    const seen: string[] = [];
    for (;;) {
      const p = await resumed.client.next("publish");
      seen.push(text(p));
      if (p.qos > 0) resumed.client.send({ cmd: "puback", messageId: p.messageId! });
      if (text(p) === "a-live") break;
    }
    expect(seen).toEqual(["a-queued", "a-live"]);
    // plant/# is no longer allowed: gone, with the message queued under it alone.
    expect(again.metrics.value("leafgate_mqtt_denied_total", { kind: "subscribe" })).toBe(1);
    expect(
      again.metrics.value("leafgate_mqtt_messages_dropped_total", { reason: "not-authorized" }),
    ).toBe(1);
  });
});
