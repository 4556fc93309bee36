// Loopback addresses for tests.
import { createServer } from "node:net";
import { once } from "./wait.js";

/**
 * A port nothing listens on: bound by us, then released. Good for "unreachable" (a dial is
 * refused), never for listening on: another process may take it meanwhile.
 */
export async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}
