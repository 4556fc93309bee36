// The NATS client protocol on bytes (src/nats/): the parser of what clients send, fed whole,
// byte by byte and in random chunks, must yield the same ops; its refusals carry the -ERR
// nats-server sends; the bounds hold at the limit and refuse one past it (a payload before
// its bytes arrive). What the server sends is checked against a parser we did not write:
// nats.js's own protocol Parser (@nats-io/nats-core/internal) and its header codec.
import { Kind, MsgHdrsImpl, Parser, type ParserEvent } from "@nats-io/nats-core/internal";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ClientOp,
  ClientParser,
  DEFAULT_PARSER_LIMITS,
  decodeHeaders,
  encodeErr,
  encodeHeaders,
  encodeHmsg,
  encodeInfo,
  encodeMsg,
  errText,
  NATS_VIOLATIONS,
  type NatsViolation,
  OK_FRAME,
  type ParserLimits,
  PING_FRAME,
  PONG_FRAME,
} from "../../src/nats/index.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");

/** A parser that records what it delivers. */
function recorder(limits: ParserLimits = DEFAULT_PARSER_LIMITS) {
  const ops: ClientOp[] = [];
  const errors: { violation: NatsViolation; detail: string }[] = [];
  const parser = new ClientParser(
    (op) => ops.push(op),
    (violation, detail) => errors.push({ violation, detail }),
    limits,
  );
  return { parser, ops, errors };
}

type FeedMode = "whole" | "byte by byte" | readonly number[];

/** Pushes `bytes` whole, one byte at a time, or cut at the given (sorted) offsets. */
function feed(parser: { push(c: Buffer): void }, bytes: Buffer, mode: FeedMode): void {
  if (mode === "whole") {
    parser.push(bytes);
  } else if (mode === "byte by byte") {
    for (let i = 0; i < bytes.length; i++) parser.push(bytes.subarray(i, i + 1));
  } else {
    let from = 0;
    for (const cut of [...mode, bytes.length]) {
      if (cut > from) parser.push(bytes.subarray(from, cut));
      from = Math.max(from, cut);
    }
  }
}

function parseAll(bytes: Buffer, mode: FeedMode, limits?: ParserLimits) {
  const r = recorder(limits);
  feed(r.parser, bytes, mode);
  return r;
}

const cuts = (length: number) =>
  fc.uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 12 }).map((a) => a.sort());

const pub = (subject: string, reply: string | undefined, payload: string): ClientOp => ({
  op: "pub",
  subject,
  reply,
  payload: b(payload),
});

const HDR = "NATS/1.0\r\nA: 1\r\n\r\n";

/** One of each op, with what the parser must make of it. Payloads hold fake protocol. */
const CLIENT_OPS: readonly [string, string, ClientOp][] = [
  [
    "CONNECT",
    'CONNECT {"verbose":false,"name":"t x","headers":true}\r\n',
    { op: "connect", json: '{"verbose":false,"name":"t x","headers":true}' },
  ],
  ["PUB", "PUB a.b 5\r\nhello\r\n", pub("a.b", undefined, "hello")],
  ["PUB with reply", "PUB a.b _INBOX.x.1 3\r\nabc\r\n", pub("a.b", "_INBOX.x.1", "abc")],
  ["PUB empty payload", "PUB a 0\r\n\r\n", pub("a", undefined, "")],
  [
    "PUB payload with protocol in it",
    "PUB a 18\r\nPING\r\nPUB b 1\r\nx\r\n\r\n",
    pub("a", undefined, "PING\r\nPUB b 1\r\nx\r\n"),
  ],
  [
    "HPUB",
    `HPUB a.b ${HDR.length} ${HDR.length + 2}\r\n${HDR}hi\r\n`,
    { op: "hpub", subject: "a.b", reply: undefined, header: b(HDR), payload: b("hi") },
  ],
  [
    "HPUB with reply, empty payload",
    `HPUB a r ${HDR.length} ${HDR.length}\r\n${HDR}\r\n`,
    { op: "hpub", subject: "a", reply: "r", header: b(HDR), payload: b("") },
  ],
  ["SUB", "SUB a.* 1\r\n", { op: "sub", subject: "a.*", queue: undefined, sid: "1" }],
  [
    "SUB queue",
    "SUB a.> workers 22\r\n",
    { op: "sub", subject: "a.>", queue: "workers", sid: "22" },
  ],
  ["UNSUB", "UNSUB 1\r\n", { op: "unsub", sid: "1", max: undefined }],
  ["UNSUB max", "UNSUB 1 5\r\n", { op: "unsub", sid: "1", max: 5 }],
  ["PING", "PING\r\n", { op: "ping" }],
  ["PONG", "PONG\r\n", { op: "pong" }],
  // nats-server: lower case, tabs and runs of blanks, a bare LF, text after PING.
  ["lower case, tabs", "pub\ta.b \t r 2\r\nok\r\n", pub("a.b", "r", "ok")],
  ["bare LF line end", "sub x 9\n", { op: "sub", subject: "x", queue: undefined, sid: "9" }],
  ["PING with trailing text", "ping now\r\n", { op: "ping" }],
  ["UNSUB max not a count: now", "UNSUB 1 x\r\n", { op: "unsub", sid: "1", max: undefined }],
  ["UTF-8 subject", "PUB é.ü 1\r\nx\r\n", pub("é.ü", undefined, "x")],
];

describe("parser: every op, whole, byte by byte and in random chunks", () => {
  it.each(CLIENT_OPS)("%s", (_name, text, expected) => {
    const bytes = Buffer.from(text, "utf8");
    for (const mode of ["whole", "byte by byte"] as const) {
      const { ops, errors } = parseAll(bytes, mode);
      expect(errors).toEqual([]);
      expect(ops).toEqual([expected]);
    }
    fc.assert(
      fc.property(cuts(bytes.length), (at) => {
        const { ops, errors } = parseAll(bytes, at);
        expect(errors).toEqual([]);
        expect(ops).toEqual([expected]);
      }),
      { numRuns: 50 },
    );
  });

  it("all ops in one stream, cut anywhere, come out in order", () => {
    const stream = Buffer.from(CLIENT_OPS.map(([, text]) => text).join(""), "utf8");
    const expected = CLIENT_OPS.map(([, , op]) => op);
    expect(parseAll(stream, "whole").ops).toEqual(expected);
    expect(parseAll(stream, "byte by byte").ops).toEqual(expected);
    fc.assert(
      fc.property(cuts(stream.length), (at) => {
        const { ops, errors } = parseAll(stream, at);
        expect(errors).toEqual([]);
        expect(ops).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it("INFO, +OK and -ERR from a client are read and dropped (nats-server ignores them)", () => {
    const { ops, errors } = parseAll(b("INFO {}\r\n+OK\r\n-ERR 'x'\r\nPING\r\n"), "byte by byte");
    expect(errors).toEqual([]);
    expect(ops).toEqual([{ op: "ping" }]);
  });

  it("random payloads, including CRLF and control lines, are delivered untouched", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.option(fc.constantFrom("r", "_INBOX.abc.1"), { nil: undefined }),
        fc.integer({ min: 1, max: 64 }),
        (payload, reply, chunk) => {
          const body = Buffer.from(payload);
          const line = `PUB s${reply ? ` ${reply}` : ""} ${body.length}\r\n`;
          const bytes = Buffer.concat([b(line), body, b("\r\nPING\r\n")]);
          const at = [];
          for (let i = chunk; i < bytes.length; i += chunk) at.push(i);
          const { ops, errors } = parseAll(bytes, at);
          expect(errors).toEqual([]);
          expect(ops).toEqual([{ op: "pub", subject: "s", reply, payload: body }, { op: "ping" }]);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** Malformed input → the violation and the exact -ERR nats-server sends (undefined: none). */
const MALFORMED: readonly [string, string, NatsViolation, string | undefined][] = [
  ["unknown op", "FOO bar\r\n", "unknownOperation", "Unknown Protocol Operation"],
  ["empty line", "\r\n", "unknownOperation", "Unknown Protocol Operation"],
  ["MSG from a client", "MSG a 1 1\r\nx\r\n", "unknownOperation", "Unknown Protocol Operation"],
  [
    "payload longer than its count",
    "PUB a 1\r\nxy\r\n",
    "payloadNotTerminated",
    "Unknown Protocol Operation",
  ],
  [
    "payload then bare LF",
    "PUB a 1\r\nx\n\n",
    "payloadNotTerminated",
    "Unknown Protocol Operation",
  ],
  ["PUB count not a number", "PUB a x\r\n", "badArguments", undefined],
  ["PUB negative count", "PUB a -1\r\n", "badArguments", undefined],
  ["PUB count of 10 digits", "PUB a 0000000001\r\n", "badArguments", undefined],
  ["PUB without count", "PUB a\r\n", "badArguments", undefined],
  ["PUB with 4 args", "PUB a b c 1\r\n", "badArguments", undefined],
  ["HPUB with one count", "HPUB a 5\r\n", "badArguments", undefined],
  ["HPUB header count bad", "HPUB a x 5\r\n", "badArguments", undefined],
  ["HPUB header > total", "HPUB a 6 5\r\n", "headerLargerThanTotal", undefined],
  ["HPUB header not NATS/1.0", "HPUB a 4 4\r\nXY\r\n\r\n", "badHeader", undefined],
  ["SUB with 1 arg", "SUB a\r\n", "badArguments", undefined],
  ["SUB with 4 args", "SUB a q 1 2\r\n", "badArguments", undefined],
  ["UNSUB with 3 args", "UNSUB 1 2 3\r\n", "badArguments", undefined],
  ["CONNECT without JSON", "CONNECT\r\n", "badArguments", undefined],
  ["PUB over max_payload", "PUB a 1048577\r\n", "payloadTooLarge", "Maximum Payload Violation"],
];

describe("parser: malformed input, each with nats-server's -ERR", () => {
  it.each(MALFORMED)("%s", (_name, text, violation, err) => {
    for (const mode of ["whole", "byte by byte"] as const) {
      const { ops, errors } = parseAll(b(`${text}PING\r\n`), mode);
      expect(errors.map((e) => e.violation)).toEqual([violation]);
      // Nothing after a refusal is delivered.
      expect(ops).toEqual([]);
      expect(errText(violation)).toBe(err);
    }
  });

  it("the -ERR wording is nats-server's, byte for byte", () => {
    expect(encodeErr(errText("unknownOperation")!)).toEqual(
      b("-ERR 'Unknown Protocol Operation'\r\n"),
    );
    expect(encodeErr(errText("payloadTooLarge")!)).toEqual(
      b("-ERR 'Maximum Payload Violation'\r\n"),
    );
    expect(encodeErr(errText("controlLineTooLong")!)).toEqual(
      b("-ERR 'maximum control line exceeded'\r\n"),
    );
    expect(encodeErr(errText("authorization")!)).toEqual(b("-ERR 'Authorization Violation'\r\n"));
    expect(Object.keys(NATS_VIOLATIONS).sort()).toEqual(
      [
        "authorization",
        "badArguments",
        "badHeader",
        "controlLineTooLong",
        "headerLargerThanTotal",
        "payloadNotTerminated",
        "payloadTooLarge",
        "unknownOperation",
      ].sort(),
    );
  });
});

describe("parser: bounds", () => {
  const limits: ParserLimits = { maxControlLineBytes: 64, maxPayloadBytes: 100 };

  /** A SUB control line of exactly `length` bytes (without CRLF). */
  const subLine = (length: number) => `SUB ${"s".repeat(length - 6)} 1`;

  it("a control line at max_control_line is read; one byte more is refused", () => {
    for (const mode of ["whole", "byte by byte"] as const) {
      const ok = parseAll(b(`${subLine(64)}\r\n`), mode, limits);
      expect(ok.errors).toEqual([]);
      expect(ok.ops).toHaveLength(1);
      const bare = parseAll(b(`${subLine(64)}\n`), mode, limits);
      expect(bare.ops).toHaveLength(1);
      const over = parseAll(b(`${subLine(65)}\r\n`), mode, limits);
      expect(over.errors.map((e) => e.violation)).toEqual(["controlLineTooLong"]);
      expect(over.ops).toEqual([]);
    }
  });

  it("a control line with no line end is refused once past the limit, without waiting for LF", () => {
    const r = recorder(limits);
    r.parser.push(b("SUB "));
    for (let i = 0; i < 61; i++) r.parser.push(b("s"));
    // 65 bytes held: may still be 64 and a CR.
    expect(r.errors).toEqual([]);
    r.parser.push(b("s"));
    expect(r.errors.map((e) => e.violation)).toEqual(["controlLineTooLong"]);
    expect(r.parser.bufferedBytes).toBe(0);
  });

  it("a payload at max_payload is read; one byte more is refused before its bytes arrive", () => {
    const body = "x".repeat(100);
    for (const mode of ["whole", "byte by byte"] as const) {
      const ok = parseAll(b(`PUB a 100\r\n${body}\r\n`), mode, limits);
      expect(ok.errors).toEqual([]);
      expect(ok.ops).toEqual([pub("a", undefined, body)]);
    }
    const r = recorder(limits);
    r.parser.push(b("PUB a 101\r\n"));
    expect(r.errors.map((e) => e.violation)).toEqual(["payloadTooLarge"]);
    expect(r.parser.bufferedBytes).toBe(0);
    // HPUB counts header and payload together, as nats-server does.
    const h = recorder(limits);
    h.parser.push(b("HPUB a 50 101\r\n"));
    expect(h.errors.map((e) => e.violation)).toEqual(["payloadTooLarge"]);
    const hOk = parseAll(
      b(`HPUB a ${HDR.length} 100\r\n${HDR}${"y".repeat(100 - HDR.length)}\r\n`),
      "byte by byte",
      limits,
    );
    expect(hOk.errors).toEqual([]);
  });

  it("the defaults are nats-server's", () => {
    expect(DEFAULT_PARSER_LIMITS).toEqual({ maxControlLineBytes: 4096, maxPayloadBytes: 1048576 });
  });

  it("what the parser holds never exceeds a control line or one payload plus CRLF", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (junk) => {
        const r = recorder(limits);
        for (const byte of junk) {
          r.parser.push(Buffer.from([byte]));
          expect(r.parser.bufferedBytes).toBeLessThanOrEqual(limits.maxPayloadBytes + 2);
        }
      }),
      { numRuns: 200 },
    );
  });
});

// ---- what the server sends, read back by nats.js's own protocol parser -------------------

interface Seen {
  kind: number;
  subject?: string;
  reply?: string | undefined;
  sid?: number;
  hdr?: number;
  data?: Buffer;
}

function natsJs(bytes: Buffer, mode: FeedMode): Seen[] {
  const events: ParserEvent[] = [];
  const parser = new Parser({ push: (e: ParserEvent) => events.push(e) });
  feed({ push: (c: Buffer) => parser.parse(c) }, bytes, mode);
  const text = (u: Uint8Array | undefined) => (u ? Buffer.from(u).toString("utf8") : undefined);
  return events.map((e) => ({
    kind: e.kind,
    ...(e.msg
      ? { subject: text(e.msg.subject), reply: text(e.msg.reply), sid: e.msg.sid, hdr: e.msg.hdr }
      : {}),
    ...(e.data ? { data: Buffer.from(e.data) } : {}),
  }));
}

const token = fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/);
const subject = fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join("."));

describe("encoder: read back by nats.js's Parser", () => {
  it("pinned bytes", () => {
    expect(encodeMsg("a.b", "7", undefined, b("hi"))).toEqual(b("MSG a.b 7 2\r\nhi\r\n"));
    expect(encodeMsg("a.b", "7", "_INBOX.x", b(""))).toEqual(b("MSG a.b 7 _INBOX.x 0\r\n\r\n"));
    const header = encodeHeaders({ status: 503, entries: [] });
    expect(header).toEqual(b("NATS/1.0 503\r\n\r\n"));
    expect(encodeHmsg("r", "1", undefined, header, b(""))).toEqual(
      b("HMSG r 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"),
    );
    expect(encodeInfo({ server_id: "x", proto: 1, headers: true })).toEqual(
      b('INFO {"server_id":"x","proto":1,"headers":true}\r\n'),
    );
    expect([PING_FRAME, PONG_FRAME, OK_FRAME].map(String)).toEqual([
      "PING\r\n",
      "PONG\r\n",
      "+OK\r\n",
    ]);
  });

  it("every frame kind, whole and byte by byte", () => {
    const header = encodeHeaders({ entries: [["K", "v"]] });
    const stream = Buffer.concat([
      encodeInfo({ max_payload: 1048576 }),
      encodeMsg("a", "1", "r", b("x\r\ny")),
      encodeHmsg("a", "2", undefined, header, b("p")),
      PING_FRAME,
      PONG_FRAME,
      OK_FRAME,
      encodeErr("Unknown Protocol Operation"),
    ]);
    const expected: Seen[] = [
      { kind: Kind.INFO, data: b('{"max_payload":1048576}') },
      { kind: Kind.MSG, subject: "a", reply: "r", sid: 1, hdr: -1, data: b("x\r\ny") },
      {
        kind: Kind.MSG,
        subject: "a",
        reply: undefined,
        sid: 2,
        hdr: header.length,
        data: Buffer.concat([header, b("p")]),
      },
      { kind: Kind.PING },
      { kind: Kind.PONG },
      { kind: Kind.OK },
      { kind: Kind.ERR, data: b("'Unknown Protocol Operation'") },
    ];
    expect(natsJs(stream, "whole")).toEqual(expected);
    expect(natsJs(stream, "byte by byte")).toEqual(expected);
  });

  it("random MSG and HMSG, cut anywhere, come out as sent", () => {
    fc.assert(
      fc.property(
        subject,
        fc.integer({ min: 1, max: 1e6 }),
        fc.option(subject, { nil: undefined }),
        fc.uint8Array({ maxLength: 200 }),
        fc.option(fc.array(fc.tuple(token, fc.stringMatching(/^[ -~]{0,20}$/)), { maxLength: 4 }), {
          nil: undefined,
        }),
        fc.integer({ min: 1, max: 50 }),
        (subj, sid, reply, payload, entries, chunk) => {
          const body = Buffer.from(payload);
          const header = entries ? encodeHeaders({ entries }) : undefined;
          const bytes = header
            ? encodeHmsg(subj, String(sid), reply, header, body)
            : encodeMsg(subj, String(sid), reply, body);
          const at = [];
          for (let i = chunk; i < bytes.length; i += chunk) at.push(i);
          const [seen, ...rest] = natsJs(bytes, at);
          expect(rest).toEqual([]);
          expect(seen).toEqual({
            kind: Kind.MSG,
            subject: subj,
            reply,
            sid,
            hdr: header ? header.length : -1,
            data: header ? Buffer.concat([header, body]) : body,
          });
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("header blocks against nats.js's header codec", () => {
  it("ours → nats.js: status, description and entries", () => {
    const block = encodeHeaders({
      status: 503,
      description: "No Responders",
      entries: [
        ["A", "1"],
        ["A", "2"],
        ["Nats-Msg-Id", "x y"],
      ],
    });
    expect(block.toString()).toBe(
      "NATS/1.0 503 No Responders\r\nA: 1\r\nA: 2\r\nNats-Msg-Id: x y\r\n\r\n",
    );
    const theirs = MsgHdrsImpl.decode(block);
    expect(theirs.code).toBe(503);
    expect(theirs.description).toBe("No Responders");
    expect(theirs.values("A")).toEqual(["1", "2"]);
    expect(theirs.get("Nats-Msg-Id")).toBe("x y");
  });

  it("nats.js → ours, for random entries", () => {
    fc.assert(
      fc.property(
        // Unique keys: nats.js keeps a Map, so a repeated key's values are grouped.
        fc.uniqueArray(fc.tuple(token, fc.stringMatching(/^[!-~]([ -~]{0,18}[!-~])?$/)), {
          minLength: 1,
          maxLength: 6,
          selector: ([key]) => key,
        }),
        (entries) => {
          const theirs = new MsgHdrsImpl();
          for (const [k, v] of entries) theirs.append(k, v);
          const ours = decodeHeaders(Buffer.from(theirs.encode()));
          expect(ours?.status).toBeUndefined();
          expect(ours?.entries).toEqual(entries);
          // And back: our encoding decodes to the same in nats.js.
          const again = MsgHdrsImpl.decode(encodeHeaders({ entries }));
          expect(again.equals(theirs)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("status lines, and what is not a header block", () => {
    expect(decodeHeaders(b("NATS/1.0 503\r\n\r\n"))).toEqual({
      status: 503,
      description: undefined,
      entries: [],
    });
    expect(
      decodeHeaders(b("NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n")),
    ).toEqual({
      status: 408,
      description: "Request Timeout",
      entries: [["Nats-Pending-Messages", "1"]],
    });
    expect(decodeHeaders(b("HTTP/1.1 200\r\n\r\n"))).toBeUndefined();
    expect(decodeHeaders(b("NATS/1.0 5x3\r\n\r\n"))).toBeUndefined();
    expect(() => encodeHeaders({ entries: [["A", "x\r\nB: y"]] })).toThrow(RangeError);
    expect(() => encodeHeaders({ entries: [["A:B", "x"]] })).toThrow(RangeError);
  });
});
