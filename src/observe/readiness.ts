/**
 * Readiness: whether the gateway does its whole job now, and if not, why, in words a
 * person acts on. Pure: decided from the `/status` snapshot alone (docs/status.md).
 */

/** A hub link as `/status` shows it. */
export interface UpstreamView {
  readonly state: string;
  readonly server?: string | undefined;
  readonly stream?: string | undefined;
  readonly lastError?: string | undefined;
}

/** A serial device as `/status` shows it. */
export interface SerialView {
  readonly device: string;
  readonly path: string;
  readonly state: string;
  readonly reason?: string;
}

/** The parts of `/status` readiness is decided from. */
export interface ReadinessInput {
  readonly healthy: boolean;
  /** The gateway's lifecycle state; `healthy` alone decides when absent. */
  readonly state?: string;
  readonly upstream?: UpstreamView | undefined;
  /** Per account, `$G` first; when present it supersedes `upstream`. */
  readonly accounts?: Readonly<Record<string, { readonly upstream: UpstreamView }>>;
  readonly serial?: readonly SerialView[];
}

export type Readiness =
  | { readonly ready: true }
  | { readonly ready: false; readonly reasons: readonly string[] };

const GLOBAL = "$G";

/**
 * Ready when the gateway is running, every account's hub link forwards and every serial
 * port is open. Each failed rule gives one reason.
 */
export function readiness(status: ReadinessInput): Readiness {
  const reasons: string[] = [];
  if (status.state !== undefined ? status.state !== "running" : !status.healthy) {
    reasons.push(`gateway is ${status.state ?? "not healthy"}, not running`);
  }
  const links: [string, UpstreamView][] =
    status.accounts !== undefined
      ? Object.entries(status.accounts).map(([name, a]) => [name, a.upstream])
      : status.upstream !== undefined
        ? [[GLOBAL, status.upstream]]
        : [];
  for (const [account, link] of links) {
    const reason = upstreamReason(link);
    if (reason !== undefined) {
      reasons.push(account === GLOBAL ? reason : `account ${account}: ${reason}`);
    }
  }
  for (const d of status.serial ?? []) {
    if (d.state === "open") continue;
    const why = d.reason ?? (d.state === "opening" ? "opening" : d.state);
    reasons.push(`serial port ${d.path} (device ${d.device}) not open: ${why}`);
  }
  return reasons.length === 0 ? { ready: true } : { ready: false, reasons };
}

function upstreamReason(link: UpstreamView): string | undefined {
  switch (link.state) {
    case "forwarding":
      return undefined;
    case "waiting-for-stream":
      return (
        `hub ${link.server ?? "?"} answers but forwarding waits for its stream: ` +
        `${link.lastError ?? "stream not checked yet"}; messages are buffered`
      );
    case "stopping":
    case "stopped":
      return `hub link is ${link.state}; messages are buffered`;
    default: {
      const where = link.server !== undefined ? ` (last server ${link.server})` : "";
      const why = link.lastError !== undefined ? `: ${link.lastError}` : ": not connected yet";
      return `hub unreachable${where}${why}; messages are buffered`;
    }
  }
}
