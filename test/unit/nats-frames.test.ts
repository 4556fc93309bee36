// The test proxy's NATS frame splitter: whole frames, whatever the chunking.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type NatsFrame, NatsFrameSplitter } from "../helpers/nats-frames.js";

const HEADERS = "NATS/1.0\r\nA: 1\r\n\r\n";
const EMPTY_HEADERS = "NATS/1.0\r\n\r\n";
const ACK = '{"stream":"EDGE","seq":1}';
const STREAM = [
  'INFO {"server_id":"x","max_payload":1048576}\r\n',
  'CONNECT {"verbose":false}\r\n',
  "PING\r\n",
  "PUB edge.gw.a 5\r\nhello\r\n",
  // A payload holding CRLF, and one that looks like a control line.
  "PUB edge.gw.b _INBOX.r.7 4\r\na\r\nb\r\n",
  `HPUB edge.gw.c _INBOX.r.8 ${HEADERS.length} ${HEADERS.length + 12}\r\n${HEADERS}PUB x 1\r\ny\r\n\r\n`,
  `MSG _INBOX.r.7 1 ${ACK.length}\r\n${ACK}\r\n`,
  `HMSG _INBOX.r.8 1 _INBOX.x ${EMPTY_HEADERS.length} ${EMPTY_HEADERS.length}\r\n${EMPTY_HEADERS}\r\n`,
  "SUB _INBOX.r.* 1\r\n",
  "PUB empty 0\r\n\r\n",
  "+OK\r\n",
];
const WIRE = Buffer.from(STREAM.join(""), "latin1");

const summary = (frames: readonly NatsFrame[]) =>
  frames.map((f) => [f.verb, f.subject, f.reply, f.bytes.toString("latin1")]);

const EXPECTED = [
  ["INFO", undefined, undefined, STREAM[0]],
  ["CONNECT", undefined, undefined, STREAM[1]],
  ["PING", undefined, undefined, STREAM[2]],
  ["PUB", "edge.gw.a", undefined, STREAM[3]],
  ["PUB", "edge.gw.b", "_INBOX.r.7", STREAM[4]],
  ["HPUB", "edge.gw.c", "_INBOX.r.8", STREAM[5]],
  ["MSG", "_INBOX.r.7", undefined, STREAM[6]],
  ["HMSG", "_INBOX.r.8", "_INBOX.x", STREAM[7]],
  ["SUB", undefined, undefined, STREAM[8]],
  ["PUB", "empty", undefined, STREAM[9]],
  ["+OK", undefined, undefined, STREAM[10]],
];

describe("NatsFrameSplitter", () => {
  it("splits a stream given at once", () => {
    const splitter = new NatsFrameSplitter();
    expect(summary(splitter.push(WIRE))).toEqual(EXPECTED);
    expect(splitter.pendingBytes).toBe(0);
  });

  it("splits a stream given one byte at a time", () => {
    const splitter = new NatsFrameSplitter();
    const frames: NatsFrame[] = [];
    for (let i = 0; i < WIRE.length; i++) frames.push(...splitter.push(WIRE.subarray(i, i + 1)));
    expect(summary(frames)).toEqual(EXPECTED);
  });

  it("splits a stream cut at any points", () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: WIRE.length - 1 })), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), WIRE.length];
        const splitter = new NatsFrameSplitter();
        const frames: NatsFrame[] = [];
        for (let i = 1; i < points.length; i++) {
          frames.push(...splitter.push(WIRE.subarray(points[i - 1], points[i])));
        }
        expect(summary(frames)).toEqual(EXPECTED);
      }),
    );
  });

  it("refuses a payload size that is not a number", () => {
    expect(() => new NatsFrameSplitter().push(Buffer.from("PUB a x\r\n"))).toThrow(
      /bad payload size/,
    );
  });
});
