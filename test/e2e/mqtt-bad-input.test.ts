// Bad input against a live in-process gateway: raw TCP clients write hand-made bytes, and
// each case checks what the server answered, that the server closed the socket, which
// protocol violation it counted, and that a well-behaved mqtt.js client connected before is
// unaffected. Real client tools (mosquitto_pub, Python paho) show the other side.
import { connect as netConnect, type Socket } from "node:net";
import type { MqttClient } from "mqtt";
import mqtt from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import { VIOLATIONS, type Violation } from "../../src/mqtt/errors.js";
import { type GatewayConfigInput, startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { once, waitFor } from "../helpers/wait.js";

/** Debian's python3-paho-mqtt (1.6) is importable only by the system interpreter. */
const SYSTEM_PYTHON = "/usr/bin/python3";
const CLOSE_DEADLINE_MS = 5_000;

const CONNACK_ACCEPTED = [0x20, 0x02, 0x00, 0x00];

const gen = (p: mqtt.Packet): Buffer => mqtt.generate(p, { protocolVersion: 4 });
const connectPacket = (clientId: string): Buffer =>
  gen({ cmd: "connect", clientId, protocolVersion: 4, clean: true, keepalive: 30 });
const publishPacket = (topic: string, qos: 0 | 1 = 1): Buffer =>
  gen({
    cmd: "publish",
    topic,
    payload: Buffer.from("bad"),
    qos,
    dup: false,
    retain: false,
    ...(qos > 0 ? { messageId: 1 } : {}),
  });

/** A raw TCP client that records every byte received and how the socket ended. */
interface RawClient {
  readonly socket: Socket;
  received(): number[];
  /** The server sent FIN (a graceful close), as opposed to a reset. */
  readonly gotEnd: boolean;
  readonly isClosed: boolean;
  write(bytes: Uint8Array | readonly number[]): void;
  /** Waits, with a deadline, for the server to close the socket. */
  closedByServer(): Promise<void>;
}

// -- per-test resources, released in afterEach even when the test failed ------------------

let gw: TestGateway | undefined;
const sockets = new Set<Socket>();
const clients = new Set<MqttClient>();

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await Promise.all([...clients].map((c) => c.endAsync(true).catch(() => {})));
  clients.clear();
  await gw?.dispose();
  gw = undefined;
});

async function rawConnect(port: number): Promise<RawClient> {
  const socket = netConnect({ host: "127.0.0.1", port });
  sockets.add(socket);
  const chunks: Buffer[] = [];
  let gotEnd = false;
  let isClosed = false;
  let error: Error | undefined;
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("end", () => {
    gotEnd = true;
  });
  // Writing to a socket the server already closed may fail; the test looks at "close".
  socket.on("error", (err) => {
    error = err;
  });
  socket.on("close", () => {
    isClosed = true;
  });
  await once(socket, "connect");
  return {
    socket,
    received: () => [...Buffer.concat(chunks)],
    get gotEnd() {
      return gotEnd;
    },
    get isClosed() {
      return isClosed;
    },
    write: (bytes) => {
      socket.write(Buffer.from(bytes as Uint8Array));
    },
    closedByServer: async () => {
      await waitFor(() => isClosed, {
        timeoutMs: CLOSE_DEADLINE_MS,
        message: () =>
          `the server did not close the socket (received ${Buffer.concat(chunks).toString("hex")})`,
      });
      if (error !== undefined) throw new Error(`socket error before close: ${error.message}`);
    },
  };
}

interface Scene {
  readonly gw: TestGateway;
  /** An mqtt.js client connected before the bad one. */
  readonly good: MqttClient;
  protocolErrors(violation: Violation): number;
  allProtocolErrors(): number;
  closed(reason: string): number;
  pending(): number;
}

async function scene(mqttConfig?: GatewayConfigInput["mqtt"]): Promise<Scene> {
  gw = await startGateway({ mqtt: mqttConfig });
  const g = gw;
  const good = await connectMqttJs(g.mqttPort, { clientId: "good-client" });
  clients.add(good);
  const value = (name: string, labels: Record<string, string>) =>
    g.gateway.metrics.value(name, labels);
  const protocolErrors = (violation: Violation) =>
    value("leafgate_mqtt_protocol_errors_total", { violation });
  return {
    gw: g,
    good,
    protocolErrors,
    allProtocolErrors: () =>
      (Object.keys(VIOLATIONS) as Violation[]).reduce((sum, v) => sum + protocolErrors(v), 0),
    closed: (reason) => value("leafgate_mqtt_connections_closed_total", { reason }),
    pending: () => g.gateway.status().outbox.pending,
  };
}

/** The well-behaved client still gets a QoS 1 message into the outbox. */
async function expectGoodClientStillWorks(s: Scene): Promise<void> {
  expect(s.good.connected).toBe(true);
  expect(s.pending()).toBe(0);
  const ack = await s.good.publishAsync("healthy/after", "still here", { qos: 1 });
  expect(ack?.cmd).toBe("publish");
  // The PUBACK came after the commit: exactly the good client's message is stored.
  expect(s.pending()).toBe(1);
}

// -- cases --------------------------------------------------------------------------------

interface BadCase {
  readonly name: string;
  readonly bytes: readonly Buffer[];
  readonly violation: Violation;
  readonly answer: readonly number[];
  readonly mqtt?: GatewayConfigInput["mqtt"];
}

const CASES: readonly BadCase[] = [
  {
    name: "garbage bytes (ff ff ff ff)",
    bytes: [Buffer.from([0xff, 0xff, 0xff, 0xff])],
    violation: "malformed",
    answer: [],
  },
  {
    name: "a remaining length of 5 continuation bytes",
    bytes: [Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])],
    violation: "malformed",
    answer: [],
  },
  {
    name: "CONNECT with protocol level 6: CONNACK 1, then close [MQTT-3.1.2-2]",
    bytes: [
      (() => {
        const b = Buffer.from(connectPacket("level6"));
        b[8] = 6; // 0x10, length, 0x00 0x04 "MQTT", level
        return b;
      })(),
    ],
    violation: "unsupportedProtocol",
    answer: [0x20, 0x02, 0x00, 0x01],
  },
  {
    name: "PUBLISH before CONNECT [MQTT-3.1.0-1]",
    bytes: [publishPacket("a/b")],
    violation: "firstPacketNotConnect",
    answer: [],
  },
  {
    name: "a second CONNECT [MQTT-3.1.0-2]",
    bytes: [connectPacket("twice"), connectPacket("twice")],
    violation: "secondConnect",
    answer: CONNACK_ACCEPTED,
  },
  {
    name: "PUBLISH to the wildcard topic a/+ [MQTT-3.3.2-2]",
    bytes: [connectPacket("wild-plus"), publishPacket("a/+")],
    violation: "wildcardInTopicName",
    answer: CONNACK_ACCEPTED,
  },
  {
    name: "PUBLISH to the wildcard topic a/# [MQTT-3.3.2-2]",
    bytes: [connectPacket("wild-hash"), publishPacket("a/#")],
    violation: "wildcardInTopicName",
    answer: CONNACK_ACCEPTED,
  },
  {
    name: "PUBLISH to an empty topic [MQTT-4.7.3-1]",
    bytes: [connectPacket("empty-topic"), publishPacket("")],
    violation: "invalidTopicName",
    answer: CONNACK_ACCEPTED,
  },
  {
    name: "a PUBLISH announcing 2000 bytes with max_packet_size 1KB, once 1100 are buffered",
    mqtt: { max_packet_size: "1KB" },
    bytes: [
      connectPacket("too-big"),
      // PUBLISH QoS 0, remaining length 2000 (d0 0f), then only part of the body.
      Buffer.from([0x30, 0xd0, 0x0f, 0x00, 0x01, 0x74]),
      Buffer.alloc(600, 0x61),
      Buffer.alloc(500, 0x62),
    ],
    violation: "packetTooLarge",
    answer: CONNACK_ACCEPTED,
  },
];

describe("bad MQTT input costs only the offending connection", () => {
  it.each(CASES)("$name", async (c) => {
    const s = await scene(c.mqtt);
    expect(s.allProtocolErrors()).toBe(0);
    const bad = await rawConnect(s.gw.mqttPort);
    for (const bytes of c.bytes) bad.write(bytes);
    await bad.closedByServer();

    expect(bad.received()).toEqual(c.answer);
    expect(bad.gotEnd).toBe(true);
    expect(s.protocolErrors(c.violation)).toBe(1);
    expect(s.allProtocolErrors()).toBe(1);
    expect(s.closed("protocol-error")).toBe(1);

    await expectGoodClientStillWorks(s);
    expect(s.allProtocolErrors()).toBe(1);
  });

  it("closes a socket that sends nothing within connect_timeout", async () => {
    const s = await scene({ connect_timeout: "200ms" });
    const silent = await rawConnect(s.gw.mqttPort);
    await silent.closedByServer();

    expect(silent.received()).toEqual([]);
    expect(silent.gotEnd).toBe(true);
    expect(s.closed("connect-timeout")).toBe(1);
    // A timeout is not a protocol violation.
    expect(s.allProtocolErrors()).toBe(0);
    await expectGoodClientStillWorks(s);
  });

  it("answers a SUBSCRIBE with an invalid filter with 0x80 and keeps the connection", async () => {
    const s = await scene();
    const raw = await rawConnect(s.gw.mqttPort);
    raw.write(connectPacket("raw-sub"));
    raw.write(
      gen({
        cmd: "subscribe",
        messageId: 0x0102,
        subscriptions: [
          { topic: "a/#/b", qos: 0 },
          { topic: "a/+", qos: 1 },
        ],
      }),
    );
    const SUBACK = [0x90, 0x04, 0x01, 0x02, 0x80, 0x01];
    await waitFor(() => raw.received().length >= CONNACK_ACCEPTED.length + SUBACK.length, {
      message: () => `no SUBACK; received ${Buffer.from(raw.received()).toString("hex")}`,
    });
    expect(raw.received()).toEqual([...CONNACK_ACCEPTED, ...SUBACK]);
    expect(
      s.gw.gateway.metrics.value("leafgate_mqtt_subscriptions_refused_total", {
        reason: "invalid-filter",
      }),
    ).toBe(1);

    // Still open and working: the granted a/+ gets the good client's QoS 1 message at QoS 1.
    await s.good.publishAsync("a/x", "hello", { qos: 1 });
    const PUBLISH = [0x32, 0x0c, 0x00, 0x03, 0x61, 0x2f, 0x78, 0x00, 0x01, ...Buffer.from("hello")];
    await waitFor(() => raw.received().length >= 4 + 6 + PUBLISH.length);
    expect(raw.received().slice(10)).toEqual(PUBLISH);
    raw.write([0x40, 0x02, 0x00, 0x01]); // PUBACK
    raw.write([0xc0, 0x00]); // PINGREQ
    await waitFor(() => raw.received().length >= 4 + 6 + PUBLISH.length + 2);
    expect(raw.received().slice(10 + PUBLISH.length)).toEqual([0xd0, 0x00]);
    expect(raw.isClosed).toBe(false);
    expect(s.allProtocolErrors()).toBe(0);
    expect(s.pending()).toBe(1);

    raw.write([0xe0, 0x00]); // DISCONNECT
    await raw.closedByServer();
    expect(s.closed("client-disconnect")).toBe(1);
  });

  it("mosquitto_pub itself refuses to publish to a wildcard topic", async () => {
    const s = await scene();
    const result = await runToCompletion("mosquitto_pub", [
      "-h",
      "127.0.0.1",
      "-p",
      String(s.gw.mqttPort),
      "-t",
      "a/+",
      "-q",
      "1",
      "-m",
      "never sent",
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("Invalid publish topic 'a/+'");
    // It refused before connecting: only the good client was ever accepted.
    expect(s.gw.gateway.metrics.value("leafgate_mqtt_connections_accepted_total", {})).toBe(1);
    expect(s.allProtocolErrors()).toBe(0);
    expect(s.pending()).toBe(0);
    await expectGoodClientStillWorks(s);
  });

  it("Python paho publishes QoS 1 to a normal topic into the outbox", async () => {
    const s = await scene();
    const script = [
      "import sys",
      "import paho.mqtt.client as mqtt",
      'c = mqtt.Client(client_id="paho-1", protocol=mqtt.MQTTv311)',
      'c.connect("127.0.0.1", int(sys.argv[1]))',
      "c.loop_start()",
      'info = c.publish("sensors/paho/temp", b"21.5", qos=1)',
      "info.wait_for_publish(timeout=10)",
      "ok = info.is_published()",
      "c.disconnect()",
      "c.loop_stop()",
      "sys.exit(0 if ok else 3)",
    ].join("\n");
    const result = await runToCompletion(SYSTEM_PYTHON, ["-c", script, String(s.gw.mqttPort)], {
      timeoutMs: 30_000,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(s.pending()).toBe(1);
    expect(s.gw.gateway.metrics.value("leafgate_mqtt_messages_received_total", { qos: "1" })).toBe(
      1,
    );
    expect(s.allProtocolErrors()).toBe(0);
  });
});
