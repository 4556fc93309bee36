/**
 * The status page at `/`: one self-contained HTML document (inline CSS and JS, nothing
 * fetched but `/api/status`), refreshed every 2 s. Every value is put into the DOM with
 * `textContent`. With `http.token` set, the page takes the token from `/#token=...` or a
 * form, keeps it in sessionStorage and sends it as a Bearer header (docs/status.md).
 */
import { formatDuration } from "./duration.js";
import { type Drop, dropsOf, formatBytes } from "./status-summary.js";

/** What `/api/status` answers: `/status`, the drops and the totals the chart's rates come from. */
export interface PageData<S> {
  /** The gateway's clock (ms), so rates do not depend on when the browser got the answer. */
  readonly time: number;
  readonly status: S;
  readonly drops: readonly Drop[];
  /** Messages appended to the outboxes, and acknowledged by the hub, since the gateway started. */
  readonly totals: { readonly ingested: number; readonly forwarded: number };
}

/** The sum of every sample of `name` (all label sets) in a Prometheus text; 0 when absent. */
export function sumMetric(metrics: string, name: string): number {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const value = Number(rest.slice(rest.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) total += value;
  }
  return total;
}

/** The body of `/api/status`. */
export function pageData<S>(status: S, metrics: string, time: number): PageData<S> {
  return {
    time,
    status,
    drops: dropsOf(metrics),
    totals: {
      ingested: sumMetric(metrics, "leafgate_outbox_appended_total"),
      forwarded: sumMetric(metrics, "leafgate_upstream_forwarded_total"),
    },
  };
}

// The helpers below are shipped to the browser as their own source text: each must stay
// self-contained (no reference to anything outside its body).

/** `hh:mm:ss` of `ms` in the local zone. */
export function clockOf(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Messages a second between two readings of a counter; undefined for the first reading,
 * a clock that did not advance, or a counter that went back (the gateway restarted).
 */
export function rateOf(
  prev: { readonly t: number; readonly n: number } | undefined,
  cur: { readonly t: number; readonly n: number },
): number | undefined {
  if (prev === undefined || cur.t <= prev.t || cur.n < prev.n) return undefined;
  return ((cur.n - prev.n) * 1000) / (cur.t - prev.t);
}

/** `0`, `0.5`, `12`, `1.2k` messages a second. */
export function formatRate(r: number): string {
  if (r >= 1000) return `${(r / 1000).toFixed(1)}k`;
  if (r >= 10 || Number.isInteger(r)) return String(Math.round(r));
  return r.toFixed(1);
}

const CSS = `
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--mute:#777;--line:#8884}
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,sans-serif;margin:0;padding:12px;max-width:1100px;margin:auto}
h1{font-size:1.2em;margin:0 0 8px}h2{font-size:1em;margin:0 0 6px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:12px}
@media (max-width:600px){.grid{grid-template-columns:1fr}}
section{border:1px solid var(--line);border-radius:6px;padding:10px;overflow-x:auto}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:2px 6px 2px 0}
th{font-weight:600;color:var(--mute)}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}
.mute{color:var(--mute)}.err{color:var(--bad);word-break:break-word}
#banner{background:var(--bad);color:#fff;padding:8px 10px;border-radius:6px;margin-bottom:10px;font-weight:600}
canvas{width:100%;height:160px;display:block}
.legend span{margin-right:12px}.in{color:#0969da}.out{color:#1a7f37}
form{max-width:420px}input{width:100%;padding:6px;font:inherit;margin:6px 0}
`;

const SCRIPT = `"use strict";
const formatBytes = (${formatBytes});
const formatDuration = (${formatDuration});
const clockOf = (${clockOf});
const rateOf = (${rateOf});
const formatRate = (${formatRate});
const POLL_MS = 2000, TIMEOUT_MS = 5000, POINTS = 150, KEY = "leafgate.token";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem(KEY);
const hash = /(?:^#|&)token=([^&]*)/.exec(location.hash);
if (hash) {
  token = decodeURIComponent(hash[1]);
  sessionStorage.setItem(KEY, token);
  history.replaceState(null, "", location.pathname + location.search);
}
let lastAnswer = null, prev = null, timer = null;
const series = [];
function el(tag, text, cls, key) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  if (key) e.dataset.k = key;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.append(c instanceof Node ? c : el("td", c));
  return tr;
}
function num(v, key) { return el("td", v, "n", key); }
function table(head, rows) {
  const t = document.createElement("table");
  const h = document.createElement("tr");
  for (const x of head) h.append(el("th", x));
  t.append(h, ...rows);
  return t;
}
function section(title, ...children) {
  const s = document.createElement("section");
  s.append(el("h2", title), ...children);
  return s;
}
function noAnswer(why) {
  const b = $("banner");
  b.hidden = false;
  b.textContent = (lastAnswer === null ? "no answer from the gateway yet" : "no answer since " + clockOf(lastAnswer)) + " (" + why + ")";
}
async function poll() {
  const abort = new AbortController();
  const t = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let res, data;
  try {
    res = await fetch("api/status", { cache: "no-store", signal: abort.signal, headers: token ? { authorization: "Bearer " + token } : {} });
    if (res.status === 401) { askToken(token !== null); return false; }
    if (!res.ok) throw new Error("HTTP " + res.status);
    data = await res.json();
  } catch (e) {
    noAnswer(abort.signal.aborted ? "timed out" : e.message || String(e));
    return true;
  } finally { clearTimeout(t); }
  lastAnswer = Date.now();
  $("banner").hidden = true;
  render(data);
  return true;
}
async function loop() {
  timer = null;
  if (await poll()) timer = setTimeout(loop, POLL_MS);
}
function askToken(refused) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = refused ? "The gateway refused this token." : "";
  $("token-input").focus();
}
$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token-input").value.trim();
  sessionStorage.setItem(KEY, token);
  $("login").hidden = true;
  $("main").hidden = false;
  if (timer === null) loop();
});
function render(d) {
  const s = d.status;
  $("title").textContent = "leafgate " + s.gateway;
  $("updated").textContent = s.state + ", updated " + clockOf(d.time);
  const before = (n) => (prev === null ? undefined : { t: prev.time, n: n(prev) });
  const point = {
    in: rateOf(before((x) => x.totals.ingested), { t: d.time, n: d.totals.ingested }),
    out: rateOf(before((x) => x.totals.forwarded), { t: d.time, n: d.totals.forwarded }),
  };
  prev = d;
  if (point.in !== undefined) { series.push(point); if (series.length > POINTS) series.shift(); }
  const accounts = Object.entries(s.accounts);
  const uplinks = [], backlogs = [];
  for (const [name, a] of accounts) {
    const u = a.upstream, k = "account." + name;
    const state = el("span", u.state, u.state === "forwarding" ? "ok" : u.state === "waiting-for-stream" ? "warn" : "bad", k + ".uplink");
    const line = el("p");
    if (accounts.length > 1) line.append(el("strong", name + ": "));
    line.append(state, el("span", " " + (u.server || "never connected") + (u.stream ? ", stream " + u.stream : ""), "mute"));
    uplinks.push(line);
    const up = u.state === "forwarding" || u.state === "waiting-for-stream";
    const since = el("p", null, "mute");
    since.append(el("span", (up ? "up since " : "down since ") + clockOf(u.since) + " (" + formatDuration(s.time - u.since) + ")", null, k + ".since"),
      ", connects: ", el("strong", u.connects, null, k + ".connects"));
    uplinks.push(since);
    if (!u.server) uplinks.push(el("p", "servers: " + u.servers.join(", "), "mute", k + ".servers"));
    if (u.lastError !== undefined && u.state !== "forwarding") uplinks.push(el("p", "last error: " + u.lastError, "err", k + ".lastError"));
    const o = a.outbox;
    const bytes = o.classes.reduce((n, c) => n + c.bytes, 0);
    const head = el("p");
    if (accounts.length > 1) head.append(el("strong", name + ": "));
    head.append(el("span", o.pending, null, k + ".pending"), el("span", " messages, " + formatBytes(bytes)));
    const limit = (c) => [c.maxBytes !== null ? formatBytes(c.maxBytes) : null, c.maxMessages !== null ? c.maxMessages + " msgs" : null, c.maxAgeMs !== null ? formatDuration(c.maxAgeMs) : null].filter((x) => x !== null).join(", ") || "none";
    backlogs.push(head, table(["class", "messages", "bytes", "oldest", "limits"], o.classes.map((c) => row([
      el("td", c.name), num(c.messages, k + ".class." + c.name), num(formatBytes(c.bytes)),
      num(c.oldestAgeMs === null ? "–" : formatDuration(c.oldestAgeMs), k + ".oldest." + c.name),
      el("td", limit(c) + ", " + c.onFull, "mute", k + ".limits." + c.name)]))));
    if (accounts.length > 1) backlogs.push(el("p", "clients: MQTT " + a.mqtt.connections + ", NATS " + a.nats.connections, "mute"));
  }
  const last = series[series.length - 1];
  const legend = el("p", null, "legend");
  legend.append(
    el("span", "ingest " + (last ? formatRate(last.in) : "–") + " msg/s", "in", "rate.ingest"),
    el("span", "forward " + (last ? formatRate(last.out) : "–") + " msg/s", "out", "rate.forward"),
    el("span", "totals: " + d.totals.ingested + " in, " + d.totals.forwarded + " forwarded", "mute", "totals"));
  const canvas = document.createElement("canvas");
  const clients = el("p");
  clients.append("MQTT ", el("strong", s.mqtt.connections, null, "clients.mqtt"), ", NATS ", el("strong", s.nats.connections, null, "clients.nats"));
  const serial = s.serial.length === 0 ? el("p", "no devices configured", "mute", "serial.none") :
    table(["device", "state", "frames", "bad", "last frame"], s.serial.map((x) => row([
      el("td", x.device + " " + x.path),
      el("td", x.state + ("since" in x ? " since " + clockOf(x.since) : "") + ("reason" in x ? ": " + x.reason : ""), x.state === "open" ? "ok" : "bad", "serial." + x.device),
      num(x.frames, "serial." + x.device + ".frames"), num(x.badFrames, "serial." + x.device + ".bad"),
      num(x.lastFrameAt === null ? "none yet" : formatDuration(s.time - x.lastFrameAt) + " ago", "serial." + x.device + ".last")])));
  const dk = s.disk;
  const disk = el("p", null, null);
  disk.append(el("span", dk.state === "full" ? "FULL" : dk.state === "ok" ? "ok" : "guard off", dk.state === "full" ? "bad" : dk.state === "ok" ? "ok" : "mute", "disk.state"),
    el("span", (dk.freeBytes !== null ? ", " + formatBytes(dk.freeBytes) + " free" : "") +
      (dk.state === "full" ? "; the buffer is held at its size until " + formatBytes(dk.resumeAtFreeBytes) + " are free" : ""), "mute"));
  const drops = d.drops.length === 0 ? el("p", "none", "mute", "drops.none") :
    table(["counter", "labels", "count"], d.drops.map((x) => row([el("td", x.what), el("td", x.labels), num(x.count, "drop")])));
  $("main").replaceChildren(
    section("Uplink", ...uplinks),
    section("Backlog", ...backlogs, el("h2", "Disk"), disk),
    section("Ingest and forward, last 5 minutes", legend, canvas),
    section("Clients", clients),
    section("Serial devices", serial),
    section("Drops", drops));
  draw(canvas);
}
function draw(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300, h = canvas.clientHeight || 160;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  if (!g) return;
  g.scale(dpr, dpr);
  const max = Math.max(1, ...series.map((p) => Math.max(p.in, p.out)));
  g.strokeStyle = "#8884"; g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  g.fillStyle = "#777"; g.font = "11px system-ui"; g.fillText(formatRate(max) + " msg/s", 4, 12);
  const x = (i) => w - (series.length - 1 - i) * (w / (POINTS - 1));
  for (const [key, color] of [["in", "#0969da"], ["out", "#1a7f37"]]) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    series.forEach((p, i) => { const y = h - 2 - (p[key] / max) * (h - 16); i === 0 ? g.moveTo(x(i), y) : g.lineTo(x(i), y); });
    g.stroke();
  }
}
loop();
`;

/** The page, built once. */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leafgate status</title>
<style>${CSS}</style>
</head>
<body>
<h1 id="title">leafgate</h1>
<p id="updated" class="mute">waiting for the first answer…</p>
<div id="banner" role="alert" hidden></div>
<form id="login" hidden>
<p>This gateway needs its <code>http.token</code> (or open <code>/#token=…</code>).</p>
<input id="token-input" type="password" autocomplete="current-password" aria-label="token">
<button type="submit">Show status</button>
<p id="login-error" class="err"></p>
</form>
<main id="main" class="grid"></main>
<script>${SCRIPT}</script>
</body>
</html>
`;
