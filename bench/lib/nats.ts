// nats-server as a hub or an edge, from test/helpers/nats-server.ts (ephemeral client port
// read from its ports file). MQTT and leaf node listeners start on -1 too; their ports are
// read from the log, and a restart (after a kill -9) keeps every port and the JetStream store.
import { join } from "node:path";
import { type NatsServer, startNatsServer } from "../../test/helpers/nats-server.js";
import { waitForLine } from "../../test/helpers/procs.js";

const LISTENING_TIMEOUT_MS = 20_000;
const MQTT_LISTENING = /Listening for MQTT clients on mqtt:\/\/[^\s]+:(\d+)/;
const LEAF_LISTENING = /Listening for leafnode connections on [^\s]+:(\d+)/;

export interface NatsOptions {
  serverName: string;
  /** The JetStream store directory (kept across restarts). */
  storeDir: string;
  /** JetStream domain (an edge's own, apart from its hub's). */
  domain?: string;
  /** An MQTT listener, as MQTT clients' broker. */
  mqtt?: boolean;
  /** A leaf node listener, for edges to connect to. */
  leafnodes?: boolean;
  /** This server is a leaf node of the hub whose leaf node port this returns. */
  hubLeafPort?: () => number;
}

/** One nats-server at a time on fixed settings; start() again after kill() is a restart. */
export class NatsProcess {
  readonly #opts: NatsOptions;
  #server: NatsServer | undefined;
  #mqttPort = -1;
  #leafPort = -1;

  constructor(opts: NatsOptions) {
    this.#opts = opts;
  }

  get server(): NatsServer {
    if (!this.#server) throw new Error(`nats-server ${this.#opts.serverName} not started`);
    return this.#server;
  }

  get url(): string {
    return this.server.url;
  }

  get mqttPort(): number {
    return this.#mqttPort;
  }

  get leafPort(): number {
    return this.#leafPort;
  }

  #config(): string {
    const o = this.#opts;
    const domain = o.domain ? `, domain: ${o.domain}` : "";
    const lines = [
      `server_name: ${o.serverName}`,
      `jetstream { store_dir: "${o.storeDir}"${domain} }`,
    ];
    if (o.mqtt) lines.push(`mqtt { listen: 127.0.0.1:${this.#mqttPort} }`);
    if (o.leafnodes) lines.push(`leafnodes { listen: 127.0.0.1:${this.#leafPort} }`);
    if (o.hubLeafPort) {
      lines.push(`leafnodes { remotes = [ { url: "nats-leaf://127.0.0.1:${o.hubLeafPort()}" } ] }`);
    }
    return `${lines.join("\n")}\n`;
  }

  /** Starts the server (on the ports it had, if it ran before); resolves once all listen. */
  async start(): Promise<this> {
    const old = this.#server;
    await old?.stop(); // after kill(): removes its temp dir
    const server = await startNatsServer({
      jetstream: false, // configured in #config() with its domain
      config: this.#config(),
      ...(old ? { port: old.port } : {}),
    });
    this.#server = server;
    const portIn = async (re: RegExp) => {
      const l = await waitForLine(server.proc, (l) => re.test(l), LISTENING_TIMEOUT_MS, "stderr");
      return Number(re.exec(l)![1]);
    };
    if (this.#opts.mqtt) this.#mqttPort = await portIn(MQTT_LISTENING);
    if (this.#opts.leafnodes) this.#leafPort = await portIn(LEAF_LISTENING);
    return this;
  }

  /** SIGKILL: a crash; the store stays for start(). */
  async kill(): Promise<void> {
    await this.#server?.kill();
  }

  /** Graceful stop; removes the helper's temp dir (not the store). */
  async stop(): Promise<void> {
    await this.#server?.stop();
  }
}

/** A store directory for a server named `name` under `dir`. */
export const storeIn = (dir: string, name: string): string => join(dir, `${name}-js`);
