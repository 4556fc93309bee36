// aedes 1.x (in-memory persistence, default options) on 127.0.0.1:<port>, run by
// bench/mqtt-fan-in.mjs as a child process so it has an event loop of its own.
import { createServer } from "node:net";
import { Aedes } from "aedes";

const port = Number(process.argv[2]);
const aedes = await Aedes.createBroker();
const server = createServer(aedes.handle);
server.listen(port, "127.0.0.1", () => console.log(`aedes listening ${port}`));
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close();
    aedes.close(() => process.exit(0));
  });
}
