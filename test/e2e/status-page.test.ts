// The status page at `/`, in Debian's chromium driven by playwright-core, against the
// shipped bundle as a child process and a real hub:
// - it shows what the gateway did: uplink forwarding, 5 ingested and forwarded, backlog 0,
//   no clients, no serial devices, no drops; the hub stopped: the uplink in red with the
//   last error; 3 more published: backlog 3; the gateway stopped: "no answer since";
// - with http.token: `/` is 401 without it; the page takes it from `/#token=...` (and
//   drops it from the address bar) or from its form, which says when it was refused.
// - the uplink's connects and since-when, each class's oldest message's age and limits, the
//   disk guard; a serial device's frames, bad frames (exactly the garbage lines written)
//   and last frame.
// A screenshot is kept in test-artifacts/status-page.png.
import { mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { describe, expect } from "vitest";
import { type Defer, it } from "../helpers/fixtures.js";
import { mosquittoPubLines } from "../helpers/mqtt.js";
import { stopProcess } from "../helpers/procs.js";
import { spawnWithSensor } from "../helpers/sensor-gateway.js";
import { waitFor } from "../helpers/wait.js";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = join(
  dirname(fileURLToPath(import.meta.url)),
  "../../test-artifacts/status-page.png",
);
/** How long the page may take to show a change (a 2 s poll, a busy machine, the hub's backoff). */
const SHOWN_MS = 30_000;
const TOKEN = "s3cret-token-0123456789";

async function browserFor(defer: Defer): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox"],
  });
  defer(() => browser.close());
  return browser;
}

/** A page that records its script errors; the test fails if there are any. */
async function pageOf(browser: Browser, defer: Defer, viewport = { width: 420, height: 900 }) {
  const page = await (await browser.newContext({ viewport })).newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => void errors.push(e.message));
  defer(() => expect(errors).toEqual([]));
  return page;
}

/** The text of the element `data-k=key`, or undefined while the page has none. */
async function shown(page: Page, key: string): Promise<string | undefined> {
  const loc = page.locator(`[data-k="${key}"]`);
  return (await loc.count()) === 1 ? ((await loc.textContent()) ?? undefined) : undefined;
}

/** Polls the page until `check` holds for the values of `keys`; returns them. */
async function until(
  page: Page,
  keys: readonly string[],
  check: (v: Record<string, string | undefined>) => boolean,
): Promise<Record<string, string | undefined>> {
  let last: Record<string, string | undefined> = {};
  return waitFor(
    async () => {
      last = Object.fromEntries(
        await Promise.all(keys.map(async (k) => [k, await shown(page, k)])),
      );
      return check(last) ? last : undefined;
    },
    { timeoutMs: SHOWN_MS, intervalMs: 200, message: () => `page shows ${JSON.stringify(last)}` },
  );
}

describe("the status page", () => {
  it("shows uplink, backlog, totals, clients and drops; the hub down; the gateway gone", async ({
    hub,
    stream,
    gateway,
    defer,
  }) => {
    const gw = await gateway.spawn({ upstream: { servers: [hub.url], stream } });
    await mosquittoPubLines(gw.mqttPort, "sensors/a", ["m1", "m2", "m3", "m4", "m5"], { qos: 1 });

    const browser = await browserFor(defer);
    const page = await pageOf(browser, defer);
    await page.goto(`http://127.0.0.1:${gw.httpPort}/`);
    expect(await page.title()).toBe("leafgate status");

    const KEYS = [
      "account.$G.uplink",
      "account.$G.pending",
      "totals",
      "clients.mqtt",
      "clients.nats",
      "serial.none",
      "drops.none",
    ];
    const up = await until(
      page,
      KEYS,
      (v) => v.totals === "totals: 5 in, 5 forwarded" && v["account.$G.pending"] === "0",
    );
    expect(up).toEqual({
      "account.$G.uplink": "forwarding",
      "account.$G.pending": "0",
      totals: "totals: 5 in, 5 forwarded",
      "clients.mqtt": "0",
      "clients.nats": "0",
      "serial.none": "no devices configured",
      "drops.none": "none",
    });
    expect(await page.locator('[data-k="account.$G.uplink"]').getAttribute("class")).toBe("ok");
    expect(await page.locator("#title").textContent()).toBe("leafgate gw1");
    // The chart's rates need two answers; then a number (whatever the machine's pace).
    const rates = await until(page, ["rate.ingest", "rate.forward"], (v) =>
      /\d/.test(v["rate.ingest"] ?? ""),
    );
    expect(rates["rate.ingest"]).toMatch(/^ingest \d+(\.\d)?k? msg\/s$/);
    expect(rates["rate.forward"]).toMatch(/^forward \d+(\.\d)?k? msg\/s$/);
    expect(await page.locator("#banner").isHidden()).toBe(true);
    // One column on a phone, two on a wider screen.
    const lefts = async () =>
      page.locator("section").evaluateAll((all) => all.map((e) => e.getBoundingClientRect().left));
    expect(new Set(await lefts()).size).toBe(1);
    await page.setViewportSize({ width: 1000, height: 900 });
    expect(new Set(await lefts()).size).toBe(2);
    await page.setViewportSize({ width: 420, height: 900 });

    await hub.stop();
    const down = await until(
      page,
      ["account.$G.uplink", "account.$G.lastError"],
      (v) => v["account.$G.uplink"] !== "forwarding" && v["account.$G.lastError"] !== undefined,
    );
    expect(down["account.$G.lastError"]).toMatch(/^last error: /);
    expect(await page.locator('[data-k="account.$G.uplink"]').getAttribute("class")).toBe("bad");

    // Up to the outage: one connect; then down since the loss.
    expect(await shown(page, "account.$G.connects")).toBe("1");
    expect(await shown(page, "account.$G.since")).toMatch(/^down since \d\d:\d\d:\d\d \(\d+ s\)$/);

    const publishing = Date.now();
    await mosquittoPubLines(gw.mqttPort, "sensors/a", ["m6", "m7", "m8"], { qos: 1 });
    const backlog = await until(
      page,
      ["account.$G.pending", "totals"],
      (v) => v.totals === "totals: 8 in, 5 forwarded" && v["account.$G.pending"] === "3",
    );
    expect(backlog).toEqual({ "account.$G.pending": "3", totals: "totals: 8 in, 5 forwarded" });
    expect(await shown(page, "account.$G.class.default")).toBe("3");
    // The oldest message's age grows with the clock: seen at 2 s or more, never more than
    // the time since it was published.
    const aged = await until(page, ["account.$G.oldest.default"], (v) =>
      /^([2-9]|\d\d+) s$/.test(v["account.$G.oldest.default"] ?? ""),
    );
    const ageS = Number.parseInt(aged["account.$G.oldest.default"]!, 10);
    expect(ageS).toBeLessThanOrEqual((Date.now() - publishing) / 1000);
    expect(await shown(page, "account.$G.limits.default")).toBe(
      "953.7 MiB, 10000000 msgs, 7 d, drop_oldest",
    );
    expect(await shown(page, "disk.state")).toBe("ok");

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(0);

    await stopProcess(gw.proc);
    const banner = await waitFor(
      async () => {
        const b = page.locator("#banner");
        return (await b.isVisible()) ? b.textContent() : undefined;
      },
      { timeoutMs: SHOWN_MS, intervalMs: 200 },
    );
    expect(banner).toMatch(/^no answer since \d\d:\d\d:\d\d \(.+\)$/);
  });

  it("shows a serial device's frames, bad frames and last frame", async ({
    hub,
    stream,
    gateway,
    defer,
  }) => {
    const { gw, sim } = await spawnWithSensor({ hub, stream, gateway, defer });
    const page = await pageOf(await browserFor(defer), defer);
    await page.goto(`http://127.0.0.1:${gw.httpPort}/`);
    await until(page, ["serial.env-1"], (v) => v["serial.env-1"]?.startsWith("open") === true);
    expect(await shown(page, "serial.env-1.last")).toBe("none yet");

    for (let i = 0; i < 2; i++) sim.sendGood();
    for (let i = 0; i < 5; i++) sim.pty.write(Buffer.from(`garbage ${i}\n`));
    const seen = await until(
      page,
      ["serial.env-1.frames", "serial.env-1.bad", "serial.env-1.last"],
      (v) => v["serial.env-1.frames"] === "2" && v["serial.env-1.bad"] === "5",
    );
    expect(seen["serial.env-1.last"]).toMatch(/^\d+ s ago$/);
    expect(await page.locator('[data-k="serial.env-1"]').getAttribute("class")).toBe("ok");
  });

  it("with http.token: 401 without it; takes it from #token= or from its form", async ({
    gateway,
    defer,
  }) => {
    const gw = await gateway.spawn({ http: { token: TOKEN } });
    const url = `http://127.0.0.1:${gw.httpPort}`;
    for (const path of ["/", "/api/status"]) {
      expect([path, (await fetch(`${url}${path}`)).status]).toEqual([path, 401]);
    }

    const browser = await browserFor(defer);
    const viaHash = await pageOf(browser, defer);
    await viaHash.goto(`${url}/#token=${TOKEN}`);
    expect(await until(viaHash, ["clients.mqtt"], (v) => v["clients.mqtt"] === "0")).toEqual({
      "clients.mqtt": "0",
    });
    expect(viaHash.url()).toBe(`${url}/`);

    // A new context, no sessionStorage: the browser gets the page with the 401, and its form.
    const asks = await pageOf(browser, defer);
    expect((await asks.goto(`${url}/`))?.status()).toBe(401);
    await asks.locator("#token-input").waitFor({ state: "visible", timeout: SHOWN_MS });
    expect(await asks.locator("#login-error").textContent()).toBe("");
    await asks.fill("#token-input", "wrong-token-0123456789");
    await asks.click("button[type=submit]");
    await waitFor(async () => (await asks.locator("#login-error").textContent()) !== "", {
      timeoutMs: SHOWN_MS,
    });
    expect(await asks.locator("#login-error").textContent()).toBe(
      "The gateway refused this token.",
    );
    await asks.fill("#token-input", TOKEN);
    await asks.click("button[type=submit]");
    expect(await until(asks, ["clients.mqtt"], (v) => v["clients.mqtt"] === "0")).toEqual({
      "clients.mqtt": "0",
    });
    expect(await asks.locator("#login").isHidden()).toBe(true);
  });
});
