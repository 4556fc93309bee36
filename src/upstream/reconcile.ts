import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Clock, Counter, Logger } from "../core/index.js";
import { errorMessage } from "../core/index.js";
import type { Outbox } from "../store/index.js";
import { parseSentRows } from "./drain-cursor.js";
import { messageIdPrefix, SENT_ROWS_HEADER } from "./forwarder.js";
import { JETSTREAM_API_TIMEOUT_MS } from "./stream-check.js";
import type { UpstreamConfig } from "./upstream-config.js";

/** Rows read per step while reconciling a range. */
const RECONCILE_READ_ROWS = 1_000;

export interface ReconcileOptions {
  readonly config: UpstreamConfig;
  readonly gatewayId: string;
  /** The account whose queue (`outbox`) and prefix (`config.prefix`) these are; `$G` when absent. */
  readonly account?: string;
  readonly outbox: Outbox;
  readonly log: Logger;
  /** leafgate_upstream_reconciled_total. */
  readonly reconciled: Counter;
  readonly clock: Clock;
}

/**
 * Drops the outbox rows older than the stream's duplicate window that the stream's last
 * message under our prefix proves stored, so they are not resent (the window would no
 * longer recognise them). How the proof works: docs/upstream.md, "Reconciling".
 */
export async function reconcile(
  nc: NatsConnection,
  stream: string,
  duplicateWindowMs: number,
  options: ReconcileOptions,
): Promise<void> {
  const { outbox, config, gatewayId, log } = options;
  const oldest = outbox.readAfter(0, 1)[0];
  const receivedBeforeMs = options.clock.now() - duplicateWindowMs;
  if (oldest === undefined || oldest.receivedAtMs >= receivedBeforeMs) return;
  let last: { seq: number; header?: { get(k: string): string } } | null;
  try {
    const jsm = await jetstreamManager(nc, {
      timeout: JETSTREAM_API_TIMEOUT_MS,
      ...(config.domain ? { domain: config.domain } : {}),
    });
    last = await jsm.streams.getMessage(stream, { last_by_subj: `${config.prefix}.>` });
  } catch (err) {
    log.warn(
      { err: errorMessage(err) },
      "cannot read the stream's last message; resending old rows, which may duplicate",
    );
    return;
  }
  const id = last?.header?.get("Nats-Msg-Id") ?? "";
  const mine = messageIdPrefix(gatewayId, options.account);
  const rowId = id.startsWith(mine) ? Number(id.slice(mine.length)) : Number.NaN;
  if (!Number.isSafeInteger(rowId)) return;
  const sentText = last?.header?.get(SENT_ROWS_HEADER) ?? "";
  const sent = sentText === "" ? { upTo: rowId, from: 0, to: -1 } : parseSentRows(sentText);
  if (sent === undefined) {
    log.warn(
      { lastStoredRow: rowId, [SENT_ROWS_HEADER]: sentText },
      "cannot tell which rows the stream holds; resending old rows, which may duplicate",
    );
    return;
  }
  const dropped =
    outbox.deleteStored(sent.upTo, receivedBeforeMs) +
    deleteStoredRange(outbox, sent.from, sent.to, receivedBeforeMs);
  options.reconciled.inc(undefined, dropped);
  if (dropped > 0) {
    log.info(
      { rows: dropped, lastStoredRow: rowId, duplicateWindowMs },
      "rows older than the stream's duplicate window were already stored; not resent",
    );
  }
}

/** Deletes the rows with ids from..to received before `receivedBeforeMs`; returns how many. */
function deleteStoredRange(
  outbox: Outbox,
  from: number,
  to: number,
  receivedBeforeMs: number,
): number {
  const ids: number[] = [];
  let after = from - 1;
  while (after < to) {
    const rows = outbox.readAfter(after, RECONCILE_READ_ROWS);
    for (const row of rows) {
      if (row.id > to) break;
      if (row.receivedAtMs < receivedBeforeMs) ids.push(row.id);
    }
    if (rows.length < RECONCILE_READ_ROWS) break;
    after = rows.at(-1)!.id;
  }
  outbox.delete(ids);
  return ids.length;
}
