/** A single sleeper that an event can wake early: the forwarder's one place to wait. */
export class Wakeup {
  #wake: (() => void) | undefined;

  /** Resolves on `wake()`, on abort, or after `ms` when given. */
  wait(signal: AbortSignal, ms?: number): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.#wake = undefined;
        resolve();
      };
      if (ms !== undefined) timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  wake(): void {
    this.#wake?.();
  }
}
