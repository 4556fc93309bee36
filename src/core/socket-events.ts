import type { Socket } from "node:net";
import type { Guard } from "./guard.js";
import type { TransportHandler } from "./transport.js";

/**
 * Hands a TCP socket's events to its connection, each under `guard` (labelled
 * `<part>.socket-data` and so on): a bug reached from one client's bytes cuts that
 * client's socket, never the process. `closed` runs first on close (the listener forgets it).
 */
export function attachSocket(
  socket: Socket,
  handler: TransportHandler,
  guard: Guard,
  part: "mqtt" | "nats",
  closed: () => void,
): void {
  const cut = (): void => {
    socket.destroy();
  };
  socket.on(
    "data",
    guard.wrap(`${part}.socket-data`, (chunk: Buffer) => handler.onData(chunk), cut),
  );
  socket.on(
    "drain",
    guard.wrap(`${part}.socket-drain`, () => handler.onDrain(), cut),
  );
  socket.on(
    "error",
    guard.wrap(`${part}.socket-error`, (err: Error) => handler.onClose(err), cut),
  );
  socket.on(
    "close",
    guard.wrap(`${part}.socket-close`, () => {
      closed();
      handler.onClose();
    }),
  );
}
