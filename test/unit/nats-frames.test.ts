// The NATS protocol frame splitter used by the test proxy (test/helpers/nats-frames.ts):
// every frame comes out whole and byte-exact however the stream is cut — whole, one byte
// at a time, in random chunks (fast-check) — payloads with "\r\n" and fake control lines
// inside are never split on, and malformed input throws instead of being guessed at.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_CONTROL_LINE_BYTES,
  type NatsFrame,
  NatsFrameSplitter,
  NatsProtocolError,
} from "../helpers/nats-frames.js";

const HEADERS = "NATS/1.0\r\nNats-Msg-Id: gw1-7\r\n\r\n";

/** Frames as nats-server and nats.js write them, with the tricky payloads. */
const WIRE: readonly { text: string; op: string; args: string[]; payload?: string }[] = [
  {
    text: 'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n',
    op: "INFO",
    args: ['{"server_id":"x","max_payload":1048576,"headers":true}'],
  },
  {
    text: 'CONNECT {"verbose":false,"headers":true}\r\n',
    op: "CONNECT",
    args: ['{"verbose":false,"headers":true}'],
  },
  { text: "PING\r\n", op: "PING", args: [] },
  { text: "PONG\r\n", op: "PONG", args: [] },
  { text: "+OK\r\n", op: "+OK", args: [] },
  {
    text: "-ERR 'Maximum Payload Violation'\r\n",
    op: "-ERR",
    args: ["'Maximum Payload Violation'"],
  },
  { text: "SUB _INBOX.abc.* 1\r\n", op: "SUB", args: ["_INBOX.abc.*", "1"] },
  { text: "UNSUB 1 10\r\n", op: "UNSUB", args: ["1", "10"] },
  { text: "MSG a.b 1 0\r\n\r\n", op: "MSG", args: ["a.b", "1", "0"], payload: "" },
  {
    // A payload ending in CRLF: the frame's own CRLF follows it.
    text: 'MSG _INBOX.abc.17 2 28\r\n{"stream":"EDGE","seq":17}\r\n\r\n',
    op: "MSG",
    args: ["_INBOX.abc.17", "2", "28"],
    payload: '{"stream":"EDGE","seq":17}\r\n',
  },
  {
    // A payload that holds a whole fake frame and CRLFs.
    text: "MSG a 1 r.x 20\r\nPING\r\nMSG b 1 3\r\nxyz\r\n",
    op: "MSG",
    args: ["a", "1", "r.x", "20"],
    payload: "PING\r\nMSG b 1 3\r\nxyz",
  },
  {
    text: `HMSG _INBOX.abc.5 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n`,
    op: "HMSG",
    args: ["_INBOX.abc.5", "2", "16", "16"],
    payload: "NATS/1.0 503\r\n\r\n",
  },
  {
    text: `HPUB edge.gw1.t _INBOX.abc.7 ${HEADERS.length} ${HEADERS.length + 4}\r\n${HEADERS}\r\n\r\n\r\n`,
    op: "HPUB",
    args: ["edge.gw1.t", "_INBOX.abc.7", String(HEADERS.length), String(HEADERS.length + 4)],
    payload: `${HEADERS}\r\n\r\n`,
  },
  { text: "PUB x 2\r\nhi\r\n", op: "PUB", args: ["x", "2"], payload: "hi" },
  // Lower case and tabs are legal.
  { text: "pub\tx\tr 1\r\n!\r\n", op: "PUB", args: ["x", "r", "1"], payload: "!" },
];

const STREAM = Buffer.from(WIRE.map((w) => w.text).join(""), "latin1");

function summary(frames: readonly NatsFrame[]) {
  return frames.map((f) => ({
    op: f.op,
    args: [...f.args],
    ...(f.payload !== undefined ? { payload: f.payload.toString("latin1") } : {}),
  }));
}

const EXPECTED = WIRE.map(({ op, args, payload }) => ({
  op,
  args,
  ...(payload !== undefined ? { payload } : {}),
}));

/** Feeds `data` cut at `cuts` (sorted offsets) and returns every frame. */
function feed(data: Buffer, cuts: readonly number[]): NatsFrame[] {
  const splitter = new NatsFrameSplitter();
  const frames: NatsFrame[] = [];
  let at = 0;
  for (const cut of [...cuts, data.length]) {
    frames.push(...splitter.push(data.subarray(at, cut)));
    at = cut;
  }
  expect(splitter.pendingBytes).toBe(0);
  return frames;
}

describe("NatsFrameSplitter", () => {
  it("splits a whole stream into its frames", () => {
    const frames = feed(STREAM, []);
    expect(summary(frames)).toEqual(EXPECTED);
    expect(frames.map((f) => f.raw.toString("latin1"))).toEqual(WIRE.map((w) => w.text));
  });

  it("gives the same frames fed one byte at a time, each as soon as its last byte arrives", () => {
    const splitter = new NatsFrameSplitter();
    const frames: NatsFrame[] = [];
    const completedAt: number[] = [];
    for (let i = 0; i < STREAM.length; i++) {
      for (const f of splitter.push(STREAM.subarray(i, i + 1))) {
        frames.push(f);
        completedAt.push(i + 1);
      }
    }
    expect(summary(frames)).toEqual(EXPECTED);
    let end = 0;
    const ends = WIRE.map((w) => (end += w.text.length));
    expect(completedAt).toEqual(ends);
  });

  it("gives the same frames however the stream is cut (random chunks)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: STREAM.length - 1 }), { maxLength: 40 }),
        (cuts) => {
          const frames = feed(
            STREAM,
            cuts.sort((a, b) => a - b),
          );
          expect(summary(frames)).toEqual(EXPECTED);
          expect(Buffer.concat(frames.map((f) => f.raw)).equals(STREAM)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("round-trips generated MSG/HMSG/PUB/HPUB frames with arbitrary payload bytes, in random chunks", () => {
    const frameArb = fc.record({
      op: fc.constantFrom("MSG", "HMSG", "PUB", "HPUB"),
      subject: fc.stringMatching(/^[a-z0-9_.]{1,12}$/),
      reply: fc.option(fc.stringMatching(/^[A-Z_]{1,4}\.[a-z0-9]{1,8}$/), { nil: undefined }),
      headers: fc.uint8Array({ maxLength: 40 }),
      payload: fc.uint8Array({ maxLength: 200 }),
    });
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 12 }), fc.nat(), (specs, seed) => {
        const encoded = specs.map((s) => {
          const withHeaders = s.op === "HMSG" || s.op === "HPUB";
          const body = Buffer.concat([
            withHeaders ? Buffer.from(s.headers) : Buffer.alloc(0),
            Buffer.from(s.payload),
          ]);
          const args = [s.subject];
          if (s.op === "MSG" || s.op === "HMSG") args.push("9");
          if (s.reply !== undefined) args.push(s.reply);
          if (withHeaders) args.push(String(s.headers.length));
          args.push(String(body.length));
          return {
            args,
            body,
            headerBytes: withHeaders ? s.headers.length : undefined,
            raw: Buffer.concat([
              Buffer.from(`${s.op} ${args.join(" ")}\r\n`),
              body,
              Buffer.from("\r\n"),
            ]),
          };
        });
        const data = Buffer.concat(encoded.map((e) => e.raw));
        // Cut points from the seed: about one every 16 bytes.
        const cuts: number[] = [];
        let x = seed;
        for (let at = 1; at < data.length; at++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          if (x % 16 === 0) cuts.push(at);
        }
        const frames = feed(data, cuts);
        expect(frames).toHaveLength(specs.length);
        frames.forEach((f, i) => {
          const e = encoded[i]!;
          expect(f.op).toBe(specs[i]!.op);
          expect(f.args).toEqual(e.args);
          expect(f.headerBytes).toBe(e.headerBytes);
          expect(f.payload!.equals(e.body)).toBe(true);
          expect(f.raw.equals(e.raw)).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ["an unknown operation", "HELLO there\r\n"],
    ["a byte count that is not a number", "MSG a 1 x\r\n"],
    ["a missing byte count", "PUB\r\n"],
    ["more header bytes than total bytes", "HPUB a 5 3\r\nabc\r\n"],
    ["payload longer than announced (no CRLF where it must be)", "MSG a 1 2\r\nabc\r\n"],
    ["payload shorter than announced", "PUB a 5\r\nab\r\nPING\r\n"],
  ])("throws on %s", (_what, text) => {
    expect(() => new NatsFrameSplitter().push(Buffer.from(text))).toThrow(NatsProtocolError);
  });

  it("refuses a control line that never ends, without holding unbounded bytes", () => {
    const splitter = new NatsFrameSplitter();
    const chunk = Buffer.alloc(4096, "A");
    expect(() => {
      for (let i = 0; i <= MAX_CONTROL_LINE_BYTES / chunk.length; i++) splitter.push(chunk);
    }).toThrow(/control line longer/);
  });

  it("waits for the LF of a CRLF cut between its two bytes", () => {
    const splitter = new NatsFrameSplitter();
    expect(splitter.push(Buffer.from("PING\r"))).toEqual([]);
    expect(summary(splitter.push(Buffer.from("\nPONG\r\n")))).toEqual([
      { op: "PING", args: [] },
      { op: "PONG", args: [] },
    ]);
  });
});
