// Two well-behaved clients that stay connected while a test attacks the gateway: a
// subscriber that records what it receives and a publisher; every close, offline,
// disconnect or error either of them sees is recorded as a disruption.
import type { IClientOptions, MqttClient } from "mqtt";
import { connectMqttJs } from "./mqtt.js";

export interface Bystanders {
  readonly publisher: MqttClient;
  /** Payloads the subscriber received, in order. */
  readonly received: string[];
  /** "subscriber close", "publisher error"…: empty while both are undisturbed. */
  readonly disruptions: string[];
  /** QoS granted to the subscriber's filter. */
  readonly granted: number[];
  /** Clients to end after the test: both bystanders, and any added. */
  readonly clients: MqttClient[];
  /** Ends every client in `clients`, ignoring failures. */
  end(): Promise<void>;
}

export async function connectBystanders(
  port: number,
  {
    subscriber: subscriberOptions,
    publisher: publisherOptions,
    filter,
  }: { subscriber: IClientOptions; publisher: IClientOptions; filter: string },
): Promise<Bystanders> {
  const subscriber = await connectMqttJs(port, subscriberOptions);
  const publisher = await connectMqttJs(port, publisherOptions);
  const clients: MqttClient[] = [];
  const disruptions: string[] = [];
  const received: string[] = [];
  for (const [client, name] of [
    [subscriber, "subscriber"],
    [publisher, "publisher"],
  ] as const) {
    clients.push(client);
    for (const event of ["close", "offline", "disconnect", "error"] as const) {
      client.on(event, () => disruptions.push(`${name} ${event}`));
    }
  }
  subscriber.on("message", (_topic, payload) => received.push(payload.toString()));
  const granted = (await subscriber.subscribeAsync(filter, { qos: 1 })).map((g) => g.qos);
  return {
    publisher,
    received,
    disruptions,
    granted,
    clients,
    end: async () => {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})));
    },
  };
}
