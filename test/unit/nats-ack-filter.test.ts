// The proxy's PubAck filter (test/helpers/nats-ack-filter.ts) on a recorded-style NATS
// session, fed whole, byte by byte and in random chunks: it withholds exactly the
// PubAcks to the gateway's data publishes (MSG/HMSG to their reply subjects) and, past
// `publishLimit`, the data publishes themselves; INFO, +OK, PING/PONG, -ERR, JetStream API
// replies and other messages pass byte for byte, in order. Held PubAcks go out in order.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AckMode, PubAckFilter } from "../helpers/nats-ack-filter.js";

const hpub = (subject: string, reply: string, msgId: string, payload: string): string => {
  const hdr = `NATS/1.0\r\nNats-Msg-Id: ${msgId}\r\n\r\n`;
  return `HPUB ${subject} ${reply} ${hdr.length} ${hdr.length + payload.length}\r\n${hdr}${payload}\r\n`;
};
const msg = (subject: string, payload: string): string =>
  `MSG ${subject} 1 ${payload.length}\r\n${payload}\r\n`;

const CLIENT = {
  connect: 'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\n',
  ping: "PING\r\n",
  sub: "SUB _INBOX.A.* 1\r\n",
  api: "PUB $JS.API.STREAM.INFO.EDGE _INBOX.M.x 0\r\n\r\n",
  row1: hpub("edge.gw1.t", "_INBOX.A.1", "gw1-1", "p-1\r\nMSG _INBOX.A.1 1 2\r\n"),
  row2: hpub("edge.gw1.t", "_INBOX.A.2", "gw1-2", "p-2"),
  // No reply subject: not a JetStream publish of the gateway's.
  plain: "PUB edge.gw1.t 2\r\nhi\r\n",
  other: hpub("edge.gw2.t", "_INBOX.B.9", "gw2-9", "theirs"),
  row3: hpub("edge.gw1.u", "_INBOX.A.3", "gw1-3", "p-3"),
};
const HUB = {
  info: 'INFO {"server_id":"S","headers":true,"max_payload":1048576}\r\n',
  ok: "+OK\r\n",
  pong: "PONG\r\n",
  api: msg("_INBOX.M.x", '{"type":"io.nats.jetstream.api.v1.stream_info_response"}'),
  ack1: msg("_INBOX.A.1", '{"stream":"EDGE","seq":1}'),
  ack2: "HMSG _INBOX.A.2 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
  otherAck: msg("_INBOX.B.9", '{"stream":"EDGE","seq":2}'),
  ack3: msg("_INBOX.A.3", '{"stream":"EDGE","seq":3,"duplicate":true}'),
  err: "-ERR 'Permissions Violation for Publish to x'\r\n",
  ping: "PING\r\n",
  unrelated: msg("cmd.gw1.reboot", "now"),
};
const ACKS = ["ack1", "ack2", "ack3"];

/** Runs one connection through a filter, the client's bytes first, cut at `cuts`. */
function session(
  filter: PubAckFilter,
  cuts: (length: number) => number[] = () => [],
): { toHub: string; toClient: string } {
  const link = filter.link();
  const out = { toHub: [] as Buffer[], toClient: [] as Buffer[] };
  const feed = (text: string, push: (b: Buffer) => void): void => {
    const data = Buffer.from(text, "latin1");
    let at = 0;
    for (const cut of [...cuts(data.length), data.length]) {
      push(data.subarray(at, cut));
      at = cut;
    }
  };
  feed(Object.values(CLIENT).join(""), (b) => link.toTarget(b, (d) => out.toHub.push(d)));
  feed(Object.values(HUB).join(""), (b) => link.toClient(b, (d) => out.toClient.push(d)));
  return {
    toHub: Buffer.concat(out.toHub).toString("latin1"),
    toClient: Buffer.concat(out.toClient).toString("latin1"),
  };
}

const hubExcept = (omit: readonly string[]): string =>
  Object.entries(HUB)
    .filter(([k]) => !omit.includes(k))
    .map(([, v]) => v)
    .join("");

const newFilter = (acks: AckMode): PubAckFilter => {
  const f = new PubAckFilter((s) => s.startsWith("edge.gw1."));
  f.acks = acks;
  return f;
};

const byteByByte = (length: number): number[] =>
  Array.from({ length: length - 1 }, (_, i) => i + 1);

describe("PubAckFilter", () => {
  it.each([
    ["whole", () => []],
    ["byte by byte", byteByByte],
  ])("drops exactly the PubAcks to the gateway's publishes (%s)", (_how, cuts) => {
    const filter = newFilter("drop");
    const { toHub, toClient } = session(filter, cuts);
    expect(toHub).toBe(Object.values(CLIENT).join(""));
    expect(toClient).toBe(hubExcept(ACKS));
    expect(filter.seenAcks).toEqual([
      { msgId: "gw1-1", kind: "stored" },
      { msgId: "gw1-2", kind: "refused", reason: "503" },
      { msgId: "gw1-3", kind: "duplicate" },
    ]);
    expect(filter.acksDropped).toBe(3);
    expect([...filter.sent]).toEqual([
      ["gw1-1", 1],
      ["gw1-2", 1],
      ["gw1-3", 1],
    ]);
    expect(filter.errors).toEqual([]);
  });

  it("gives the same bytes however the streams are cut (random chunks)", () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 60 }), (raw) => {
        const cuts = (length: number): number[] =>
          [...new Set(raw.map((r) => 1 + (r % (length - 1))))].sort((a, b) => a - b);
        const filter = newFilter("drop");
        const { toHub, toClient } = session(filter, cuts);
        expect(toHub).toBe(Object.values(CLIENT).join(""));
        expect(toClient).toBe(hubExcept(ACKS));
        expect(filter.ackCounts()).toEqual({ stored: 1, refused: 1, duplicate: 1 });
      }),
      { numRuns: 300 },
    );
  });

  it("passes everything in mode pass, still counting", () => {
    const filter = newFilter("pass");
    const { toHub, toClient } = session(filter, byteByByte);
    expect(toHub).toBe(Object.values(CLIENT).join(""));
    expect(toClient).toBe(Object.values(HUB).join(""));
    expect(filter.ackCounts()).toEqual({ stored: 1, refused: 1, duplicate: 1 });
    expect(filter.acksDropped).toBe(0);
  });

  it("holds PubAcks and releases them in order, as many as asked", () => {
    const filter = newFilter("hold");
    const link = filter.link();
    const toClient: string[] = [];
    const forward = (d: Buffer) => toClient.push(d.toString("latin1"));
    link.toTarget(Buffer.from(Object.values(CLIENT).join(""), "latin1"), () => {});
    link.toClient(Buffer.from(Object.values(HUB).join(""), "latin1"), forward);
    expect(toClient.join("")).toBe(hubExcept(ACKS));
    expect(filter.heldAcks).toBe(3);
    toClient.length = 0;
    expect(filter.releaseAcks(2)).toBe(2);
    expect(toClient).toEqual([HUB.ack1, HUB.ack2]);
    expect(filter.releaseAcks()).toBe(1);
    expect(toClient).toEqual([HUB.ack1, HUB.ack2, HUB.ack3]);
    expect(filter.releaseAcks()).toBe(0);
  });

  it("past publishLimit drops the gateway's publishes, and their replies are not PubAcks", () => {
    const filter = newFilter("drop");
    filter.publishLimit = 2;
    const { toHub, toClient } = session(filter, byteByByte);
    const { row3, ...rest } = CLIENT;
    expect(toHub).toBe(Object.values(rest).join(""));
    expect(filter.publishesForwarded).toBe(2);
    expect(filter.publishesDropped).toBe(1);
    expect([...filter.sent.keys()]).toEqual(["gw1-1", "gw1-2"]);
    // A message to the dropped publish's reply subject is not an answer to anything sent.
    expect(toClient).toBe(hubExcept(["ack1", "ack2"]));
    expect(filter.acksDropped).toBe(2);
  });

  it("records a protocol error and passes the rest unread", () => {
    const filter = newFilter("drop");
    const link = filter.link();
    const out: string[] = [];
    link.toClient(Buffer.from("MSG x 1 5\r\nabc\r\nPING\r\n"), (d) => out.push(d.toString()));
    expect(filter.errors).toEqual([expect.stringMatching(/no CRLF after its 5 payload bytes/)]);
    link.toClient(Buffer.from("PONG\r\n"), (d) => out.push(d.toString()));
    expect(out.join("")).toBe("MSG x 1 5\r\nabc\r\nPING\r\nPONG\r\n");
  });
});
