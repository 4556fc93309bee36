// Interop with Python paho-mqtt 1.6.1 (Debian, /usr/bin/python3) over MQTT 3.1.1 and 5.0,
// on TCP and WebSocket. test/helpers/paho.py runs one client from a JSON plan and prints
// every step as a JSON line; each of its waits is bounded by the plan's timeout.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type GatewayConfigInput,
  startGateway,
  startGatewayProcess,
  type TestGateway,
  writeConfig,
} from "../helpers/gateway.js";
import {
  connack,
  done,
  events,
  type Msg,
  messages,
  msg,
  type Plan,
  type Props,
  type Protocol,
  type Publish,
  PY_TIMEOUT_S,
  paho,
  ready,
  release,
  run,
  texts,
  withMids,
} from "../helpers/paho.js";
import { stopAll, stopProcess, type TrackedProcess, waitForLine } from "../helpers/procs.js";
import { type TempDir, waitFor } from "../helpers/wait.js";
import { willsPublished as willsPublishedBy } from "../helpers/wills.js";

afterEach(async () => {
  await stopAll();
});

const LISTENERS: GatewayConfigInput["mqtt"] = {
  listeners: [
    { host: "127.0.0.1", port: 0 },
    { host: "127.0.0.1", port: 0, websocket: true },
  ],
  max_packet_size: 65536,
  topic_alias_maximum: 10,
  max_keepalive: 60,
};

describe.each([
  ["MQTTv311", 4],
  ["MQTTv5", 5],
] as const)("paho %s", (name, protocol) => {
  let gw: TestGateway;
  let wsPort: number;
  const v = name;
  /** 3.1.1 messages have no properties; v5 ones have an (empty) set. */
  const none = protocol === 5 ? {} : null;
  const m = (topic: string, payload: string, qos: number, extra: Partial<Msg> = {}) =>
    msg(topic, payload, qos, { props: none, ...extra });

  beforeAll(async () => {
    gw = await startGateway({ mqtt: LISTENERS });
    wsPort = gw.gateway.addresses().mqtt[1]!.port;
  });

  afterAll(async () => {
    await gw?.dispose();
  });

  it("delivers QoS 0, 1 and 2 both ways with exact payloads, in order", async () => {
    const sub2 = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`pq/${v}/#`, 2]], expect: 15 }),
    );
    const sub1 = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`pq/${v}/#`, 1]], expect: 15 }),
    );
    expect(events(sub2).find((e) => e.event === "suback")!.granted).toEqual([2]);
    const sent = ([0, 1, 2] as const).flatMap((qos) =>
      texts(5, `q${qos}`).map((payload) => ({ topic: `pq/${v}/${qos}`, payload, qos })),
    );
    const pub = await run({ port: gw.mqttPort, protocol, publish: sent });
    // Every QoS 1/2 publication was acknowledged (PUBACK / PUBCOMP), in order.
    expect(
      events(pub)
        .filter((e) => e.event === "published")
        .map((e) => e.index),
    ).toEqual(sent.map((_, i) => i));
    // Ordered Topics [MQTT-4.6.0-6]; delivered at min(published, granted) QoS.
    expect(await done(sub2)).toEqual(sent.map((s) => m(s.topic, s.payload, s.qos)));
    expect(await done(sub1)).toEqual(sent.map((s) => m(s.topic, s.payload, Math.min(s.qos, 1))));
  });

  it("sends retained messages with the flag to new subscribers, and clears them", async () => {
    const topic = `pr/${v}/valve`;
    await run({
      port: gw.mqttPort,
      protocol,
      publish: [{ topic, payload: "open", qos: 1, retain: true }],
    });
    const first = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`pr/${v}/#`, 1]], expect: 2 }),
    );
    await run({
      port: gw.mqttPort,
      protocol,
      publish: [{ topic, payload: "closed", qos: 1, retain: true }],
    });
    // retain=1 for the subscription-time copy [MQTT-3.3.1-8], 0 for the live one [MQTT-3.3.1-9].
    expect(await done(first)).toEqual([
      m(topic, "open", 1, { retain: true }),
      m(topic, "closed", 1, { retain: false }),
    ]);

    // Empty payload clears it [MQTT-3.3.1-10]: a newcomer sees only the later marker.
    await run({
      port: gw.mqttPort,
      protocol,
      publish: [{ topic, payload: "", qos: 1, retain: true }],
    });
    const late = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`pr/${v}/#`, 1]], expect: 1 }),
    );
    await run({
      port: gw.mqttPort,
      protocol,
      publish: [{ topic: `pr/${v}/marker`, payload: "m", qos: 1 }],
    });
    expect(await done(late)).toEqual([m(`pr/${v}/marker`, "m", 1)]);
  });

  it("publishes the will of a SIGKILLed client, not of one that disconnected cleanly", async () => {
    const watcher = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`pw/${v}/#`, 1]], expect: 2 }),
    );
    const will = (who: string): Publish => ({
      topic: `pw/${v}/${who}`,
      payload: `${who}-gone`,
      qos: 1,
    });
    // A clean DISCONNECT discards the will [MQTT-3.1.2-10].
    await run({
      port: gw.mqttPort,
      protocol,
      client_id: `pw-clean-${v}`,
      will: will("clean"),
      publish: [{ topic: `other/${v}`, payload: "x", qos: 1 }],
    });
    const victim = await ready(
      await paho({
        port: gw.mqttPort,
        protocol,
        client_id: `pw-victim-${v}`,
        will: will("victim"),
        hold: true,
      }),
    );
    await stopProcess(victim, { signal: "SIGKILL" });
    // The connection closed without DISCONNECT: the will is published [MQTT-3.1.2-8].
    await waitFor(() => messages(watcher).length >= 1, {
      message: () => `no will\n${watcher.describe()}`,
    });
    await run({
      port: gw.mqttPort,
      protocol,
      publish: [{ topic: `pw/${v}/marker`, payload: "m", qos: 1 }],
    });
    expect(await done(watcher)).toEqual([
      m(`pw/${v}/victim`, "victim-gone", 1),
      m(`pw/${v}/marker`, "m", 1),
    ]);
  });

  it("works over WebSocket (path /mqtt), both ways with TCP clients", async () => {
    const overWs = await ready(
      await paho({
        port: wsPort,
        protocol,
        transport: "websockets",
        subscribe: [[`ws/${v}/#`, 2]],
        expect: 6,
      }),
    );
    const overTcp = await ready(
      await paho({ port: gw.mqttPort, protocol, subscribe: [[`ws/${v}/#`, 2]], expect: 6 }),
    );
    const batch = (from: string): Publish[] =>
      ([0, 1, 2] as const).map((qos) => ({
        topic: `ws/${v}/${from}`,
        payload: `${from}-${qos}`,
        qos,
      }));
    await run({ port: wsPort, protocol, transport: "websockets", publish: batch("ws") });
    await run({ port: gw.mqttPort, protocol, publish: batch("tcp") });
    const expected = [...batch("ws"), ...batch("tcp")].map((p) => m(p.topic, p.payload!, p.qos!));
    expect(await done(overWs)).toEqual(expected);
    expect(await done(overTcp)).toEqual(expected);
  });
});

describe.each([
  ["MQTTv311", 4],
  ["MQTTv5", 5],
] as const)("paho %s persistent session across a gateway restart", (name, protocol) => {
  let dir: TempDir | undefined;

  afterEach(async () => {
    await stopAll();
    await dir?.cleanup();
    dir = undefined;
  });

  it("keeps subscriptions and queues QoS 1 messages while the client and the gateway are down", async () => {
    const config = writeConfig();
    dir = config.dir;
    let child = await startGatewayProcess(config.file);
    // 3.1.1: clean session 0; v5: clean start 0 with a Session Expiry Interval.
    const session: Partial<Plan> = {
      client_id: `ps-${name}`,
      clean: false,
      ...(protocol === 5 ? { connect_props: { SessionExpiryInterval: 300 } } : {}),
    };
    const first = await run({
      port: child.mqttPort,
      protocol,
      ...session,
      subscribe: [[`ps/${name}/#`, 1]],
    });
    expect(connack(first)).toMatchObject({ rc: 0, session_present: false });

    const sent = texts(5, "offline").map((payload) => ({
      topic: `ps/${name}/t`,
      payload,
      qos: 1 as const,
    }));
    await run({ port: child.mqttPort, protocol, publish: sent });
    await stopProcess(child.proc);
    child = await startGatewayProcess(config.file);

    // No SUBSCRIBE this time: the session brings its subscription back [MQTT-3.1.2-4].
    const second = await paho({
      port: child.mqttPort,
      protocol,
      ...session,
      expect: sent.length + 1,
    });
    await ready(second);
    await run({
      port: child.mqttPort,
      protocol,
      publish: [{ topic: `ps/${name}/marker`, payload: "m", qos: 1 }],
    });
    const got = await done(second);
    // Session Present = 1 [MQTT-3.2.2-2] (5.0: [MQTT-3.2.2-3]).
    expect(connack(second)).toMatchObject({ rc: 0, session_present: true });
    const props = protocol === 5 ? {} : null;
    expect(got).toEqual([
      ...sent.map((s) => msg(s.topic, s.payload, 1, { props })),
      msg(`ps/${name}/marker`, "m", 1, { props }),
    ]);
    await stopProcess(child.proc);
  });

  it("resends an unacknowledged QoS 1 message with DUP=1 and its packet id after a restart", async () => {
    const config = writeConfig();
    dir = config.dir;
    let child = await startGatewayProcess(config.file);
    const session: Partial<Plan> = {
      client_id: `inflight-${name}`,
      clean: false,
      ...(protocol === 5 ? { connect_props: { SessionExpiryInterval: 300 } } : {}),
    };
    // paho acknowledges m-1, then blocks inside the callback of m-2: no PUBACK for m-2 on.
    const first = await ready(
      await paho({
        port: child.mqttPort,
        protocol,
        ...session,
        subscribe: [[`inf/${name}/#`, 1]],
        stall_after: 2,
        hold: true,
        report_writes: true,
      }),
    );
    const sent = texts(4, "m").map((payload) => ({
      topic: `inf/${name}/t`,
      payload,
      qos: 1 as const,
    }));
    // m-2 goes out only once paho has written m-1's PUBACK. paho reads before it writes,
    // so with m-2 already there it would stall in m-2's callback with m-1's PUBACK unsent.
    await run({ port: child.mqttPort, protocol, publish: sent.slice(0, 1) });
    await waitFor(
      () => {
        const seen = events(first).map((e) => e.event);
        const m1 = seen.indexOf("msg");
        return m1 >= 0 && seen.indexOf("written", m1) > m1;
      },
      { message: () => `paho did not acknowledge m-1\n${first.describe()}` },
    );
    await run({ port: child.mqttPort, protocol, publish: sent.slice(1) });
    await waitForLine(first, (l) => l.includes('"event": "stalled"'));
    const [, stalled] = withMids(first);
    expect(stalled).toMatchObject({ payload: "m-2", dup: false });
    await stopProcess(first, { signal: "SIGKILL" });
    // The gateway must have read everything paho sent (the PUBACK of m-1) before it
    // stops: once it saw the connection go, it had. Else m-1 comes back, rightly.
    const connections = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${child.httpPort}/metrics`)).text();
      return Number(/^leafgate_mqtt_connections (\d+)$/m.exec(text)?.[1] ?? -1);
    };
    await waitFor(async () => (await connections()) === 0);
    await stopProcess(child.proc);
    child = await startGatewayProcess(config.file);

    const second = await paho({ port: child.mqttPort, protocol, ...session, expect: 3 });
    const got = await done(second);
    expect(connack(second)).toMatchObject({ rc: 0, session_present: true });
    // m-1 was acknowledged and is gone; m-2 comes first, again, with DUP=1 [MQTT-3.3.1-1] and
    // its original packet identifier [MQTT-4.4.0-1]; then the rest in order.
    expect(got.map((m) => m.payload)).toEqual(["m-2", "m-3", "m-4"]);
    expect(got[0]).toMatchObject({ dup: true, qos: 1 });
    expect(withMids(second)[0]!.mid).toBe(stalled!.mid);
    await stopProcess(child.proc);
  });
});

describe("paho MQTT 5 only", () => {
  let gw: TestGateway;
  /** Will Delay Interval of the will tests. */
  const WILL_DELAY_S = 2;
  /** Python and paho loading, on a busy machine. */
  const PY_START_TIMEOUT_MS = PY_TIMEOUT_S * 1000;
  const wills = (): number => gw.gateway.metrics.value("leafgate_mqtt_wills_published_total");
  const connections = (): number => gw.gateway.metrics.value("leafgate_mqtt_connections");

  const willsPublished = (count: number, notBeforeMs: number): Promise<void> =>
    willsPublishedBy(gw.gateway, count, { notBeforeMs, timeoutMs: WILL_DELAY_S * 1000 + 8_000 });

  beforeAll(async () => {
    gw = await startGateway({ mqtt: LISTENERS });
  });

  afterAll(async () => {
    await gw?.dispose();
  });

  it("carries PUBLISH properties unchanged: user properties in order with duplicates", async () => {
    const sub = await ready(
      await paho({ port: gw.mqttPort, protocol: 5, subscribe: [["pp/#", 1]], expect: 2 }),
    );
    const props = {
      UserProperty: [
        ["a", "1"],
        ["b", "2"],
        ["a", "3"],
      ],
      ContentType: "application/json",
      PayloadFormatIndicator: 1,
      ResponseTopic: "pp/reply",
      CorrelationData: "00ff10",
      MessageExpiryInterval: 120,
    };
    await run({
      port: gw.mqttPort,
      protocol: 5,
      publish: [
        { topic: "pp/a", payload: '{"x":1}', qos: 1, props },
        { topic: "pp/b", payload: "plain", qos: 2 },
      ],
    });
    const [withProps, plain] = await done(sub);
    const { MessageExpiryInterval: expiry, ...rest } = withProps!.props!;
    // [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-4]
    expect({ ...withProps, props: rest }).toEqual(
      msg("pp/a", '{"x":1}', 1, {
        props: {
          UserProperty: props.UserProperty,
          ContentType: "application/json",
          PayloadFormatIndicator: 1,
          ResponseTopic: "pp/reply",
          CorrelationData: "00ff10",
        },
      }),
    );
    // Reduced by the time waited, rounded up [MQTT-3.3.2-6]: the gateway hands a message to
    // a subscriber with room in the same turn it reads it, far less than a second.
    expect(expiry).toBe(props.MessageExpiryInterval);
    // Published at QoS 2 to a QoS 1 subscription, without properties: none added.
    expect(plain).toEqual(msg("pp/b", "plain", 1, { props: {} }));
  });

  it("announces its limits in CONNACK and assigns a client id to an empty one", async () => {
    const anonymous = await run({ port: gw.mqttPort, protocol: 5, client_id: "" });
    const props = connack(anonymous).props as Props;
    expect(connack(anonymous)).toMatchObject({ rc: 0, session_present: false });
    // [MQTT-3.2.2-16]: a zero-length client id gets an Assigned Client Identifier, in the
    // gateway's scheme `leafgate-<pid>-<n>` (it runs in this process; other tests here
    // connected anonymously before, so n is whatever comes next).
    const assigned = /^leafgate-(\d+)-(\d+)$/.exec(String(props.AssignedClientIdentifier));
    expect(assigned?.[1]).toBe(String(process.pid));
    expect(props.TopicAliasMaximum).toBe(10);
    expect(props.MaximumPacketSize).toBe(65536);

    // Two anonymous clients get different identifiers: the next one.
    const other = await run({ port: gw.mqttPort, protocol: 5, client_id: "" });
    expect((connack(other).props as Props).AssignedClientIdentifier).toBe(
      `leafgate-${process.pid}-${Number(assigned![2]) + 1}`,
    );

    // Asking for a keep alive above max_keepalive: CONNACK Server Keep Alive says 60.
    const eager = await run({ port: gw.mqttPort, protocol: 5, client_id: "ka-1", keepalive: 120 });
    expect((connack(eager).props as Props).ServerKeepAlive).toBe(60);
  });

  it("closes the older connection when the same client id connects again", async () => {
    const old = await ready(
      await paho({ port: gw.mqttPort, protocol: 5, client_id: "takeover-1", hold: true }),
    );
    const fresh = await ready(
      await paho({
        port: gw.mqttPort,
        protocol: 5,
        client_id: "takeover-1",
        subscribe: [["takeover/#", 1]],
        expect: 1,
      }),
    );
    await waitForLine(old, (l) => l.includes('"event": "disconnected"'));
    // paho would reconnect (and take the session back) after a second: stop it first.
    await stopProcess(old, { signal: "SIGKILL" });
    // paho 1.6.1 reads a DISCONNECT's reason code only when it carries properties; the
    // broker's has a Reason String, so paho reports 0x8E Session taken over.
    const [gone] = events(old).filter((e) => e.event === "disconnected");
    expect(gone!.rc).toBe(0x8e);
    // The new connection is the live one.
    await run({
      port: gw.mqttPort,
      protocol: 5,
      publish: [{ topic: "takeover/x", payload: "hi", qos: 1 }],
    });
    expect(await done(fresh)).toEqual([msg("takeover/x", "hi", 1, { props: {} })]);
  });

  it("publishes a will only after its Will Delay Interval", async () => {
    const watcher = await ready(
      await paho({ port: gw.mqttPort, protocol: 5, subscribe: [["wd1/#", 1]], expect: 2 }),
    );
    const victim = await ready(
      await paho({
        port: gw.mqttPort,
        protocol: 5,
        client_id: "wd-1",
        connect_props: { SessionExpiryInterval: 60 },
        will: {
          topic: "wd1/victim",
          payload: "late",
          qos: 1,
          props: { WillDelayInterval: WILL_DELAY_S },
        },
        hold: true,
      }),
    );
    const before = wills();
    // The gateway can learn of the loss only after this.
    const killedAt = Date.now();
    await stopProcess(victim, { signal: "SIGKILL" });
    // [MQTT-3.1.2-8]: published once the delay has elapsed, not when the connection closed.
    await willsPublished(before + 1, killedAt + WILL_DELAY_S * 1000);
    await run({
      port: gw.mqttPort,
      protocol: 5,
      publish: [{ topic: "wd1/marker", payload: "m", qos: 1 }],
    });
    expect(await done(watcher)).toEqual([
      msg("wd1/victim", "late", 1, { props: {} }),
      msg("wd1/marker", "m", 1, { props: {} }),
    ]);
  });

  it("does not publish a delayed will when the client resumes its session in time", async () => {
    const watcher = await ready(
      await paho({ port: gw.mqttPort, protocol: 5, subscribe: [["wd2/#", 1]], expect: 2 }),
    );
    const session = { client_id: "wd-2", connect_props: { SessionExpiryInterval: 60 } };
    const delayedWill = (topic: string): Publish => ({
      topic,
      payload: "late",
      qos: 1,
      props: { WillDelayInterval: WILL_DELAY_S },
    });
    const victim = await ready(
      await paho({
        port: gw.mqttPort,
        protocol: 5,
        ...session,
        will: delayedWill("wd2/victim"),
        hold: true,
      }),
    );
    // A reference client with the same Will Delay Interval, which does not come back.
    const reference = await ready(
      await paho({
        port: gw.mqttPort,
        protocol: 5,
        client_id: "wd-2-ref",
        connect_props: { SessionExpiryInterval: 60 },
        will: delayedWill("wd2/reference"),
        hold: true,
      }),
    );
    // The client that resumes: Python is up before the victim dies, so it is back well
    // within the delay.
    const back = await paho({
      port: gw.mqttPort,
      protocol: 5,
      ...session,
      clean: false,
      hold: true,
      wait_before_connect: true,
    });
    await waitForLine(back, (l) => l.includes('"event": "started"'), PY_START_TIMEOUT_MS);
    const before = wills();
    const connected = connections();
    await stopProcess(victim, { signal: "SIGKILL" });
    await waitFor(() => connections() === connected - 1);
    release(back);
    await ready(back);
    expect(connack(back)).toMatchObject({ rc: 0, session_present: true });
    // Time is what is under test, and the gateway itself tells when wd-2's will would
    // have been due: it arms equal delays in order, so the reference's will, lost after
    // wd-2's, falls due after it. Once the reference's will is out (and a marker after
    // it), wd-2's would be too [MQTT-3.1.3-9].
    await stopProcess(reference, { signal: "SIGKILL" });
    await willsPublished(before + 1, 0);
    await run({
      port: gw.mqttPort,
      protocol: 5,
      publish: [{ topic: "wd2/marker", payload: "m", qos: 1 }],
    });
    expect(await done(watcher)).toEqual([
      msg("wd2/reference", "late", 1, { props: {} }),
      msg("wd2/marker", "m", 1, { props: {} }),
    ]);
    release(back);
    await done(back);
  });
});

describe("paho shared subscription across protocol versions", () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startGateway();
  });

  afterAll(async () => {
    await gw?.dispose();
  });

  it("splits $share/g/… between a 3.1.1 and a 5.0 member, each message once", async () => {
    const member = (protocol: Protocol, fence: string) =>
      paho({
        port: gw.mqttPort,
        protocol,
        subscribe: [
          ["$share/mix/psh/#", 1],
          [fence, 1],
        ],
        hold: true,
        timeout: 20,
      }).then(ready);
    const v4 = await member(4, "fence/v4");
    const v5 = await member(5, "fence/v5");
    const sent = texts(20, "s");
    await run({
      port: gw.mqttPort,
      protocol: 4,
      publish: sent.map((payload) => ({ topic: "psh/t", payload, qos: 1 })),
    });
    // Each fence arrives after every shared message sent to that member.
    await run({
      port: gw.mqttPort,
      protocol: 4,
      publish: [
        { topic: "fence/v4", payload: "f", qos: 1 },
        { topic: "fence/v5", payload: "f", qos: 1 },
      ],
    });
    const fenced = (p: TrackedProcess) => messages(p).some((x) => x.topic.startsWith("fence/"));
    await waitFor(() => fenced(v4) && fenced(v5), {
      message: () => `fences not seen\n${v4.describe()}\n${v5.describe()}`,
    });
    release(v4);
    release(v5);
    const shared = (got: Msg[]) => got.filter((x) => x.topic === "psh/t").map((x) => x.payload);
    const [a, b] = [shared(await done(v4)), shared(await done(v5))];
    // Exactly one member gets each message (MQTT 5.0 §4.8.2), and they take turns
    // (README: "to one member of the group in turn"), whichever goes first.
    const turns = [0, 1].map((parity) => sent.filter((_, i) => i % 2 === parity));
    expect([a, b]).toEqual(a.includes(sent[0]!) ? turns : [turns[1], turns[0]]);
  });
});
