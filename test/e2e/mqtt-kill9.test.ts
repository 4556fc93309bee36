// MQTT state across `kill -9`, not a graceful stop: the bundle as a child process, SIGKILLed
// at a moment an event chooses, then started again on the same data dir.
//
// Two ways to choose the moment:
// - From the client's ack callback (PUBACK, PUBREC, PUBREL, SUBACK, UNSUBACK, CONNACK):
//   what the client was told must be on disk.
// - At the gateway's next commit (test/helpers/stop-at-commit.ts: strace stops the process
//   on entering its next SQLite write, before it happens). This is what catches a lazy
//   commit by construction: killed from the client's callback, a commit left for the next
//   turn of the event loop has mostly happened already (the kill takes milliseconds to
//   arrive, the next turn microseconds), so such a test fails only now and then. Stopped
//   at the commit, every packet written before it is on the wire and the commit is not
//   done: a packet that depends on it must not be out.
//
// What is proven, at both protocol levels unless said:
// 1. A retained message and a retained clear, each PUBACKed, survive (paho subscribers).
// 2. Outbound QoS 1/2 sent and not acknowledged are resent after a restart with DUP=1 and
//    their packet ids, PUBREL where PUBREC came [MQTT-4.4.0-1]; a QoS 2 PUBREL or PUBLISH
//    is never on the wire before the state behind it is on disk, so no message reaches a
//    client twice.
// 3. MQTT 5 delayed wills: published once when due across kill -9s; published at the
//    restart when its session ended while the gateway was down; a will cancelled by a
//    resume before the crash does not come back.
// 4. Queued QoS 1/2 of an offline session come back once each, in order; an inbound QoS 2
//    PUBRECed before the kill is completed by PUBREL and stored once, even when the client
//    resends the PUBLISH first.
// 5. A SUBACKed subscription and an UNSUBACKed unsubscribe survive; session expiry holds.
import type { MqttClient } from "mqtt";
import type { IConnectPacket, IPublishPacket, Packet } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ChildGateway,
  type GatewayConfigInput,
  startGatewayProcess,
  writeConfig,
} from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { messages, msg, type Protocol, run } from "../helpers/paho.js";
import { stopAll } from "../helpers/procs.js";
import { closeRawClients, type ProtocolLevel, RawMqtt } from "../helpers/raw-mqtt.js";
import { stopAtNextCommit } from "../helpers/stop-at-commit.js";
import { type TempDir, waitFor } from "../helpers/wait.js";

/** MQTT 5 Session Expiry Interval of the persistent sessions here (seconds): outlives a test. */
const SESSION_EXPIRY_S = 300;
/** MQTT 5 Will Delay Interval (seconds): long enough to kill and restart before it is due. */
const WILL_DELAY_S = 2;
/** Session expiry of the expiry test (seconds): the test waits it out. */
const SHORT_EXPIRY_S = 2;
/** A will or an expiry is due within its interval plus a restart on a loaded machine. */
const DUE_TIMEOUT_MS = 15_000;

const dirs: TempDir[] = [];
const mqttJs: MqttClient[] = [];

afterEach(async () => {
  await closeRawClients();
  await Promise.all(mqttJs.splice(0).map((c) => c.endAsync(true).catch(() => {})));
  await stopAll();
  await Promise.all(dirs.splice(0).map((d) => d.cleanup()));
});

function config(mqtt?: GatewayConfigInput["mqtt"]): string {
  const { dir, file } = writeConfig({ mqtt });
  dirs.push(dir);
  return file;
}

/** Waits for the SIGKILL sent a moment ago to end the process. */
async function killed(gw: ChildGateway): Promise<void> {
  expect(await gw.proc.exited).toEqual({ code: null, signal: "SIGKILL" });
}

async function kill9(gw: ChildGateway): Promise<void> {
  gw.proc.child.kill("SIGKILL");
  await killed(gw);
}

/** mqtt.js; a connection the kill cuts must not become an unhandled "error" event. */
async function mqttJsClient(port: number, version: ProtocolLevel): Promise<MqttClient> {
  const client = await connectMqttJs(port, { protocolVersion: version });
  client.on("error", () => {});
  mqttJs.push(client);
  return client;
}

/** CONNECT fields of a persistent session: 3.1.1 clean session 0, MQTT 5 an expiry. */
function persistent(
  clientId: string,
  version: ProtocolLevel,
  clean = false,
  extra: Partial<IConnectPacket> = {},
): Partial<IConnectPacket> {
  return version === 5
    ? {
        clientId,
        protocolVersion: 5,
        clean,
        ...extra,
        properties: { sessionExpiryInterval: SESSION_EXPIRY_S, ...extra.properties },
      }
    : { clientId, protocolVersion: 4, clean, ...extra };
}

/** A new persistent session (3.1.1 cannot say "clean" and keep it: ids are unique here). */
function fresh(clientId: string, version: ProtocolLevel): Partial<IConnectPacket> {
  return persistent(clientId, version, version === 5);
}

const text = (p: IPublishPacket): string => Buffer.from(p.payload as Buffer).toString();

/** One line per packet, e.g. `publish q2 #3 dup k9/t m1`, `pubrel #3`, `connack sp`. */
function brief(p: Packet): string {
  switch (p.cmd) {
    case "connack":
      return p.sessionPresent ? "connack sp" : "connack";
    case "publish":
      return [
        `publish q${p.qos}`,
        ...(p.qos > 0 ? [`#${p.messageId}`] : []),
        ...(p.dup ? ["dup"] : []),
        ...(p.retain ? ["retain"] : []),
        p.topic,
        text(p),
      ].join(" ");
    case "puback":
    case "pubrec":
    case "pubrel":
    case "pubcomp":
    case "suback":
    case "unsuback":
      return `${p.cmd} #${p.messageId}`;
    default:
      return p.cmd;
  }
}

/**
 * What a QoS 2 receiver that delivers on PUBLISH and holds the id until PUBREL (the
 * spec's Method B, section 4.3.3) hands its application, over every connection of one
 * client: a second copy is a duplicate delivery. QoS 1 copies all count.
 */
function delivered(packets: readonly Packet[]): string[] {
  const held = new Set<number>();
  const out: string[] = [];
  for (const p of packets) {
    if (p.cmd === "pubrel") held.delete(p.messageId!);
    if (p.cmd !== "publish") continue;
    if (p.qos === 2) {
      if (held.has(p.messageId!)) continue;
      held.add(p.messageId!);
    }
    out.push(text(p));
  }
  return out;
}

/** Runs a QoS 2 exchange to its end from the receiving side: PUBREC, then PUBCOMP. */
async function complete(client: RawMqtt, messageId: number): Promise<void> {
  client.send({ cmd: "pubrec", messageId });
  await client.next("pubrel", (p) => p.messageId === messageId);
  client.send({ cmd: "pubcomp", messageId });
}

/** `brief` without the packet id, which is the gateway's to choose. */
const withoutId = (p: Packet): string => brief(p).replace(/ #\d+/, "");

/** Acknowledges a PUBLISH as a receiver does: PUBACK, or the whole QoS 2 exchange. */
async function acknowledge(client: RawMqtt, p: IPublishPacket): Promise<void> {
  if (p.qos === 1) client.send({ cmd: "puback", messageId: p.messageId });
  if (p.qos === 2) await complete(client, p.messageId!);
}

/**
 * Publishes a QoS 1 fence from another client and waits for `client` to get it: what
 * `client` was owed from before is in front of it.
 */
async function fence(gw: ChildGateway, client: RawMqtt, topic: string): Promise<void> {
  const pub = await mqttJsClient(gw.mqttPort, client.version);
  await pub.publishAsync(topic, "fence", { qos: 1 });
  const p = await client.next("publish", (m) => m.topic === topic);
  await acknowledge(client, p);
}

/**
 * Returns once what `client` sent so far is committed: its PINGRESP shows the gateway read
 * it (so a batched commit of it is queued), then `publishQos1` is acknowledged only after
 * a commit queued later, which runs after. The next commit is then the test's own.
 */
async function settled(client: RawMqtt, publishQos1: () => Promise<unknown>): Promise<void> {
  client.send({ cmd: "pingreq" });
  await client.next("pingresp");
  await publishQos1();
}

async function status(gw: ChildGateway): Promise<{ outbox: { pending: number } }> {
  return (await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as {
    outbox: { pending: number };
  };
}

async function metric(gw: ChildGateway, name: string): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)$`, "m").exec(body);
  if (match === null) throw new Error(`no ${name} in /metrics`);
  return Number(match[1]);
}

/** Once the gateway has seen every connection go (so it has read what they sent). */
async function noConnections(gw: ChildGateway): Promise<void> {
  await waitFor(async () => (await metric(gw, "leafgate_mqtt_connections")) === 0, {
    message: "connections still open",
  });
}

/** Reconnects to a persistent session, which must be there (Session Present). */
async function resume(
  gw: ChildGateway,
  clientId: string,
  version: ProtocolLevel,
): Promise<RawMqtt> {
  const { client, connack } = await RawMqtt.connect(
    gw.mqttPort,
    persistent(clientId, version),
    version,
  );
  expect(connack.sessionPresent).toBe(true);
  return client;
}

describe.each([
  ["3.1.1", 4],
  ["5", 5],
] as const)("MQTT %s", (_, version) => {
  /** Topics of this level, so that the two runs never meet. */
  const t = (path: string): string => `k9/${version}/${path}`;
  /** paho's messages: MQTT 5 ones carry an (empty) property set. */
  const m = (topic: string, payload: string, qos: number, retain = false) =>
    msg(topic, payload, qos, { retain, props: version === 5 ? {} : null });

  it("a retained message and a retained clear survive kill -9 from the PUBACK callback", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const valve = t("r/valve");
    const fence = t("r/fence");
    const publishRetained = async (topic: string, payload: string, kill: boolean) => {
      const pub = await mqttJsClient(gw.mqttPort, version);
      const target = gw;
      await new Promise<void>((resolve, reject) =>
        pub.publish(topic, payload, { qos: 1, retain: true }, (err) => {
          // In the PUBACK callback itself: nothing may be left to commit.
          if (kill) target.proc.child.kill("SIGKILL");
          if (err) reject(err);
          else resolve();
        }),
      );
      if (kill) await killed(target);
    };
    // Retained messages follow the SUBACK filter by filter, in the order subscribed: the
    // fence's comes after the valve's, if there is one.
    const subscriber = {
      protocol: version as Protocol,
      subscribe: [
        [valve, 1],
        [fence, 1],
      ] as [string, number][],
    };

    await publishRetained(fence, "fence", false);
    await publishRetained(valve, "open", true);
    gw = await startGatewayProcess(file);
    const first = await run({ port: gw.mqttPort, ...subscriber, expect: 2 });
    expect(messages(first)).toEqual([m(valve, "open", 1, true), m(fence, "fence", 1, true)]);

    // An empty payload clears the topic [MQTT-3.3.1-10]: gone for good once PUBACKed.
    await publishRetained(valve, "", true);
    gw = await startGatewayProcess(file);
    const second = await run({ port: gw.mqttPort, ...subscriber, expect: 1 });
    expect(messages(second)).toEqual([m(fence, "fence", 1, true)]);
  });

  it("resends QoS 1 and 2 in flight with DUP=1 and their packet ids, PUBREL where PUBREC came, after kill -9 from the PUBREL", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const id = `k9-inflight-${version}`;
    const s = (await RawMqtt.connect(gw.mqttPort, fresh(id, version), version)).client;
    await s.subscribe(1, [{ topic: t("d/#"), qos: 2 }]);
    const pub = await mqttJsClient(gw.mqttPort, version);
    await pub.publishAsync(t("d/x"), "m1", { qos: 1 });
    await pub.publishAsync(t("d/x"), "m2", { qos: 2 });
    await pub.publishAsync(t("d/x"), "m3", { qos: 2 });
    const [a, b, c] = [await s.next("publish"), await s.next("publish"), await s.next("publish")];
    expect([a, b, c].map(brief)).toEqual([
      `publish q1 #${a.messageId} ${t("d/x")} m1`,
      `publish q2 #${b.messageId} ${t("d/x")} m2`,
      `publish q2 #${c.messageId} ${t("d/x")} m3`,
    ]);
    s.send({ cmd: "pubrec", messageId: c.messageId });
    await s.next("pubrel", (p) => p.messageId === c.messageId);
    await kill9(gw);
    await s.closed;

    gw = await startGatewayProcess(file);
    const again = await resume(gw, id, version);
    await again.next("pubrel");
    // In the order first sent [MQTT-4.6.0-1], same ids, DUP=1 [MQTT-3.3.1-1]; m3 was
    // PUBRECed, so it is PUBREL that is owed, never the PUBLISH again [MQTT-4.3.3-1].
    expect(again.packets.map(brief)).toEqual([
      "connack sp",
      `publish q1 #${a.messageId} dup ${t("d/x")} m1`,
      `publish q2 #${b.messageId} dup ${t("d/x")} m2`,
      `pubrel #${c.messageId}`,
    ]);
    again.send({ cmd: "puback", messageId: a.messageId });
    await complete(again, b.messageId!);
    again.send({ cmd: "pubcomp", messageId: c.messageId });
    const pub2 = await mqttJsClient(gw.mqttPort, version);
    await pub2.publishAsync(t("d/x"), "m4", { qos: 2 });
    const d = await again.next("publish", (p) => text(p) === "m4");
    await complete(again, d.messageId!);
    // QoS 1 m1 came again (it was never PUBACKed); each QoS 2 message reached the
    // application once.
    expect(delivered([...s.packets, ...again.packets])).toEqual(["m1", "m2", "m3", "m1", "m4"]);
  });

  it("does not send PUBREL before the PUBREC it answers is on disk (stopped at that commit, then kill -9)", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const id = `k9-pubrel-${version}`;
    const s = (await RawMqtt.connect(gw.mqttPort, fresh(id, version), version)).client;
    await s.subscribe(1, [{ topic: t("p/#"), qos: 2 }]);
    const pub = await mqttJsClient(gw.mqttPort, version);
    await pub.publishAsync(t("p/x"), "m", { qos: 2 });
    const p = await s.next("publish");

    const stop = await stopAtNextCommit(gw.proc);
    s.send({ cmd: "pubrec", messageId: p.messageId });
    await stop.stopped();
    await kill9(gw);
    // Everything the gateway wrote before the kill has been read once the socket closes.
    await s.closed;
    expect(s.packets.map(brief)).toEqual([
      "connack",
      "suback #1",
      `publish q2 #${p.messageId} ${t("p/x")} m`,
    ]);

    gw = await startGatewayProcess(file);
    const again = await resume(gw, id, version);
    const resent = await again.next("publish");
    // The PUBREC never reached the disk: the PUBLISH is owed again, as the client expects
    // (it never saw PUBREL), and completes once.
    expect(brief(resent)).toBe(`publish q2 #${p.messageId} dup ${t("p/x")} m`);
    await complete(again, resent.messageId!);
    expect(delivered([...s.packets, ...again.packets])).toEqual(["m"]);
  });

  it("does not send a PUBLISH before its packet id is on disk: a QoS 2 message reaches the subscriber once (stopped at the commit, then kill -9)", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const sid = `k9-live-s-${version}`;
    const pid = `k9-live-p-${version}`;
    const s = (await RawMqtt.connect(gw.mqttPort, fresh(sid, version), version)).client;
    await s.subscribe(1, [{ topic: t("l/#"), qos: 2 }]);
    const p = (await RawMqtt.connect(gw.mqttPort, fresh(pid, version), version)).client;
    // Packet ids the session uses, then frees, before the kill: a restart that lost the
    // last one would hand the same message a new id, which the client takes as new.
    p.send({
      cmd: "publish",
      topic: t("l/x"),
      payload: "held",
      qos: 2,
      messageId: 1,
      dup: false,
      retain: false,
    });
    await p.next("pubrec");
    p.send({ cmd: "pubrel", messageId: 1 });
    await p.next("pubcomp");
    p.send({
      cmd: "publish",
      topic: t("l/x"),
      payload: "acked",
      qos: 1,
      messageId: 2,
      dup: false,
      retain: false,
    });
    await p.next("puback");
    const held = await s.next("publish");
    const acked = await s.next("publish");
    s.send({ cmd: "puback", messageId: acked.messageId });
    await settled(s, async () => {
      p.send({
        cmd: "publish",
        topic: t("sync"),
        payload: "s",
        qos: 1,
        messageId: 3,
        dup: false,
        retain: false,
      });
      await p.next("puback");
    });

    const stop = await stopAtNextCommit(gw.proc);
    p.send({
      cmd: "publish",
      topic: t("l/x"),
      payload: "m",
      qos: 2,
      messageId: 4,
      dup: false,
      retain: false,
    });
    await stop.stopped();
    await kill9(gw);
    await Promise.all([s.closed, p.closed]);
    // Not committed: neither the publisher (no PUBREC) nor the subscriber saw it.
    expect(p.all("pubrec").map(brief)).toEqual(["pubrec #1"]);
    expect(s.packets.map(brief)).toEqual([
      "connack",
      "suback #1",
      `publish q2 #${held.messageId} ${t("l/x")} held`,
      `publish q1 #${acked.messageId} ${t("l/x")} acked`,
      "pingresp",
    ]);

    gw = await startGatewayProcess(file);
    const s2 = await resume(gw, sid, version);
    const heldAgain = await s2.next("publish");
    expect(brief(heldAgain)).toBe(`publish q2 #${held.messageId} dup ${t("l/x")} held`);
    await complete(s2, heldAgain.messageId!);
    // The publisher never got PUBREC: it sends the message again, DUP set [MQTT-4.3.2-1].
    const p2 = await resume(gw, pid, version);
    p2.send({
      cmd: "publish",
      topic: t("l/x"),
      payload: "m",
      qos: 2,
      messageId: 4,
      dup: true,
      retain: false,
    });
    await p2.next("pubrec");
    p2.send({ cmd: "pubrel", messageId: 4 });
    await p2.next("pubcomp");
    const fresh2 = await s2.next("publish");
    expect(fresh2).toMatchObject({ qos: 2, dup: false });
    expect(text(fresh2)).toBe("m");
    await complete(s2, fresh2.messageId!);
    expect(delivered([...s.packets, ...s2.packets])).toEqual(["held", "acked", "m"]);
  });

  it("keeps queued QoS 1 and 2 messages PUBACKed/PUBRECed before kill -9 and delivers each once, in order", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const session = {
      protocol: version as Protocol,
      client_id: `k9-queue-${version}`,
      clean: false,
      ...(version === 5 ? { connect_props: { SessionExpiryInterval: SESSION_EXPIRY_S } } : {}),
    };
    await run({ port: gw.mqttPort, ...session, subscribe: [[t("q/#"), 2]] });
    const p = (await RawMqtt.connect(gw.mqttPort, { protocolVersion: version }, version)).client;
    const publish = (messageId: number, payload: string, qos: 1 | 2): void =>
      p.send({
        cmd: "publish",
        topic: t("q/x"),
        payload,
        qos,
        messageId,
        dup: false,
        retain: false,
      });
    publish(1, "a", 1);
    await p.next("puback");
    publish(2, "b", 2);
    await p.next("pubrec");
    p.send({ cmd: "pubrel", messageId: 2 });
    await p.next("pubcomp");
    publish(3, "c", 1);
    await p.next("puback");
    publish(4, "d", 2);
    await p.next("pubrec");
    await kill9(gw);

    gw = await startGatewayProcess(file);
    const s = await resume(gw, `k9-queue-${version}`, version);
    const queued = [];
    for (const payload of ["a", "b", "c", "d"]) {
      const p = await s.next("publish");
      expect(text(p)).toBe(payload);
      queued.push(p);
      await acknowledge(s, p);
    }
    // Sent in the order accepted [MQTT-4.6.0-6], each the first time (no DUP).
    expect(queued.map(withoutId)).toEqual([
      `publish q1 ${t("q/x")} a`,
      `publish q2 ${t("q/x")} b`,
      `publish q1 ${t("q/x")} c`,
      `publish q2 ${t("q/x")} d`,
    ]);
    await fence(gw, s, t("q/fence"));
    expect(delivered(s.packets)).toEqual(["a", "b", "c", "d", "fence"]);
  });

  it("completes an inbound QoS 2 PUBRECed before kill -9: a resent PUBLISH is not stored again, PUBREL gets PUBCOMP", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const session = {
      protocol: version as Protocol,
      client_id: `k9-in-s-${version}`,
      clean: false,
      ...(version === 5 ? { connect_props: { SessionExpiryInterval: SESSION_EXPIRY_S } } : {}),
    };
    await run({ port: gw.mqttPort, ...session, subscribe: [[t("i/#"), 2]] });
    const pid = `k9-in-p-${version}`;
    const p = (await RawMqtt.connect(gw.mqttPort, fresh(pid, version), version)).client;
    p.send({
      cmd: "publish",
      topic: t("i/x"),
      payload: "once",
      qos: 2,
      messageId: 7,
      dup: false,
      retain: false,
    });
    await p.next("pubrec");
    await kill9(gw);

    gw = await startGatewayProcess(file);
    expect((await status(gw)).outbox.pending).toBe(1);
    const p2 = await resume(gw, pid, version);
    // Sent again before PUBREL, as if the PUBREC had been lost: acknowledged, not
    // delivered again [MQTT-4.3.3-2].
    p2.send({
      cmd: "publish",
      topic: t("i/x"),
      payload: "once",
      qos: 2,
      messageId: 7,
      dup: true,
      retain: false,
    });
    const rec = await p2.next("pubrec");
    p2.send({ cmd: "pubrel", messageId: 7 });
    const comp = await p2.next("pubcomp");
    expect([brief(rec), brief(comp)]).toEqual(["pubrec #7", "pubcomp #7"]);
    // MQTT 5 says 0x92 for an id it does not know [MQTT-3.7.2-1]: this one it knows.
    if (version === 5) expect([rec.reasonCode, comp.reasonCode]).toEqual([0, 0]);
    p2.send({
      cmd: "publish",
      topic: t("i/fence"),
      payload: "fence",
      qos: 1,
      messageId: 8,
      dup: false,
      retain: false,
    });
    await p2.next("puback");
    expect((await status(gw)).outbox.pending).toBe(2);
    const s = await resume(gw, session.client_id, version);
    const once = await s.next("publish");
    expect(withoutId(once)).toBe(`publish q2 ${t("i/x")} once`);
    await acknowledge(s, once);
    const f = await s.next("publish");
    expect(withoutId(f)).toBe(`publish q1 ${t("i/fence")} fence`);
    await acknowledge(s, f);
    expect(delivered(s.packets)).toEqual(["once", "fence"]);
  });

  it("keeps a SUBACKed subscription and an UNSUBACKed unsubscribe, and neither before its commit", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    const id = `k9-subs-${version}`;
    let s = (await RawMqtt.connect(gw.mqttPort, fresh(id, version), version)).client;

    // Stopped at the commit of the subscription: the SUBACK is not out yet.
    let stop = await stopAtNextCommit(gw.proc);
    s.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: t("s/a"), qos: 1 }] });
    await stop.stopped();
    await kill9(gw);
    await s.closed;
    expect(s.packets.map(brief)).toEqual(["connack"]);

    gw = await startGatewayProcess(file);
    s = await resume(gw, id, version);
    s.send({
      cmd: "subscribe",
      messageId: 2,
      subscriptions: [
        { topic: t("s/a"), qos: 1 },
        { topic: t("s/b"), qos: 1 },
      ],
    });
    await s.next("suback");
    await kill9(gw);

    gw = await startGatewayProcess(file);
    s = await resume(gw, id, version);
    const pub = await mqttJsClient(gw.mqttPort, version);
    // No SUBSCRIBE: the session brought both back [MQTT-3.1.2-4].
    await pub.publishAsync(t("s/a"), "a1", { qos: 1 });
    await pub.publishAsync(t("s/b"), "b1", { qos: 1 });
    for (const p of [await s.next("publish"), await s.next("publish")]) {
      s.send({ cmd: "puback", messageId: p.messageId });
    }
    expect(s.all("publish").map(text)).toEqual(["a1", "b1"]);
    await settled(s, () => pub.publishAsync(t("sync"), "s", { qos: 1 }));

    stop = await stopAtNextCommit(gw.proc);
    s.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: [t("s/b")] });
    await stop.stopped();
    await kill9(gw);
    await s.closed;
    expect(s.all("unsuback")).toEqual([]);

    gw = await startGatewayProcess(file);
    s = await resume(gw, id, version);
    s.send({ cmd: "unsubscribe", messageId: 4, unsubscriptions: [t("s/b")] });
    const unsuback = await s.next("unsuback");
    // MQTT 5 tells whether there was one to remove [MQTT-3.11.3-1]: there was, since the
    // first UNSUBSCRIBE never got its UNSUBACK.
    if (version === 5) expect(unsuback.granted).toEqual([0]);
    await kill9(gw);

    gw = await startGatewayProcess(file);
    s = await resume(gw, id, version);
    const pub2 = await mqttJsClient(gw.mqttPort, version);
    await pub2.publishAsync(t("s/b"), "b2", { qos: 1 });
    await pub2.publishAsync(t("s/a"), "a2", { qos: 1 });
    const a2 = await s.next("publish", (p) => text(p) === "a2");
    expect(a2.topic).toBe(t("s/a"));
    expect(s.all("publish").map(text)).toEqual(["a2"]);
  });

  it("still expires an offline session after kill -9 and a restart", async () => {
    const file = config({ max_session_expiry: `${SHORT_EXPIRY_S}s` });
    let gw = await startGatewayProcess(file);
    const id = `k9-expiry-${version}`;
    const s = (await RawMqtt.connect(gw.mqttPort, fresh(id, version), version)).client;
    await s.subscribe(1, [{ topic: t("e/#"), qos: 1 }]);
    const goneAtMs = Date.now();
    s.send(version === 5 ? { cmd: "disconnect", reasonCode: 0 } : { cmd: "disconnect" });
    await s.closed;
    await noConnections(gw);
    await kill9(gw);

    gw = await startGatewayProcess(file);
    const running = gw;
    await waitFor(async () => (await metric(running, "leafgate_mqtt_sessions")) === 0, {
      timeoutMs: DUE_TIMEOUT_MS,
      message: "the session did not expire",
    });
    // Counted from the disconnect before the kill, not from the restart nor at it.
    expect(Date.now() - goneAtMs).toBeGreaterThanOrEqual(SHORT_EXPIRY_S * 1000);
    const { connack } = await RawMqtt.connect(gw.mqttPort, persistent(id, version), version);
    expect(connack.sessionPresent).toBe(false);
  });
});

describe("MQTT 5 delayed wills", () => {
  const WILL_TOPIC = "k9/will";

  /** A client whose will waits WILL_DELAY_S seconds, in a session that outlives it. */
  async function victim(gw: ChildGateway, clientId: string): Promise<RawMqtt> {
    const { client } = await RawMqtt.connect(
      gw.mqttPort,
      persistent(clientId, 5, true, {
        will: {
          topic: `${WILL_TOPIC}/${clientId}`,
          payload: Buffer.from(`${clientId} gone`),
          qos: 1,
          retain: false,
          properties: { willDelayInterval: WILL_DELAY_S },
        },
      }),
    );
    return client;
  }

  /** A persistent watcher: wills published while it is away wait in its session. */
  async function watcher(gw: ChildGateway): Promise<void> {
    const { client } = await RawMqtt.connect(gw.mqttPort, fresh("k9-watcher", 5));
    await client.subscribe(1, [{ topic: `${WILL_TOPIC}/#`, qos: 1 }]);
    await client.end();
  }

  it("publishes a delayed will once when due, across a kill -9 before it and one right after it", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    await watcher(gw);
    const v = await victim(gw, "k9-v");
    const vanishedAtMs = Date.now();
    await v.destroy();
    // Once the gateway saw it go, the will waits in the session store.
    await noConnections(gw);
    await kill9(gw);

    gw = await startGatewayProcess(file);
    const w = await resume(gw, "k9-watcher", 5);
    const will = await w.next("publish", undefined, DUE_TIMEOUT_MS);
    expect(brief(will)).toBe(`publish q1 #${will.messageId} ${WILL_TOPIC}/k9-v k9-v gone`);
    expect(Date.now()).toBeGreaterThanOrEqual(vanishedAtMs + WILL_DELAY_S * 1000);
    // Killed as the will arrives, not acknowledged: it must not be published again.
    await kill9(gw);
    await w.closed;

    gw = await startGatewayProcess(file);
    const w2 = await resume(gw, "k9-watcher", 5);
    // The same delivery again (same id, DUP), not a second publication.
    const again = await w2.next("publish");
    expect(brief(again)).toBe(`publish q1 #${will.messageId} dup ${WILL_TOPIC}/k9-v k9-v gone`);
    w2.send({ cmd: "puback", messageId: again.messageId });
    const pub = await mqttJsClient(gw.mqttPort, 5);
    await pub.publishAsync(`${WILL_TOPIC}/fence`, "fence", { qos: 1 });
    await w2.next("publish", (p) => text(p) === "fence");
    expect(w2.all("publish").map(text)).toEqual(["k9-v gone", "fence"]);
    // Into the outbox once: the will and the fence.
    expect((await status(gw)).outbox.pending).toBe(2);
  });

  it("publishes the will of a session that ended while the gateway was down", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    await watcher(gw);
    // The session ends before the will's delay: the will is due when it ends [MQTT-3.1.3-9].
    const v = (
      await RawMqtt.connect(
        gw.mqttPort,
        persistent("k9-ended", 5, true, {
          properties: { sessionExpiryInterval: SHORT_EXPIRY_S },
          will: {
            topic: `${WILL_TOPIC}/k9-ended`,
            payload: Buffer.from("k9-ended gone"),
            qos: 1,
            retain: false,
            properties: { willDelayInterval: SESSION_EXPIRY_S },
          },
        }),
      )
    ).client;
    await v.destroy();
    await noConnections(gw);
    const seenGoneAtMs = Date.now();
    await kill9(gw);
    // Down until the session has ended (it went no later than it was seen gone).
    await waitFor(() => Date.now() >= seenGoneAtMs + SHORT_EXPIRY_S * 1000, {
      timeoutMs: DUE_TIMEOUT_MS,
    });

    gw = await startGatewayProcess(file);
    const w = await resume(gw, "k9-watcher", 5);
    const will = await w.next("publish");
    expect(withoutId(will)).toBe(`publish q1 ${WILL_TOPIC}/k9-ended k9-ended gone`);
    w.send({ cmd: "puback", messageId: will.messageId });
    const { connack } = await RawMqtt.connect(gw.mqttPort, persistent("k9-ended", 5));
    expect(connack.sessionPresent).toBe(false);
    expect((await status(gw)).outbox.pending).toBe(1);
  });

  it("does not bring back a will cancelled by a resume before kill -9", async () => {
    const file = config();
    let gw = await startGatewayProcess(file);
    await watcher(gw);
    const v = await victim(gw, "k9-resumed");
    await v.destroy();
    await noConnections(gw);
    // A control whose will falls due after the cancelled one would have.
    const c = await victim(gw, "k9-control");
    await c.destroy();
    await noConnections(gw);
    await resume(gw, "k9-resumed", 5);
    // Right at the CONNACK that told the client its session (and so its will) is back.
    await kill9(gw);

    gw = await startGatewayProcess(file);
    const w = await resume(gw, "k9-watcher", 5);
    const control = await w.next("publish", undefined, DUE_TIMEOUT_MS);
    expect(text(control)).toBe("k9-control gone");
    expect(w.all("publish").map(text)).toEqual(["k9-control gone"]);
    expect((await status(gw)).outbox.pending).toBe(1);
  });
});
