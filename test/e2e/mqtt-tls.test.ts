// MQTT over TLS: a listener with a certificate, checked by mosquitto_pub and mqtt.js.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeCerts, makeClientCerts } from "../helpers/certs.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { runToCompletion } from "../helpers/procs.js";
import { type TempDir, tempDir, waitFor } from "../helpers/wait.js";

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
      mqtt: {
        listeners: [
          { host: "127.0.0.1", port: 0, tls: { cert: `${c}/server.pem`, key: `${c}/server.key` } },
        ],
      },
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
    expect(gw.gateway.status().outbox.pending).toBe(2);

    // A plain-TCP client does not get through.
    const plain = await runToCompletion(
      "mosquitto_pub",
      ["-h", "127.0.0.1", "-p", String(gw.mqttPort), "-t", "s/plain", "-m", "x", "-q", "1"],
      { timeoutMs: 10_000 },
    );
    expect(plain.code).not.toBe(0);
    expect(gw.gateway.status().outbox.pending).toBe(2);
  });

  it("with a ca, takes only clients whose certificate it signed; the rest fail the handshake", async () => {
    certs = tempDir("tls");
    await makeCerts(certs.path);
    await makeClientCerts(certs.path);
    const file = (name: string) => join(certs!.path, name);
    gw = await startGateway({
      mqtt: {
        listeners: [
          {
            host: "127.0.0.1",
            port: 0,
            tls: { cert: file("server.pem"), key: file("server.key"), ca: file("ca.pem") },
          },
        ],
      },
    });
    const { metrics } = gw.gateway;
    const port = gw.mqttPort;
    const ca = readFileSync(file("ca.pem"));
    const asClient = {
      cert: readFileSync(file("client.pem")),
      key: readFileSync(file("client.key")),
    };
    const asStranger = {
      cert: readFileSync(file("stranger.pem")),
      key: readFileSync(file("stranger.key")),
    };
    const mqtts = { protocol: "mqtts", ca, servername: "localhost" } as const;
    const mosquittoPub = (payload: string, certificate: string[]) =>
      runToCompletion(
        "mosquitto_pub",
        [
          ...["-h", "127.0.0.1", "-p", String(port), "--cafile", file("ca.pem")],
          ...certificate,
          ...["-t", "s/mtls", "-m", payload, "-q", "1"],
        ],
        { timeoutMs: 10_000 },
      );
    const withCert = (name: string) => [
      "--cert",
      file(`${name}.pem`),
      "--key",
      file(`${name}.key`),
    ];

    // Everything that gets in is delivered to this subscriber, itself a certified client.
    const sub = await connectMqttJs(port, { ...mqtts, ...asClient });
    const got: string[] = [];
    sub.on("message", (_topic, payload) => got.push(payload.toString()));
    await sub.subscribeAsync("s/mtls", { qos: 1 });

    expect(await mosquittoPub("mosquitto", withCert("client"))).toMatchObject({
      code: 0,
      stderr: "",
    });
    const js = await connectMqttJs(port, { ...mqtts, ...asClient });
    await js.publishAsync("s/mtls", "mqtt.js", { qos: 1 });
    await js.endAsync();

    // No certificate, or one from a CA the listener does not trust: refused.
    const none = await mosquittoPub("no certificate", []);
    const stranger = await mosquittoPub("stranger", withCert("stranger"));
    for (const refused of [none, stranger]) {
      expect(refused).toMatchObject({ code: 7, stderr: "Error: The connection was lost.\n" });
    }
    // TLS 1.3: the client hears of it in an alert once its part of the handshake is done.
    await expect(connectMqttJs(port, mqtts)).rejects.toThrow(/alert certificate required/);
    await expect(connectMqttJs(port, { ...mqtts, ...asStranger })).rejects.toThrow();
    // In the TLS handshake: counted there, and never an MQTT connection.
    await waitFor(() => metrics.value("leafgate_mqtt_tls_handshake_failures_total") === 4);
    expect(metrics.value("leafgate_mqtt_connections_accepted_total")).toBe(3);

    // The gateway carries on.
    expect(await mosquittoPub("after", withCert("client"))).toMatchObject({ code: 0, stderr: "" });
    await waitFor(() => got.length === 3);
    expect(got).toEqual(["mosquitto", "mqtt.js", "after"]);
    expect(metrics.value("leafgate_mqtt_tls_handshake_failures_total")).toBe(4);
    expect(metrics.value("leafgate_mqtt_connections_accepted_total")).toBe(4);
    expect(gw.gateway.status().outbox.pending).toBe(3);
    await sub.endAsync();
  });

  it("carries MQTT 5 over WebSocket with TLS (wss://)", async () => {
    certs = tempDir("tls");
    await makeCerts(certs.path);
    const c = certs.path;
    gw = await startGateway({
      mqtt: {
        listeners: [
          {
            host: "127.0.0.1",
            port: 0,
            websocket: true,
            tls: { cert: `${c}/server.pem`, key: `${c}/server.key` },
          },
        ],
      },
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
