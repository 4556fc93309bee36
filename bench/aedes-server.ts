// aedes 1.x (in-memory persistence, default options) on 127.0.0.1 and an ephemeral port (or
// the port given as its argument), run by bench/mqtt-fan-in.ts and bench/footprint.ts as a
// child process so it has an event loop of its own. Prints `aedes listening <port>` once it
// accepts connections.
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { Aedes } from "aedes";

const aedes = await Aedes.createBroker();
const server = createServer(aedes.handle);
server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () =>
  console.log(`aedes listening ${(server.address() as AddressInfo).port}`),
);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    server.close();
    aedes.close(() => process.exit(0));
  });
}
