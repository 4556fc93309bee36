// MQTT over TLS: a listener with a certificate, checked by mosquitto_pub and mqtt.js.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await runToCompletion("openssl", args, { cwd: dir, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A throwaway CA and a server certificate for 127.0.0.1. */
async function makeCerts(dir: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=leafgate-test-ca",
  ]);
  await openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  writeFileSync(join(dir, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "1",
    "-extfile",
    "san.ext",
  ]);
}

describe("MQTT over TLS", () => {
  let gw: TestGateway | undefined;
  let certs: TempDir | undefined;

  afterEach(async () => {
    await gw?.dispose();
    gw = undefined;
    await certs?.cleanup();
  });

  it("accepts TLS clients that trust the CA, and only TLS", async () => {
    certs = tempDir("tls");
    await makeCerts(certs.path);
    const c = certs.path;
    gw = await startGateway({
      mqtt: `  listeners:\n    - { host: 127.0.0.1, port: 0, tls: { cert: "${c}/server.pem", key: "${c}/server.key" } }\n`,
    });
    const r = await runToCompletion(
      "mosquitto_pub",
      [
        "-h",
        "127.0.0.1",
        "-p",
        String(gw.mqttPort),
        "--cafile",
        join(c, "ca.pem"),
        "-t",
        "s/tls",
        "-m",
        "secure",
        "-q",
        "1",
      ],
      { timeoutMs: 10_000 },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const js = await connectMqttJs(gw.mqttPort, {
      protocol: "mqtts",
      ca: readFileSync(join(c, "ca.pem")),
      servername: "localhost",
    });
    await js.publishAsync("s/tls", "also secure", { qos: 1 });
    await js.endAsync();
    expect((gw.gateway.status().outbox as { pending: number }).pending).toBe(2);

    // A plain-TCP client does not get through.
    const plain = await runToCompletion(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(gw.mqttPort), "-t", "s/plain", "-m", "x", "-q", "1"],
      { timeoutMs: 10_000 },
    );
    expect(plain.code).not.toBe(0);
    expect((gw.gateway.status().outbox as { pending: number }).pending).toBe(2);
  });

  it("carries MQTT 5 over WebSocket with TLS (wss://)", async () => {
    certs = tempDir("tls");
    await makeCerts(certs.path);
    const c = certs.path;
    gw = await startGateway({
      mqtt: `  listeners:\n    - { host: 127.0.0.1, port: 0, websocket: true, tls: { cert: "${c}/server.pem", key: "${c}/server.key" } }\n`,
    });
    const ca = readFileSync(join(c, "ca.pem"));
    const opts = { protocol: "wss", ca, servername: "localhost", path: "/mqtt" } as const;
    const sub = await connectMqttJs(gw.mqttPort, { ...opts, protocolVersion: 5 });
    const got: string[] = [];
    sub.on("message", (topic, payload) => got.push(`${topic} ${payload.toString()}`));
    await sub.subscribeAsync("s/wss", { qos: 1 });
    const pub = await connectMqttJs(gw.mqttPort, opts);
    await pub.publishAsync("s/wss", "one", { qos: 1 });
    await pub.publishAsync("s/wss", "two", { qos: 2 });
    await waitFor(() => got.length === 2);
    expect(got).toEqual(["s/wss one", "s/wss two"]);
    await pub.endAsync();
    await sub.endAsync();
    // Plain ws:// does not get through a TLS listener.
    await expect(connectMqttJs(gw.mqttPort, { protocol: "ws", path: "/mqtt" })).rejects.toThrow();
  });
});
