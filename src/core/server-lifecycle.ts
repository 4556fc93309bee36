import type { AddressInfo, ListenOptions, Server } from "node:net";
import { LeafgateError } from "./errors.js";

/** What to say when the address is taken: the error code, the part, and the way out. */
export interface PortInUse {
  readonly code: string;
  readonly what: string;
  readonly fix: string;
}

/**
 * The lifecycle (STYLE.md "Lifecycle") of a part that serves a listening socket: listens
 * with an optional signal, whose abort runs the part's own stop, and tells when the
 * server has closed. Used by the MQTT and NATS listeners and the HTTP endpoint.
 */
export class ServerLifecycle {
  #closed: Promise<Error | undefined> | undefined;
  /** An error the server hit after it began listening (an accept that failed). */
  #error: Error | undefined;

  /**
   * Listens on `server` (once); rejects as `server.listen` does (an address in use as
   * `inUse` says, when given), or at once if `signal` has aborted. From then on an abort
   * of `signal` runs `stop`, which must close it.
   */
  async listen(
    server: Server,
    options: ListenOptions,
    stop: () => void,
    signal?: AbortSignal,
    inUse?: PortInUse,
  ): Promise<AddressInfo> {
    signal?.throwIfAborted();
    let settle: (err: Error | undefined) => void = () => {};
    this.#closed = new Promise((resolve) => {
      settle = resolve;
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      settle(err instanceof Error ? err : new Error(String(err)));
      if (inUse === undefined || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
      throw new LeafgateError(
        inUse.code,
        `${inUse.what} cannot take ${options.host}:${options.port}: something else listens there (${inUse.fix})`,
        { cause: err },
      );
    }
    server.on("error", (err: Error) => {
      this.#error = err;
      // Alone, it leaves the error uncaught as it was before it was recorded here.
      if (server.listenerCount("error") === 1) throw err;
    });
    server.once("close", () => {
      signal?.removeEventListener("abort", stop);
      settle(this.#error);
    });
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
    return server.address() as AddressInfo;
  }

  /**
   * Resolves once the server has closed (with the error it hit, if any), or failed to
   * listen (with that error); at once when it never listened. Never rejects.
   */
  closed(): Promise<Error | undefined> {
    return this.#closed ?? Promise.resolve(undefined);
  }
}
