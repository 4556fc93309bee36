// The cost of `/status`'s per-class oldest message on a big outbox: Outbox.classStatus()
// (one walk down the (account, class, id) index per class) on 1,000,000 rows in two
// accounts and two classes, beside what a scan-shaped query (min(received_at_ms)) costs.
// Checks every answer against the rows it inserted, before and after the hub takes the
// first 900,000 (deleted as the forwarder deletes them): exit 1 on a wrong one.
//
//   node bench/run.mjs status-oldest [--quick]     (--quick: 100,000 rows)
import { silentLogger } from "../src/core/index.js";
import { MetricsRegistry } from "../src/observe/index.js";
import {
  type BufferLimits,
  closeDatabase,
  Outboxes,
  openDatabase,
  UNLIMITED,
} from "../src/store/index.js";
import { benchArgs, benchWorkDir } from "./lib/harness.js";
import { median } from "./lib/measure.js";

const { quick } = benchArgs();
const ROWS = quick ? 100_000 : 1_000_000;
const CALLS = 2_000;
const T0 = 1_700_000_000_000;
const ACCOUNTS = ["$G", "acme"] as const;

/** Unlimited (the limits play no part here); alarms in a class of their own. */
const ALARMS = { name: "alarms", subjects: ["alarms.>"], onFull: "reject" } as const;
const limits: BufferLimits = {
  ...UNLIMITED,
  classes: [{ ...ALARMS, maxBytes: null, maxMessages: null, maxAgeMs: null }],
};

const db = openDatabase(benchWorkDir("status-oldest"), "normal");
// Row i: account i % 2, class alarms every 10th row, received at T0 + i ms.
const insert = db.prepare(
  "INSERT INTO outbox (subject, payload, headers, received_at_ms, class, size, account) VALUES (?, ?, NULL, ?, ?, 40, ?)",
);
const payload = Buffer.alloc(32, 1);
const started = performance.now();
db.transaction(() => {
  for (let i = 0; i < ROWS; i++) {
    const alarm = i % 10 === 0;
    insert.run(
      alarm ? "alarms.x" : "sensors.x",
      payload,
      T0 + i,
      alarm ? "alarms" : "default",
      ACCOUNTS[i % 2]!,
    );
  }
})();
console.log(`inserted ${ROWS} rows in ${((performance.now() - started) / 1000).toFixed(1)} s`);

const outboxes = new Outboxes(db, {
  commitIntervalMs: 0,
  commitMaxRows: 1000,
  log: silentLogger,
  metrics: new MetricsRegistry(),
  accounts: ACCOUNTS.map((name) => ({ name, limits })),
});

/** The first row id >= `from` of each account and class, as inserted: its received time. */
function expected(from: number): Record<string, number | null> {
  const first: Record<string, number | null> = {};
  for (const a of ACCOUNTS) for (const c of ["alarms", "default"]) first[`${a}/${c}`] = null;
  for (let i = from; i < ROWS && Object.values(first).includes(null); i++) {
    const key = `${ACCOUNTS[i % 2]}/${i % 10 === 0 ? "alarms" : "default"}`;
    first[key] ??= T0 + i;
  }
  return first;
}

function measure(label: string, from: number): void {
  const got: Record<string, number | null> = {};
  const us: number[] = [];
  for (let n = 0; n < CALLS; n++) {
    for (const q of outboxes.queues()) {
      const t = performance.now();
      const classes = q.classStatus();
      us.push((performance.now() - t) * 1000);
      for (const c of classes) got[`${q.account}/${c.name}`] = c.oldestAt;
    }
  }
  const want = expected(from);
  if (
    JSON.stringify(got, Object.keys(want).sort()) !== JSON.stringify(want, Object.keys(want).sort())
  ) {
    console.error(
      `${label}: wrong oldest rows: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`,
    );
    process.exit(1);
  }
  // The scan-shaped query, for contrast: every row of the class is visited.
  const scan = db
    .prepare("SELECT min(received_at_ms) FROM outbox WHERE account = ? AND class = ?")
    .pluck();
  const scanMs: number[] = [];
  for (let n = 0; n < 5; n++) {
    const t = performance.now();
    for (const a of ACCOUNTS) for (const c of ["alarms", "default"]) scan.get(a, c);
    scanMs.push(performance.now() - t);
  }
  const left = (db.prepare("SELECT count(*) FROM outbox").pluck().get() as number).toLocaleString(
    "en",
  );
  console.log(
    `${label} (${left} rows): classStatus() per queue (2 classes) median ${median(us).toFixed(1)} µs, ` +
      `p99 ${us.sort((a, b) => a - b)[Math.floor(us.length * 0.99)]!.toFixed(1)} µs over ${us.length} calls; ` +
      `min(received_at_ms) over the 4 classes: median ${median(scanMs).toFixed(1)} ms`,
  );
}

measure("full outbox", 0);
// The hub took the first 90%: the forwarder's deletes leave the index's first pages empty.
const cut = Math.floor(ROWS * 0.9);
db.prepare("DELETE FROM outbox WHERE id <= ?").run(cut);
measure("after the first 90% were forwarded", cut);
outboxes.close();
closeDatabase(db);
