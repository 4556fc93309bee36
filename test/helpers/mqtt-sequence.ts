// Packet *sequences* across several MQTT connections against a live gateway, and the
// invariants checked after each one (issue 10, "fuzzing beyond single packets").
//
// A sequence is a JSON array of ops (so a failing one can be kept in test/corpus/sequences
// and replayed as it is). Ops act on a few connection slots: connect (MQTT 3.1.1 or 5, as
// one of two users with disjoint permissions, one of three client ids, clean session on
// or off, with or without a will — on the user's own subjects or the other's), subscribe,
// unsubscribe, publish QoS 0-2 (waiting for the ack or not, QoS 2 released or left
// open), filters and topics thousands of levels deep or kilobytes long, PINGREQ,
// DISCONNECT, vanish (the socket dropped without DISCONNECT) and raw bytes. Two slots
// connecting with one client id is a takeover; connecting again with clean session off
// resumes a session.
//
// Every name a sequence uses is scoped by its run's tag, so runs do not see each other:
// topics `<a|b>/<tag>/...`, client ids `<tag>-k<n>`. Payloads say who published them,
// `<user>|<tag>|<kind><n>`, so every delivery and every stored message can be traced.
//
// Invariants (checked by `checkSequence`, after every connection of the run is gone):
//  1. The gateway process is alive, and a fresh client connects, subscribes, publishes
//     QoS 1 and receives its own message (the probe).
//  2. No cross-user delivery: a connection logged in as user U receives only messages U
//     published (alice may use `a.>` alone, bob `b.>` alone, so anything else came through
//     a hole: a session taken across users, a will or retained message that bypassed the
//     publish permissions).
//  3. In the hub stream (read after the outbox is empty): a message on `<prefix>.a.>` was
//     published by alice, on `<prefix>.b.>` by bob; no payload is there twice, in this run
//     or any before it; every QoS 1 PUBLISH a client had a PUBACK for (QoS 2: a PUBREC),
//     on its own user's subjects, is there exactly once; nothing published — or willed —
//     on the other user's subjects is there.
//  4. Every answer the client waits for (CONNACK, SUBACK, UNSUBACK, PUBACK, PUBREC,
//     PUBCOMP, PINGRESP) comes within ANSWER_TIMEOUT_MS unless the server closed the
//     connection or raw bytes went down it first, and the server's bytes parse as MQTT.
//  5. Sessions end when they should: once the run's connections are gone, the gateway
//     holds at most the sessions it held before plus the run's long-lived ones (a 1 s
//     MQTT 5 session ends by its expiry timer, and is waited for).
import { scryptSync } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import fc from "fast-check";
import type mqtt from "mqtt-packet";
import type { GatewayConfigInput } from "./config.js";
import { CLOSED, SequenceClient, TIMEOUT, type Version } from "./sequence-client.js";
import type { StreamCursor } from "./stream-cursor.js";
import { waitFor } from "./wait.js";

// -- the two users ----------------------------------------------------------------------

export const USERS = {
  alice: { password: "pw-alice", space: "a" },
  bob: { password: "pw-bob", space: "b" },
} as const;
export type UserName = keyof typeof USERS;
const USER_NAMES = Object.keys(USERS) as UserName[];
const OWNER_OF_SPACE: Record<string, UserName> = { a: "alice", b: "bob" };

/**
 * scrypt cost of the test users' hashes: 1/16th of `leafgate passwd`'s, so that a connect
 * costs a millisecond here, not the ~50 ms that is the point in production. The hash
 * format names its parameters, and the gateway verifies whatever they say.
 */
const TEST_SCRYPT_N = 1024;

/** A hash in `leafgate passwd`'s format, `$scrypt$N=..,r=8,p=1$<salt>$<key>`, cheap to check. */
export function cheapPasswordHash(password: string): string {
  const salt = Buffer.from("leafgate-fuzz-salt");
  const key = scryptSync(password, salt, 32, { N: TEST_SCRYPT_N, r: 8, p: 1 });
  return `$scrypt$N=${TEST_SCRYPT_N},r=8,p=1$${salt.toString("base64")}$${key.toString("base64")}`;
}

/**
 * The `authorization:` section of a gateway config (with `mqtt.allow_anonymous: false`): alice may
 * publish and subscribe on `a.>` only, bob on `b.>` only, nobody else at all.
 */
export function sequenceAuthorization(): GatewayConfigInput["authorization"] {
  return {
    default_permissions: { publish: { deny: [">"] }, subscribe: { deny: [">"] } },
    users: USER_NAMES.map((u) => ({
      user: u,
      password: cheapPasswordHash(USERS[u].password),
      permissions: {
        publish: { allow: [`${USERS[u].space}.>`] },
        subscribe: { allow: [`${USERS[u].space}.>`] },
      },
    })),
  };
}

// -- ops ------------------------------------------------------------------------------------

export type QoS = 0 | 1 | 2;

export interface WillSpec {
  /** Whose subjects the will is on: the connecting user's own, or the other's. */
  readonly space: UserName;
  readonly topic: number;
  readonly qos: QoS;
  readonly retain: boolean;
}

export type Op =
  | {
      readonly op: "connect";
      readonly slot: number;
      readonly user: UserName;
      /** Index of the client id: `<tag>-k<client>`. */
      readonly client: number;
      readonly v: Version;
      readonly clean: boolean;
      /** MQTT 5 Session Expiry Interval (s); 3.1.1 keeps a session when clean is false. */
      readonly expiry?: number;
      readonly will?: WillSpec;
      /** Whether the client answers deliveries; false: it never acks one. */
      readonly acks: boolean;
    }
  | {
      readonly op: "subscribe";
      readonly slot: number;
      /** A filter under one user's subjects, or "any": one that spans both. */
      readonly space: UserName | "any";
      readonly filter: number;
      readonly qos: QoS;
    }
  | {
      readonly op: "unsubscribe";
      readonly slot: number;
      readonly space: UserName | "any";
      readonly filter: number;
    }
  | {
      readonly op: "publish";
      readonly slot: number;
      /** "own": the publishing connection's user's subjects. */
      readonly space: UserName | "own";
      readonly topic: number;
      readonly qos: QoS;
      readonly retain: boolean;
      /** Wait for the ack before the next op; false: the next op follows at once. */
      readonly wait: boolean;
      /** QoS 2: send PUBREL after PUBREC; false leaves the exchange open. */
      readonly release: boolean;
    }
  | {
      /** A filter or topic with `levels` levels under the user's own subjects. */
      readonly op: "deep";
      readonly slot: number;
      readonly levels: number;
      readonly what: "subscribe-literal" | "subscribe-plus" | "publish";
    }
  | {
      /**
       * A topic or filter of exactly `bytes` bytes in levels of LONG_LEVEL_BYTES under the
       * user's own subjects: long, but few levels.
       */
      readonly op: "long";
      readonly slot: number;
      readonly bytes: number;
      readonly what: "subscribe" | "publish";
    }
  | { readonly op: "ping"; readonly slot: number }
  | {
      readonly op: "disconnect";
      readonly slot: number;
      /** MQTT 5 reason 0x04, Disconnect with Will Message. */
      readonly keepWill: boolean;
    }
  | { readonly op: "vanish"; readonly slot: number }
  /** Bytes as they are; on an empty slot they go to a fresh socket (before any CONNECT). */
  | { readonly op: "raw"; readonly slot: number; readonly hex: string }
  /**
   * Time passes (a session's expiry, a will's delay): not generated, for corpus entries
   * whose point is a timer. Bounded by MAX_WAIT_MS.
   */
  | { readonly op: "wait"; readonly ms: number };

export type Sequence = readonly Op[];

/** A corpus entry: a sequence that once broke an invariant, and why it is kept. */
export interface CorpusEntry {
  readonly name: string;
  /** Where it came from: a fuzz seed, a finding of issue 10. */
  readonly origin: string;
  readonly ops: Sequence;
}

export const SLOTS = 4;
export const CLIENT_IDS = 3;
const TOPICS = ["t1", "t2/x", "t2/y"] as const;
const OWN_FILTERS = ["#", "t1", "t2/+", "+/x", "t2/#", "+"] as const;
/** Filters spanning both users' subjects: refused to either. `<tag>` is the run's tag. */
const ANY_FILTERS = ["#", "+/<tag>/#", "+/<tag>/t1"] as const;
/** A MQTT 5 session that outlives its connection by an hour (the run is over long before). */
const PERSISTENT_EXPIRY_S = 3600;
/** ... or by a second: it ends by its timer, within the run (checkSequence waits for it). */
const SHORT_EXPIRY_S = 1;
/** Deep filter and topic sizes: shallow, past any sane limit, and the ~30,000 of finding 1. */
const DEEP_LEVELS = [10, 1000, 30_000] as const;
/**
 * Long topic and filter sizes: 1024 bytes (mqtt.max_topic_length's default: the longest the
 * gateway accepts, which must still reach the hub), 4096 (past it; with the hub's prefix
 * and reply subject a PUB line past nats-server's 4 KB max_control_line) and 65,000 (near
 * MQTT's 65,535).
 */
const LONG_BYTES = [1024, 4096, 65_000] as const;
const LONG_LEVEL_BYTES = 127;

const topicOf = (space: UserName, tag: string, topic: number): string =>
  `${USERS[space].space}/${tag}/${TOPICS[topic % TOPICS.length]}`;

function filterOf(space: UserName | "any", tag: string, filter: number): string {
  if (space === "any") return ANY_FILTERS[filter % ANY_FILTERS.length]!.replace("<tag>", tag);
  return `${USERS[space].space}/${tag}/${OWN_FILTERS[filter % OWN_FILTERS.length]}`;
}

function deepOf(user: UserName, tag: string, op: Extract<Op, { op: "deep" }>): string {
  const level = op.what === "subscribe-plus" ? "+" : "x";
  return `${USERS[user].space}/${tag}/${Array.from({ length: op.levels }, () => level).join("/")}`;
}

function longOf(user: UserName, tag: string, op: Extract<Op, { op: "long" }>): string {
  let name = `${USERS[user].space}/${tag}`;
  while (name.length + 1 < op.bytes) {
    name += `/${"x".repeat(Math.min(LONG_LEVEL_BYTES, op.bytes - name.length - 1))}`;
  }
  return name;
}

// -- generators -------------------------------------------------------------------------------

const slotArb = fc.integer({ min: 0, max: SLOTS - 1 });
const userArb = fc.constantFrom<UserName>(...USER_NAMES);
const qosArb = fc.constantFrom<QoS>(0, 1, 2);

const connectArb: fc.Arbitrary<Op> = fc
  .record({
    slot: slotArb,
    user: userArb,
    client: fc.integer({ min: 0, max: CLIENT_IDS - 1 }),
    v: fc.constantFrom<Version>(4, 5),
    clean: fc.boolean(),
    expiry: fc.oneof(
      { arbitrary: fc.constant(0), weight: 2 },
      { arbitrary: fc.constant(SHORT_EXPIRY_S), weight: 1 },
      { arbitrary: fc.constant(PERSISTENT_EXPIRY_S), weight: 2 },
    ),
    will: fc.option(
      fc.record({
        space: userArb,
        topic: fc.integer({ min: 0, max: TOPICS.length - 1 }),
        qos: qosArb,
        retain: fc.boolean(),
      }),
      { nil: undefined, freq: 2 },
    ),
    acks: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, fc.constant(false)),
  })
  .map(({ expiry, will, ...c }) => ({
    op: "connect" as const,
    ...c,
    ...(c.v === 5 ? { expiry } : {}),
    ...(will !== undefined ? { will } : {}),
  }));

/** One op; every kind is reachable, weighted towards the ones that change the most state. */
export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: connectArb, weight: 5 },
  {
    arbitrary: fc.record({
      op: fc.constant("subscribe" as const),
      slot: slotArb,
      space: fc.oneof(
        { arbitrary: userArb, weight: 4 },
        { arbitrary: fc.constant("any" as const), weight: 1 },
      ),
      filter: fc.nat({ max: OWN_FILTERS.length - 1 }),
      qos: qosArb,
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("unsubscribe" as const),
      slot: slotArb,
      space: userArb,
      filter: fc.nat({ max: OWN_FILTERS.length - 1 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("publish" as const),
      slot: slotArb,
      space: fc.oneof({ arbitrary: fc.constant("own" as const), weight: 3 }, userArb),
      topic: fc.nat({ max: TOPICS.length - 1 }),
      qos: qosArb,
      retain: fc.oneof({ arbitrary: fc.constant(false), weight: 3 }, fc.constant(true)),
      wait: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, fc.constant(false)),
      release: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, fc.constant(false)),
    }),
    weight: 8,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("deep" as const),
      slot: slotArb,
      levels: fc.constantFrom(...DEEP_LEVELS),
      what: fc.constantFrom(
        "subscribe-literal" as const,
        "subscribe-plus" as const,
        "publish" as const,
      ),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("long" as const),
      slot: slotArb,
      bytes: fc.constantFrom(...LONG_BYTES),
      what: fc.constantFrom("subscribe" as const, "publish" as const),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ op: fc.constant("ping" as const), slot: slotArb }), weight: 1 },
  {
    arbitrary: fc.record({
      op: fc.constant("disconnect" as const),
      slot: slotArb,
      keepWill: fc.boolean(),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant("vanish" as const), slot: slotArb }), weight: 2 },
  {
    arbitrary: fc.record({
      op: fc.constant("raw" as const),
      slot: slotArb,
      hex: fc
        .uint8Array({ minLength: 1, maxLength: 16 })
        .map((b) => Buffer.from(b).toString("hex")),
    }),
    weight: 1,
  },
) as fc.Arbitrary<Op>;

/**
 * A sequence: a connect first (anything before one is skipped), then up to `maxOps` more.
 * Publishes whose space was drawn as "own" are bound to the publishing slot's user when the
 * sequence runs, so most publishes are allowed ones.
 */
export function sequenceArb(maxOps = 24): fc.Arbitrary<Op[]> {
  return fc
    .tuple(connectArb, fc.array(opArb, { maxLength: maxOps }))
    .map(([first, rest]) => [first, ...rest]);
}

// -- running a sequence ---------------------------------------------------------------------------

/** A corpus entry's `wait` op waits at most this long. */
const MAX_WAIT_MS = 5_000;

/** An answer the client waits for must come within this, however busy the machine. */
export const ANSWER_TIMEOUT_MS = 5_000;
/** How long an answer that is not owed (see Slot.unframed) is waited for. */
const UNOWED_ANSWER_MS = 500;

export interface PublishRecord {
  readonly id: string;
  readonly user: UserName;
  readonly space: UserName;
  readonly qos: QoS;
  /** PUBACK (QoS 1) or PUBREC (QoS 2) received with a success code. */
  acked: boolean;
}

export interface WillRecord {
  readonly id: string;
  readonly user: UserName;
  readonly space: UserName;
}

interface Slot {
  client: SequenceClient;
  /** Logged in as (undefined for a socket that only got raw bytes). */
  user: UserName | undefined;
  connected: boolean;
  /**
   * Raw bytes were written: the server may rightly be inside a packet they began (a 5.0
   * PUBACK may declare kilobytes of properties), so its answers are no longer owed.
   */
  unframed: boolean;
}

export interface SequenceRun {
  readonly tag: string;
  readonly published: PublishRecord[];
  readonly wills: WillRecord[];
  /** Every connection of the run, with the user it logged in as. */
  readonly connections: { client: SequenceClient; user: UserName | undefined }[];
  readonly violations: string[];
  /** What each op did, for a failure message. */
  readonly log: string[];
  /**
   * Sessions of the run that must outlive it: client ids whose last accepted CONNECT
   * asked for a long one (3.1.1 clean session 0, MQTT 5 expiry PERSISTENT_EXPIRY_S).
   */
  longSessions: number;
}

/** Packet ids come from one counter per run, so no id is reused while a flow may be open. */
class PacketIds {
  #next = 1;
  take(): number {
    const id = this.#next;
    this.#next = this.#next === 0xffff ? 1 : this.#next + 1;
    return id;
  }
}

/** Why an answer did not come, for the log. */
const gone = (slot: Slot): string => (slot.client.isClosed ? "closed" : "no answer (timed out)");

const successful = (p: mqtt.Packet): boolean => {
  const code = (p as { reasonCode?: number }).reasonCode ?? 0;
  return code < 0x80;
};

/**
 * Runs `ops` against the MQTT listener on `port` with names scoped by `tag`; returns what
 * was published and acknowledged, every connection, and the violations of invariant 4.
 * Every connection is closed (vanished) when it returns.
 */
export async function runSequence(
  port: number,
  tag: string,
  ops: Sequence,
  opts: { localAddress?: string } = {},
): Promise<SequenceRun> {
  const run: SequenceRun = {
    tag,
    published: [],
    wills: [],
    connections: [],
    violations: [],
    log: [],
    longSessions: 0,
  };
  /** Per client id: whether its last accepted CONNECT asked for a long session. */
  const sessionKept = new Map<number, boolean>();
  const slots = new Map<number, Slot>();
  const ids = new PacketIds();
  const background: Promise<void>[] = [];
  let counter = 0;
  const payloadId = (kind: string): string => `${kind}${counter++}`;

  const open = async (
    version: Version,
    user: UserName | undefined,
    acks: boolean,
  ): Promise<SequenceClient | undefined> => {
    const client = await SequenceClient.open(port, version, {
      user: user ?? "raw",
      acks,
      ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    });
    if (client !== undefined) run.connections.push({ client, user });
    return client;
  };

  /** Waits for an answer; records a violation when none comes on an open connection. */
  const answer = async (
    slot: Slot,
    what: string,
    match: (p: mqtt.Packet) => boolean,
  ): Promise<mqtt.Packet | undefined> => {
    const p = await slot.client.next(match, slot.unframed ? UNOWED_ANSWER_MS : ANSWER_TIMEOUT_MS);
    if (p === TIMEOUT) {
      if (slot.unframed) return undefined;
      run.violations.push(`no ${what} within ${ANSWER_TIMEOUT_MS} ms on an open connection`);
      return undefined;
    }
    if (p === CLOSED) {
      slot.connected = false;
      return undefined;
    }
    return p;
  };

  for (const [i, op] of ops.entries()) {
    if (op.op === "wait") {
      await delay(Math.min(op.ms, MAX_WAIT_MS));
      run.log.push(`#${i} ${JSON.stringify(op)}`);
      continue;
    }
    const slot = slots.get(op.slot);
    const live = slot !== undefined && !slot.client.isClosed && slot.connected;
    const note = (what: string): void => {
      run.log.push(`#${i} ${JSON.stringify(op)}${what ? ` -> ${what}` : ""}`);
    };

    if (op.op === "connect") {
      const client = await open(op.v, op.user, op.acks);
      if (client === undefined) {
        note("socket refused");
        continue;
      }
      const fresh: Slot = { client, user: op.user, connected: false, unframed: false };
      slots.set(op.slot, fresh); // an older connection in the slot stays open, unreachable
      let will: mqtt.IConnectPacket["will"];
      if (op.will !== undefined) {
        const id = payloadId("w");
        run.wills.push({ id, user: op.user, space: op.will.space });
        will = {
          topic: topicOf(op.will.space, tag, op.will.topic),
          payload: Buffer.from(`${op.user}|${tag}|${id}`),
          qos: op.will.qos,
          retain: op.will.retain,
        };
      }
      client.send({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: op.v,
        clientId: `${tag}-k${op.client}`,
        clean: op.clean,
        keepalive: 60,
        username: op.user,
        password: Buffer.from(USERS[op.user].password),
        ...(will !== undefined ? { will } : {}),
        ...(op.v === 5 ? { properties: { sessionExpiryInterval: op.expiry ?? 0 } } : {}),
      } as mqtt.IConnectPacket);
      const connack = await answer(fresh, "CONNACK", (p) => p.cmd === "connack");
      const code = connack as mqtt.IConnackPacket | undefined;
      fresh.connected = code !== undefined && (code.returnCode ?? code.reasonCode ?? 0) === 0;
      if (fresh.connected) {
        sessionKept.set(op.client, op.v === 4 ? !op.clean : op.expiry === PERSISTENT_EXPIRY_S);
      }
      note(
        code === undefined
          ? gone(fresh)
          : `connack ${code.returnCode ?? code.reasonCode} present=${code.sessionPresent}`,
      );
      continue;
    }

    if (op.op === "raw") {
      let target = slot;
      if (target === undefined || target.client.isClosed) {
        const client = await open(4, undefined, true);
        if (client === undefined) {
          note("socket refused");
          continue;
        }
        target = { client, user: undefined, connected: false, unframed: true };
        slots.set(op.slot, target);
      }
      target.unframed = true;
      target.client.write(Buffer.from(op.hex, "hex"));
      note("");
      continue;
    }

    if (!live) {
      note("skipped: slot not connected");
      continue;
    }
    const user = slot.user!;
    const { client } = slot;

    switch (op.op) {
      case "subscribe": {
        const messageId = ids.take();
        const topic = filterOf(op.space, tag, op.filter);
        client.send({ cmd: "subscribe", messageId, subscriptions: [{ topic, qos: op.qos }] });
        const suback = await answer(
          slot,
          "SUBACK",
          (p) => p.cmd === "suback" && p.messageId === messageId,
        );
        note(
          suback ? `suback ${JSON.stringify((suback as mqtt.ISubackPacket).granted)}` : gone(slot),
        );
        break;
      }
      case "unsubscribe": {
        const messageId = ids.take();
        client.send({
          cmd: "unsubscribe",
          messageId,
          unsubscriptions: [filterOf(op.space, tag, op.filter)],
        });
        const unsuback = await answer(
          slot,
          "UNSUBACK",
          (p) => p.cmd === "unsuback" && p.messageId === messageId,
        );
        note(unsuback ? "unsuback" : gone(slot));
        break;
      }
      case "publish": {
        const space = op.space === "own" ? user : op.space;
        const id = payloadId("p");
        const record: PublishRecord = { id, user, space, qos: op.qos, acked: false };
        run.published.push(record);
        const messageId = op.qos > 0 ? ids.take() : undefined;
        client.send({
          cmd: "publish",
          topic: topicOf(space, tag, op.topic),
          payload: Buffer.from(`${user}|${tag}|${id}`),
          qos: op.qos,
          retain: op.retain,
          dup: false,
          ...(messageId !== undefined ? { messageId } : {}),
        });
        const exchange = publishExchange(slot, op, messageId, record, answer);
        if (op.wait) note(await exchange);
        else {
          background.push(exchange.then((what) => void run.log.push(`#${i} (later) ${what}`)));
          note("not waited for");
        }
        break;
      }
      case "deep":
      case "long": {
        const name = op.op === "deep" ? deepOf(user, tag, op) : longOf(user, tag, op);
        if (op.what === "publish") {
          const id = payloadId("d");
          const record: PublishRecord = { id, user, space: user, qos: 1, acked: false };
          run.published.push(record);
          const messageId = ids.take();
          client.send({
            cmd: "publish",
            topic: name,
            payload: Buffer.from(`${user}|${tag}|${id}`),
            qos: 1,
            retain: false,
            dup: false,
            messageId,
          });
          const puback = await answer(
            slot,
            "PUBACK",
            (p) => p.cmd === "puback" && p.messageId === messageId,
          );
          if (puback !== undefined) record.acked = successful(puback);
          note(puback ? `puback ${(puback as mqtt.IPubackPacket).reasonCode ?? 0}` : gone(slot));
        } else {
          const messageId = ids.take();
          client.send({ cmd: "subscribe", messageId, subscriptions: [{ topic: name, qos: 1 }] });
          const suback = await answer(
            slot,
            "SUBACK",
            (p) => p.cmd === "suback" && p.messageId === messageId,
          );
          note(
            suback
              ? `suback ${JSON.stringify((suback as mqtt.ISubackPacket).granted)}`
              : gone(slot),
          );
        }
        break;
      }
      case "ping": {
        client.send({ cmd: "pingreq" });
        note(
          (await answer(slot, "PINGRESP", (p) => p.cmd === "pingresp")) ? "pingresp" : gone(slot),
        );
        break;
      }
      case "disconnect": {
        client.send(
          client.version === 5 && op.keepWill
            ? { cmd: "disconnect", reasonCode: 0x04 }
            : { cmd: "disconnect" },
        );
        client.socket.end();
        slot.connected = false;
        note("");
        break;
      }
      case "vanish": {
        await client.destroy();
        slot.connected = false;
        note("");
        break;
      }
    }
  }

  await Promise.all(background);
  run.longSessions = [...sessionKept.values()].filter(Boolean).length;
  for (const { client } of run.connections) {
    if (client.parseError !== undefined) {
      run.violations.push(`the server sent bytes that do not parse: ${client.parseError.message}`);
    }
    await client.destroy();
  }
  return run;
}

/** The ack half of a publish; resolves with what happened, for the log. */
async function publishExchange(
  slot: Slot,
  op: Extract<Op, { op: "publish" }>,
  messageId: number | undefined,
  record: PublishRecord,
  answer: (
    slot: Slot,
    what: string,
    match: (p: mqtt.Packet) => boolean,
  ) => Promise<mqtt.Packet | undefined>,
): Promise<string> {
  if (op.qos === 0 || messageId === undefined) return "sent";
  const ackCmd = op.qos === 1 ? "puback" : "pubrec";
  const ack = await answer(
    slot,
    ackCmd.toUpperCase(),
    (p) => p.cmd === ackCmd && p.messageId === messageId,
  );
  if (ack === undefined) return `${gone(slot)} before the ack`;
  record.acked = successful(ack);
  const code = (ack as { reasonCode?: number }).reasonCode ?? 0;
  if (op.qos === 1 || !record.acked || !op.release) return `${ackCmd} ${code}`;
  slot.client.send({ cmd: "pubrel", messageId });
  const pubcomp = await answer(
    slot,
    "PUBCOMP",
    (p) => p.cmd === "pubcomp" && p.messageId === messageId,
  );
  return pubcomp ? `pubrec ${code}, pubcomp` : `pubrec ${code}, ${gone(slot)} before pubcomp`;
}

// -- invariants -------------------------------------------------------------------------------

export interface CheckTarget {
  readonly mqttPort: number;
  /** Whether the gateway process is still running. */
  alive(): boolean;
  /** The gateway's outbox: messages not yet acknowledged by the hub. */
  pending(): Promise<number>;
  /** Open MQTT connections (CONNECT sent or not), from /status. */
  connections(): Promise<number>;
  /** MQTT sessions, connected or not (`leafgate_mqtt_sessions`). */
  sessions(): Promise<number>;
  /** The gateway's subject prefix in the hub, e.g. `edge.gw1`. */
  readonly prefix: string;
  readonly cursor: StreamCursor;
  /** Payload ids ever seen in the stream (by every run of this gateway's hub). */
  readonly seen: Set<string>;
}

interface Parsed {
  user: string;
  tag: string;
  id: string;
}

function parsePayload(data: Uint8Array): Parsed | undefined {
  const parts = Buffer.from(data).toString("utf8").split("|");
  if (parts.length !== 3) return undefined;
  return { user: parts[0]!, tag: parts[1]!, id: parts[2]! };
}

/** Connections closing and sessions expiring (SHORT_EXPIRY_S) take at most this. */
const SETTLE_TIMEOUT_MS = 5_000;

/** The payload id of a run's probe message. */
const PROBE_ID = "probe";

/** How long the outbox may take to empty into a healthy hub after a run. */
const DRAIN_TIMEOUT_MS = 15_000;

/**
 * Checks invariants 1-3 after `run` (invariant 4 was checked while it ran); returns every
 * violation found (empty: the run passed).
 */
export async function checkSequence(
  target: CheckTarget,
  run: SequenceRun,
  sessionsBefore: number,
): Promise<string[]> {
  const violations = [...run.violations];
  const { tag } = run;
  if (!target.alive()) return [...violations, "the gateway process exited"];

  // Every connection of the run is closed on our side; the gateway sees it soon. Then
  // the run's sessions end, by their expiry timers too: all but the long ones (5).
  const settled = async (what: string, ok: () => Promise<boolean>): Promise<void> => {
    try {
      await waitFor(ok, { timeoutMs: SETTLE_TIMEOUT_MS });
    } catch {
      violations.push(what);
    }
  };
  await settled("the gateway still counts connections of a finished run", async () => {
    return (await target.connections()) === 0;
  });
  // At most: a bound on sessions (evicting old ones) may leave fewer, never more.
  const expected = sessionsBefore + run.longSessions;
  await settled(`the run's sessions did not end: expected at most ${expected}`, async () => {
    return !target.alive() || (await target.sessions()) <= expected;
  });
  if (!target.alive()) return [...violations, "the gateway process exited"];

  // 1. A fresh client gets through: connect, subscribe, publish QoS 1, receive it. Its
  // PUBACK also comes after every commit of the run (one commit queue, in order).
  const probe = await SequenceClient.open(target.mqttPort, 5, { user: "alice", acks: true });
  if (probe === undefined) return [...violations, "a fresh client could not open a socket"];
  try {
    const probeTopic = `a/${tag}/probe`;
    const ask = async (what: string, packet: mqtt.Packet, ok: (p: mqtt.Packet) => boolean) => {
      probe.send(packet);
      const p = await probe.next((x) => x.cmd === what.toLowerCase(), ANSWER_TIMEOUT_MS);
      if (p === CLOSED || p === TIMEOUT || !ok(p)) {
        throw new Error(`a fresh client got no good ${what}: ${JSON.stringify(p)}`);
      }
    };
    try {
      await ask(
        "CONNACK",
        {
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 5,
          clientId: `${tag}-probe`,
          clean: true,
          keepalive: 60,
          username: "alice",
          password: Buffer.from(USERS.alice.password),
        },
        (p) => (p as mqtt.IConnackPacket).reasonCode === 0,
      );
      await ask(
        "SUBACK",
        { cmd: "subscribe", messageId: 1, subscriptions: [{ topic: probeTopic, qos: 1 }] },
        (p) => (p as mqtt.ISubackPacket).granted[0] === 1,
      );
      await ask(
        "PUBACK",
        {
          cmd: "publish",
          topic: probeTopic,
          payload: Buffer.from(`alice|${tag}|${PROBE_ID}`),
          qos: 1,
          retain: false,
          dup: false,
          messageId: 2,
        },
        (p) => ((p as mqtt.IPubackPacket).reasonCode ?? 0) === 0,
      );
      await waitFor(() => probe.deliveries.length > 0, { timeoutMs: ANSWER_TIMEOUT_MS });
    } catch (err) {
      return [...violations, (err as Error).message];
    }
    run.connections.push({ client: probe, user: "alice" });
  } finally {
    await probe.destroy();
  }

  // 2. No cross-user delivery.
  for (const { client, user } of run.connections) {
    if (user === undefined) continue;
    for (const d of client.deliveries) {
      const p = parsePayload(d.payload as Buffer);
      if (p === undefined || p.user !== user) {
        violations.push(
          `${user} received a message published by ${p?.user ?? "nobody of this run"}: ` +
            `${d.topic} ${Buffer.from(d.payload as Buffer).toString()}`,
        );
      }
    }
  }

  // 3. The hub stream, once the outbox is empty.
  try {
    await waitFor(async () => (await target.pending()) === 0, { timeoutMs: DRAIN_TIMEOUT_MS });
  } catch {
    return [...violations, `the outbox did not empty into the hub within ${DRAIN_TIMEOUT_MS} ms`];
  }
  const count = new Map<string, number>();
  for (const m of await target.cursor.read()) {
    const subjectSpace = m.subject.slice(target.prefix.length + 1).split(".")[0]!;
    const p = parsePayload(m.data);
    if (p === undefined) continue; // not from a sequence run (nothing else publishes here)
    const key = `${p.tag}|${p.id}`;
    if (target.seen.has(key)) violations.push(`stored twice in the hub: ${key} (${m.subject})`);
    target.seen.add(key);
    if (OWNER_OF_SPACE[subjectSpace] !== p.user) {
      violations.push(`${p.user}'s message stored on ${m.subject} in the hub`);
    }
    if (p.tag === tag) count.set(p.id, (count.get(p.id) ?? 0) + 1);
  }
  if (count.get(PROBE_ID) !== 1) violations.push("the probe's message is not in the hub once");
  for (const r of run.published) {
    const n = count.get(r.id) ?? 0;
    if (r.space !== r.user && n > 0) {
      violations.push(`${r.user}'s publish on ${r.space}'s subjects reached the hub (${r.id})`);
    }
    if (r.space === r.user && r.acked && n !== 1) {
      violations.push(`acknowledged QoS ${r.qos} message ${r.id} is in the hub ${n} times`);
    }
  }
  for (const w of run.wills) {
    if (w.space !== w.user && (count.get(w.id) ?? 0) > 0) {
      violations.push(`${w.user}'s will on ${w.space}'s subjects reached the hub (${w.id})`);
    }
  }
  return violations;
}
