/** The `upstream` section of the config, as the hub link reads it. */
export interface UpstreamConfig {
  readonly servers: readonly string[];
  readonly mode: "jetstream" | "core";
  readonly stream: string | null;
  readonly domain: string | null;
  readonly prefix: string;
  readonly export: readonly string[];
  readonly import: readonly string[];
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  readonly credentials?: string;
  readonly nkey_seed?: string;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string };
  readonly max_in_flight: number;
  readonly ack_timeout: number;
  readonly reconnect_delay_max: number;
  readonly ping_interval: number;
  readonly drain: "fifo" | "fresh_first";
  readonly rate_limit: { readonly messages_per_second: number; readonly bytes_per_second: number };
}
