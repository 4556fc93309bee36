// Serial → both: what a simulated device on a socat pty publishes reaches local NATS and
// MQTT subscribers and the hub, the same messages in the same order everywhere.
import { connect } from "@nats-io/transport-node";
import { expect } from "vitest";
import { weatherCsv, weatherHeader } from "../../firmware-sim/models-text.js";
import { connectMqttJs } from "../helpers/mqtt.js";
import { streamMessages } from "../helpers/nats-server.js";
import { it } from "../helpers/serial-gateway.js";
import { waitFor } from "../helpers/wait.js";

const ROWS = 20;
/** weather-csv publishes each row as one message per column. */
const COLUMNS = 7;

it("a serial device's messages reach NATS, MQTT 3.1.1 and MQTT 5 subscribers and the hub alike", async ({
  nc: hubClient,
  stream,
  serialGateway,
  defer,
}) => {
  const wx = await serialGateway(weatherCsv, "weather-csv", "wx-9");
  const { gw, sim } = wx;
  const local = await connect({ servers: `127.0.0.1:${gw.natsPort}`, reconnect: false });
  const v3 = await connectMqttJs(gw.mqttPort, { clientId: "serial-v3" });
  const v5 = await connectMqttJs(gw.mqttPort, { clientId: "serial-v5", protocolVersion: 5 });
  defer(() => Promise.all([local.close(), v3.endAsync(), v5.endAsync()]));
  const viaNats: string[] = [];
  local.subscribe("sensors.wx-9.>", {
    callback: (_e, m) => void viaNats.push(`${m.subject} ${Buffer.from(m.data).toString()}`),
  });
  await local.flush();
  const viaV3: string[] = [];
  const viaV5: string[] = [];
  v3.on("message", (t, p) => void viaV3.push(`${t} ${p.toString()}`));
  v5.on("message", (t, p) => void viaV5.push(`${t} ${p.toString()}`));
  await v3.subscribeAsync("sensors/wx-9/#", { qos: 1 });
  await v5.subscribeAsync("sensors/+/temperature", { qos: 0 });

  expect(sim.pty.write(weatherHeader())).toBe(true);
  await sim.run(100, ROWS);
  await waitFor(() => viaNats.length === ROWS * COLUMNS && viaV3.length === ROWS * COLUMNS, {
    message: () => `nats ${viaNats.length}, mqtt ${viaV3.length}`,
  });
  await waitFor(async () => (await wx.stored()) === ROWS * COLUMNS);
  const inHub = (await streamMessages(hubClient, stream)).map(
    (m) => `${m.subject.replace(/^edge\.gw1\./, "")} ${Buffer.from(m.data).toString()}`,
  );
  expect(inHub).toHaveLength(ROWS * COLUMNS);
  expect(viaNats).toEqual(inHub);
  expect(viaV3).toEqual(inHub.map((m) => m.replace(/^(\S+)/, (s) => s.replaceAll(".", "/"))));
  await waitFor(() => viaV5.length === ROWS);
  expect(viaV5).toEqual(
    inHub
      .filter((m) => m.startsWith("sensors.wx-9.temperature "))
      .map((m) => m.replace("sensors.wx-9.temperature", "sensors/wx-9/temperature")),
  );
});
