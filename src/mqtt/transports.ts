import type { WebSocket } from "ws";
import type { Guard } from "../core/index.js";
import type { Transport } from "./transport.js";

/** A WebSocket whose close handshake does not finish within this is cut. */
const WS_CLOSE_TIMEOUT_MS = 5_000;

/**
 * Adapts a WebSocket to the Transport. Packets written in one turn of the event loop go
 * out as one binary message: MQTT does not care where frames split [MQTT-6.0.0-2].
 */
export function webSocketTransport(ws: WebSocket, remote: string, guard: Guard): Transport {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  const cut = (): void => ws.terminate();
  const flush = guard.wrap(
    "mqtt.ws-flush",
    (): void => {
      const parts = pending;
      pending = [];
      pendingBytes = 0;
      if (parts.length === 0 || ws.readyState !== ws.OPEN) return;
      ws.send(parts.length === 1 ? parts[0]! : Buffer.concat(parts), { binary: true });
    },
    cut,
  );
  return {
    write: (bytes) => {
      if (pending.length === 0) process.nextTick(flush);
      pending.push(bytes);
      pendingBytes += bytes.length;
      return ws.bufferedAmount === 0;
    },
    end: (readOn = true) => {
      flush();
      if (readOn) ws.resume();
      ws.close(1000);
      setTimeout(guard.wrap("mqtt.ws-close-timeout", cut), WS_CLOSE_TIMEOUT_MS).unref();
    },
    destroy: () => ws.terminate(),
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    get writableLength() {
      return ws.bufferedAmount + pendingBytes;
    },
    remote,
  };
}
