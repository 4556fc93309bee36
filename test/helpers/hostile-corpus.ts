// Inputs that once broke the gateway, kept as data so that every suite driving a live
// gateway can replay them: test/e2e/hostile-corpus.test.ts pins what the server answers,
// and the sequence fuzzer seeds its runs with them (`HOSTILE_CORPUS`, `replayHostileCase`).
// Add an input here when it breaks something, with where it was found; never remove one.
//
// A case is a list of connections, run one after the other. Each connection writes its
// packets in one write (as a pipelining client would), reads the answers, then leaves as
// it says. The answers are pinned twice: under the default bounds, and with
// `mqtt.max_topic_length` and `mqtt.max_topic_levels` opened to their limits
// (`UNBOUNDED_MQTT`), so that the code behind the bounds is tested too, not only the bounds.
import mqtt from "mqtt-packet";
import type { GatewayConfigInput } from "./config.js";
import { type ProtocolLevel, RawMqtt } from "./raw-mqtt.js";

/** `mqtt:` settings that open the topic bounds as far as the config allows. */
export const UNBOUNDED_MQTT: GatewayConfigInput["mqtt"] = {
  max_topic_length: 65535,
  max_topic_levels: 65535,
};

/** Levels of the deep filters and topics: the review's stack overflow took ~10,000. */
export const DEEP_LEVELS = 30_000;

/** What the server answers one connection, and whether it then closes it. */
export interface HostileOutcome {
  /** One line per packet, as `summarize` writes them, e.g. "SUBACK 0x8f". */
  readonly answers: readonly string[];
  readonly closes: boolean;
}

export interface HostileConnection {
  readonly version: ProtocolLevel;
  /** Whole packets, written together in one write. */
  readonly packets: readonly Buffer[];
  /** How the client leaves when the server keeps it open: drop the socket, or DISCONNECT. */
  readonly leave: "vanish" | "disconnect";
  readonly bounded: HostileOutcome;
  readonly unbounded: HostileOutcome;
}

export interface HostileCase {
  readonly name: string;
  /** Where and how it was found, and what it broke. */
  readonly found: string;
  readonly connections: readonly HostileConnection[];
}

const encode = (packet: mqtt.Packet, version: ProtocolLevel): Buffer =>
  mqtt.generate(packet, { protocolVersion: version });

const connect = (
  version: ProtocolLevel,
  clientId: string,
  extra: Partial<mqtt.IConnectPacket> = {},
): Buffer =>
  encode(
    {
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: version,
      clientId,
      clean: true,
      keepalive: 60,
      ...extra,
    } as mqtt.IConnectPacket,
    version,
  );

const subscribe = (version: ProtocolLevel, messageId: number, topic: string, qos: 0 | 1 = 1) =>
  encode({ cmd: "subscribe", messageId, subscriptions: [{ topic, qos }] }, version);

const publish = (version: ProtocolLevel, messageId: number, topic: string, qos: 0 | 1 = 1) =>
  encode(
    {
      cmd: "publish",
      topic,
      payload: Buffer.from("x"),
      qos,
      dup: false,
      retain: false,
      messageId,
    },
    version,
  );

/** `level` repeated `levels` times, joined by `/`. */
export const levels = (level: string, count: number): string =>
  Array.from({ length: count }, () => level).join("/");

export const HOSTILE_CORPUS: readonly HostileCase[] = [
  {
    name: `a ${DEEP_LEVELS}-level filter in a persistent session that expires 1 s after its client vanished`,
    found:
      "security review (issue 10, finding 1): removing the subscription from the trie recursed " +
      "once per level, overflowed the stack in the session-expiry timer, and the uncaught " +
      "exception stopped the gateway",
    connections: [
      {
        version: 5,
        packets: [
          connect(5, "corpus-deep-expiry", { properties: { sessionExpiryInterval: 1 } }),
          subscribe(5, 1, levels("a", DEEP_LEVELS)),
        ],
        leave: "vanish",
        bounded: { answers: ["CONNACK 0x00", "SUBACK 0x8f"], closes: false },
        unbounded: { answers: ["CONNACK 0x00", "SUBACK 0x01"], closes: false },
      },
    ],
  },
  {
    name: `a ${DEEP_LEVELS}-level filter in a 3.1.1 clean session that ends with DISCONNECT`,
    found:
      "security review (issue 10, finding 1): the same recursive removal, reached at once when " +
      "a clean session ends",
    connections: [
      {
        version: 4,
        packets: [
          connect(4, "corpus-deep-clean"),
          subscribe(4, 1, `${levels("a", DEEP_LEVELS)}/#`),
        ],
        leave: "disconnect",
        bounded: { answers: ["CONNACK 0", "SUBACK 0x80"], closes: false },
        unbounded: { answers: ["CONNACK 0", "SUBACK 0x01"], closes: false },
      },
    ],
  },
  {
    name: `a filter of ${DEEP_LEVELS} "+" levels, then a PUBLISH it matches`,
    found:
      "security review (issue 10, finding 1): matching walked each `*` branch recursively, so " +
      "the PUBLISH overflowed the stack (and its client was cut as 'malformed'), and ending " +
      "the session overflowed it again in the removal",
    connections: [
      {
        version: 5,
        packets: [
          connect(5, "corpus-plus-chain"),
          subscribe(5, 1, levels("+", DEEP_LEVELS)),
          publish(5, 0, levels("a", DEEP_LEVELS), 0),
        ],
        leave: "disconnect",
        // Past max_topic_levels the PUBLISH is a bad topic name [MQTT-3.3.2], closed 0x90.
        bounded: { answers: ["CONNACK 0x00", "SUBACK 0x8f", "DISCONNECT 0x90"], closes: true },
        // Delivered back to its publisher: the subscription matches it.
        unbounded: { answers: ["CONNACK 0x00", "SUBACK 0x01", "PUBLISH"], closes: false },
      },
    ],
  },
  {
    name: 'a shared subscription whose group is not one NATS token ("$share/a.b/x")',
    found:
      "issue 10 review of the filter checks: the group became a bus queue group, which " +
      "refused it by throwing, so a well-formed SUBSCRIBE closed its connection as 'malformed'",
    connections: [
      {
        version: 5,
        packets: [connect(5, "corpus-share-dot"), subscribe(5, 1, "$share/a.b/x")],
        leave: "disconnect",
        bounded: { answers: ["CONNACK 0x00", "SUBACK 0x8f"], closes: false },
        unbounded: { answers: ["CONNACK 0x00", "SUBACK 0x8f"], closes: false },
      },
    ],
  },
  {
    name: "a 3.1.1 PUBACK whose header declares 8,860 bytes, then a QoS 2 PUBLISH",
    found:
      "sequence fuzzer (seed 782552064, issue 10): the connection waited for a body no PUBACK " +
      "has, swallowing the PUBLISH after it, which was never answered",
    connections: [
      {
        version: 4,
        packets: [
          connect(4, "corpus-huge-puback"),
          Buffer.from("409c456b6f39fdfae47b8bd9", "hex"),
          publish(4, 7, "corpus/huge-puback"),
        ],
        leave: "vanish",
        // Refused at the header: malformed, closed at once (3.1.1 has no DISCONNECT to send).
        bounded: { answers: ["CONNACK 0"], closes: true },
        unbounded: { answers: ["CONNACK 0"], closes: true },
      },
    ],
  },
];

/** What the server wrote, one line per packet: "CONNACK 0x00", "SUBACK 0x8f", "PUBLISH". */
export function summarize(raw: RawMqtt): string[] {
  const code = (n: number | undefined) => `0x${(n ?? 0).toString(16).padStart(2, "0")}`;
  const out = raw.packets.map((p) => {
    switch (p.cmd) {
      case "connack":
        return raw.version === 5 ? `CONNACK ${code(p.reasonCode)}` : `CONNACK ${p.returnCode}`;
      case "disconnect":
      case "puback":
      case "pubrec":
      case "pubcomp":
        return `${p.cmd.toUpperCase()} ${code(p.reasonCode)}`;
      case "suback":
      case "unsuback":
        return [p.cmd.toUpperCase(), ...((p.granted ?? []) as number[]).map(code)].join(" ");
      default:
        return p.cmd.toUpperCase();
    }
  });
  if (raw.parseError) out.push(`unparseable (${raw.parseError.message})`);
  return out;
}

/** How long one connection's answers may take on a loaded machine. */
const ANSWER_DEADLINE_MS = 5_000;

/**
 * Plays `c` against the MQTT listener on `port`: each connection writes its packets, waits
 * until the server closed it or (PINGREQ, PINGRESP) has answered everything, then leaves.
 * Returns the outcome of each connection, in order.
 */
export async function replayHostileCase(port: number, c: HostileCase): Promise<HostileOutcome[]> {
  const outcomes: HostileOutcome[] = [];
  for (const conn of c.connections) {
    const raw = await RawMqtt.open(port, conn.version);
    try {
      raw.write(Buffer.concat(conn.packets));
      raw.write([0xc0, 0x00]); // PINGREQ: its PINGRESP says every packet before it was handled
      await Promise.race([
        raw.next("pingresp", undefined, ANSWER_DEADLINE_MS),
        raw.closed.then(() => undefined),
      ]);
      const closes = raw.isClosed;
      outcomes.push({ answers: summarize(raw).filter((line) => line !== "PINGRESP"), closes });
      if (!closes && conn.leave === "disconnect") {
        raw.write([0xe0, 0x00]);
        await raw.closedByServer(ANSWER_DEADLINE_MS);
      }
    } finally {
      await raw.destroy();
    }
  }
  return outcomes;
}
