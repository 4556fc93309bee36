// The NATS endpoint as the gateway runs it: the bundle restarted under a connected nats.js
// client, TLS listeners (upgraded after INFO, as nats-server does), and the bounds a
// hostile client meets (per-address connections, the auth timeout, max_payload).
import { type AddressInfo, createServer, connect as netConnect } from "node:net";
import { connect } from "@nats-io/transport-node";
import { expect } from "vitest";
import { makeCerts, makeClientCerts } from "../helpers/certs.js";
import { it } from "../helpers/fixtures.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { stopProcess } from "../helpers/procs.js";
import { tempDir, waitFor } from "../helpers/wait.js";

const text = (data: Uint8Array): string => Buffer.from(data).toString();

it("nats.js reconnects to a restarted gateway and its subscription resumes", async ({
  gateway,
  defer,
}) => {
  const first = await gateway.spawn();
  const port = first.natsPort!;
  const nc = await connect({
    servers: `127.0.0.1:${port}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 50,
  });
  defer(() => nc.close());
  const got: string[] = [];
  nc.subscribe("after.>", { callback: (_e, m) => void got.push(text(m.data)) });
  await nc.flush();
  const reconnected = (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") return;
  })();
  await stopProcess(first.proc);
  // The same port again (the file keeps the rest of the config).
  const again = gateway.writeConfig({ nats: { listeners: [{ host: "127.0.0.1", port }] } });
  const second = await gateway.spawnFile(again.file);
  await reconnected;
  await nc.flush();
  const mqtt = await connectMqttJs(second.mqttPort, { clientId: "restart-pub" });
  defer(() => mqtt.endAsync());
  for (let i = 0; i < 5; i++) await mqtt.publishAsync(`after/x${i}`, `p${i}`, { qos: 1 });
  await waitFor(() => got.length === 5, { message: "5 messages after the restart" });
  expect(got).toEqual(["p0", "p1", "p2", "p3", "p4"]);
});

it("TLS: upgraded after INFO; an untrusted server certificate or a missing client certificate is refused and counted", async ({
  gateway,
  defer,
}) => {
  const certs = tempDir("nats-tls");
  defer(() => certs.cleanup());
  const { makeCertsAt, file } = {
    makeCertsAt: certs.path,
    file: (n: string) => `${certs.path}/${n}`,
  };
  await makeCerts(makeCertsAt);
  await makeClientCerts(makeCertsAt);
  const gw = await gateway.start({
    nats: {
      listeners: [
        { host: "127.0.0.1", port: 0, tls: { cert: file("server.pem"), key: file("server.key") } },
        {
          host: "127.0.0.1",
          port: 0,
          tls: { cert: file("server.pem"), key: file("server.key"), ca: file("ca.pem") },
        },
      ],
    },
  });
  const [plain, verified] = gw.gateway.addresses().nats.map((a) => a.port);
  const nc = await connect({
    servers: `127.0.0.1:${plain}`,
    reconnect: false,
    tls: { caFile: file("ca.pem") },
  });
  defer(() => nc.close());
  const sub = nc.subscribe("secure.x", { max: 1 });
  nc.publish("secure.x", "over tls");
  for await (const m of sub) expect(text(m.data)).toBe("over tls");
  expect(nc.info?.tls_required).toBe(true);

  // A client that does not trust the certificate gives up in the handshake.
  await expect(connect({ servers: `127.0.0.1:${plain}`, reconnect: false })).rejects.toThrow();
  // The second listener wants a client certificate from its CA.
  await expect(
    connect({
      servers: `127.0.0.1:${verified}`,
      reconnect: false,
      tls: { caFile: file("ca.pem") },
    }),
  ).rejects.toThrow();
  await expect(
    connect({
      servers: `127.0.0.1:${verified}`,
      reconnect: false,
      tls: {
        caFile: file("ca.pem"),
        certFile: file("stranger.pem"),
        keyFile: file("stranger.key"),
      },
    }),
  ).rejects.toThrow();
  const withCert = await connect({
    servers: `127.0.0.1:${verified}`,
    reconnect: false,
    tls: { caFile: file("ca.pem"), certFile: file("client.pem"), keyFile: file("client.key") },
  });
  defer(() => withCert.close());
  await withCert.flush();
  await waitFor(
    () =>
      /leafgate_nats_tls_handshake_failures_total 3\b/.test(gw.gateway.metrics.render()) ||
      undefined,
    { message: () => gw.gateway.metrics.render() },
  );
});

it("bounds: per-address connections, the auth timeout, max_payload", async ({ gateway, defer }) => {
  const gw = await gateway.start({
    nats: {
      listeners: [{ host: "127.0.0.1", port: 0 }],
      max_connections_per_address: 2,
      auth_timeout: "300ms",
      max_payload: 1024,
    },
  });
  const servers = `127.0.0.1:${gw.natsPort}`;
  const a = await connect({ servers, reconnect: false });
  const b = await connect({ servers, reconnect: false });
  defer(() => Promise.all([a.close(), b.close()]));
  await expect(connect({ servers, reconnect: false, timeout: 2_000 })).rejects.toThrow();
  expect(gw.gateway.metrics.render()).toMatch(
    /leafgate_nats_connections_refused_total\{reason="per-address"\} 1\b/,
  );
  await b.close();
  await waitFor(() => gw.gateway.status().nats.connections === 1, { message: "b gone" });

  // A socket that never sends CONNECT: nats-server's error, then the close.
  const raw = netConnect(gw.natsPort!, "127.0.0.1");
  defer(() => raw.destroy());
  let received = "";
  raw.on("data", (d) => {
    received += d.toString();
  });
  await new Promise<void>((resolve) => raw.once("close", () => resolve()));
  expect(received).toMatch(/^INFO \{.*\}\r\n-ERR 'Authentication Timeout'\r\n$/);

  // Larger than INFO's max_payload: nats.js refuses it itself; said by the server too.
  expect(a.info?.max_payload).toBe(1024);
  expect(() => a.publish("big", new Uint8Array(1025))).toThrow(/MAX_PAYLOAD|payload/i);
});

it("a port already taken fails the start with what holds it and how to move", async ({
  gateway,
  defer,
}) => {
  const holder = createServer().listen(0, "127.0.0.1");
  await new Promise((resolve) => holder.once("listening", resolve));
  defer(() => new Promise((resolve) => holder.close(resolve)));
  const port = (holder.address() as AddressInfo).port;
  await expect(
    gateway.start({ nats: { listeners: [{ host: "127.0.0.1", port }] } }),
  ).rejects.toThrow(
    `the NATS listener cannot take 127.0.0.1:${port}: something else listens there (a nats-server? leafgate's hub belongs on another port, see README: stop it, or set nats.listeners to another port)`,
  );
  await expect(
    gateway.start({ mqtt: { listeners: [{ host: "127.0.0.1", port }] } }),
  ).rejects.toThrow(
    `the MQTT listener cannot take 127.0.0.1:${port}: something else listens there`,
  );
});
