// Fuzzing the NATS endpoint of a live gateway process (the bundle, so a crash shows):
// fast-check writes random op sequences — valid, mangled and hostile (wrong byte counts,
// huge declared sizes, long lines, bad headers, floods of SUBs) — split at random points,
// one fresh raw TCP connection per run. Two well-behaved nats.js clients stay connected the
// whole time: every numbered message must reach the subscriber once and in order, neither
// may be disconnected, and the gateway must count no internal error.
//
// LEAFGATE_FUZZ_RUNS sets the number of runs (default 2000, or fewer past FUZZ_TIME_LIMIT_MS);
// LEAFGATE_FUZZ_SEED replays a failed run's seed.
import { connect as netConnect } from "node:net";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import fc from "fast-check";
import { expect } from "vitest";
import { it } from "../helpers/fixtures.js";
import { waitFor } from "../helpers/wait.js";

const RUNS = Number(process.env.LEAFGATE_FUZZ_RUNS ?? 2000);
const FUZZ_SEED =
  process.env.LEAFGATE_FUZZ_SEED === undefined ? undefined : Number(process.env.LEAFGATE_FUZZ_SEED);
/** Unless LEAFGATE_FUZZ_RUNS is set, runs stop after this long (the file stays short). */
const FUZZ_TIME_LIMIT_MS = process.env.LEAFGATE_FUZZ_RUNS === undefined ? 8_000 : undefined;
/** A run ends when the server closed the socket or said PONG to our last PING, or after this quiet. */
const QUIET_MS = 150;
const RUN_DEADLINE_MS = 2_000;
const PUBLISH_EVERY_RUNS = 10;
const MAX_PAYLOAD = 4096;
const MAX_CONTROL_LINE = 512;
const MAX_SUBS = 50;

const token = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const subject = fc.oneof(
  fc.array(token, { minLength: 1, maxLength: 5 }).map((t) => t.join(".")),
  fc.constantFrom("a..b", ".a", "a.", "*", ">", "a.>.b", "fuzz.*", "fuzz.>", "_INBOX.x.y"),
  fc.string({ maxLength: 12 }),
);
const payload = fc.uint8Array({ maxLength: 64 });
const op: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constant(Buffer.from('CONNECT {"verbose":true,"headers":true,"no_responders":true}\r\n')),
  fc
    .constantFrom("CONNECT {}\r\n", "CONNECT []\r\n", "CONNECT {\r\n", 'CONNECT {"echo":7}\r\n')
    .map((s) => Buffer.from(s)),
  fc
    .tuple(
      subject,
      fc.option(subject, { nil: undefined }),
      payload,
      fc.integer({ min: -2, max: 2 }),
    )
    .map(([s, r, p, skew]) =>
      Buffer.concat([
        Buffer.from(
          `PUB ${s}${r === undefined ? "" : ` ${r}`} ${Math.max(0, p.length + skew)}\r\n`,
        ),
        Buffer.from(p),
        Buffer.from("\r\n"),
      ]),
    ),
  fc.tuple(subject, fc.string({ maxLength: 20 }), payload).map(([s, h, p]) => {
    const header = Buffer.from(`NATS/1.0\r\n${h}\r\n\r\n`);
    return Buffer.concat([
      Buffer.from(`HPUB ${s} ${header.length} ${header.length + p.length}\r\n`),
      header,
      Buffer.from(p),
      Buffer.from("\r\n"),
    ]);
  }),
  fc
    .tuple(subject, fc.option(token, { nil: undefined }), fc.nat(999))
    .map(([s, q, sid]) => Buffer.from(`SUB ${s}${q === undefined ? "" : ` ${q}`} ${sid}\r\n`)),
  fc
    .tuple(fc.nat(999), fc.option(fc.nat(5), { nil: undefined }))
    .map(([sid, max]) => Buffer.from(`UNSUB ${sid}${max === undefined ? "" : ` ${max}`}\r\n`)),
  fc
    .constantFrom("PING\r\n", "PONG\r\n", "ping\r\n", "\r\n", "MSG a 1 1\r\nx\r\n", "+OK\r\n")
    .map((s) => Buffer.from(s)),
  // Hostile: a huge declared payload, an endless line, a header larger than the total,
  // a flood of subscriptions past max_subscriptions.
  fc
    .constantFrom(
      `PUB big ${MAX_PAYLOAD * 1000}\r\n`,
      `PUB ${"x".repeat(MAX_CONTROL_LINE * 2)}`,
      "HPUB a 20 10\r\nNATS/1.0\r\n\r\n",
      "HPUB a 12 14\r\nXXXX/1.0\r\n\r\nab\r\n",
      Array.from({ length: MAX_SUBS + 5 }, (_, i) => `SUB flood.${i} ${i}\r\n`).join(""),
    )
    .map((s) => Buffer.from(s)),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b)),
);
const run = fc.record({
  ops: fc.array(op, { minLength: 1, maxLength: 12 }),
  cuts: fc.array(fc.nat(), { maxLength: 4 }),
});

/** Writes one run's bytes in pieces, then a PING; resolves when the run is over. */
function play(port: number, bytes: Buffer, cuts: number[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1");
    let quiet: NodeJS.Timeout | undefined;
    let seen = "";
    const done = (): void => {
      clearTimeout(quiet);
      clearTimeout(deadline);
      socket.destroy();
      resolve();
    };
    const deadline = setTimeout(done, RUN_DEADLINE_MS);
    const rearm = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(done, QUIET_MS);
    };
    socket.on("data", (d) => {
      seen = (seen + d.toString("latin1")).slice(-64);
      if (seen.endsWith("PONG\r\n")) done();
      else rearm();
    });
    socket.on("error", done);
    socket.on("close", done);
    socket.on("connect", () => {
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      for (const at of [...points, bytes.length]) {
        if (at > from) socket.write(bytes.subarray(from, at));
        from = at;
      }
      socket.write("\r\nPING\r\n");
      rearm();
    });
  });
}

it("random and hostile NATS bytes never disturb other clients or the gateway", async ({
  gateway,
  defer,
}) => {
  const gw = await gateway.spawn({
    nats: {
      listeners: [{ host: "127.0.0.1", port: 0 }],
      max_payload: MAX_PAYLOAD,
      max_control_line: MAX_CONTROL_LINE,
      max_subscriptions_per_client: MAX_SUBS,
      max_outbound_bytes: "1MiB",
    },
  });
  const port = gw.natsPort!;
  const servers = `127.0.0.1:${port}`;
  const sub: NatsConnection = await connect({ servers, reconnect: false });
  const pub: NatsConnection = await connect({ servers, reconnect: false });
  defer(() => Promise.all([sub.close(), pub.close()]));
  const got: number[] = [];
  sub.subscribe("bystander.seq", { callback: (_e, m) => void got.push(Number(m.string())) });
  await sub.flush();
  let sent = 0;
  let runs = 0;
  const started = Date.now();
  await fc.assert(
    fc.asyncProperty(run, async ({ ops, cuts }) => {
      if (FUZZ_TIME_LIMIT_MS !== undefined && Date.now() - started > FUZZ_TIME_LIMIT_MS) return;
      runs++;
      await play(port, Buffer.concat(ops), cuts);
      if (runs % PUBLISH_EVERY_RUNS === 0) {
        pub.publish("bystander.seq", String(sent++));
        await pub.flush();
      }
    }),
    { numRuns: RUNS, ...(FUZZ_SEED === undefined ? {} : { seed: FUZZ_SEED }) },
  );
  console.log(
    `nats fuzz: ${runs} runs in ${Date.now() - started} ms, ${sent + 1} bystander messages`,
  );
  pub.publish("bystander.seq", String(sent++));
  await pub.flush();
  await waitFor(() => got.length === sent, { message: () => `${got.length} of ${sent}` });
  expect(got).toEqual(Array.from({ length: sent }, (_, i) => i));
  expect(sub.isClosed()).toBe(false);
  expect(pub.isClosed()).toBe(false);
  expect(runs).toBeGreaterThanOrEqual(Math.min(RUNS, 50));
  // The process is alive and counted no bug reached from input.
  expect(gw.proc.exitInfo).toBeUndefined();
  const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  expect(metrics).not.toMatch(/leafgate_internal_errors_total\{[^}]*\} [1-9]/);
});
