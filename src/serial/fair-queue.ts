interface Entry<T> {
  readonly key: string;
  readonly round: number;
  readonly seq: number;
  readonly item: T;
}

/**
 * A bounded queue that takes turns between keys (requesters), so one that queues many
 * items cannot starve the others.
 *
 * Rules (round-robin by virtual rounds, as start-time fair queueing does it):
 * - Each item gets a round: the later of the round now being served and one past the
 *   round of its key's previous item. A key's first item, or one that arrives after its
 *   key's turn has passed, joins the round now being served.
 * - `shift` takes the item of the lowest round; within a round, the one queued first.
 *   Taking an item moves the round being served up to its round.
 * - So with A's items a1 (running) a2 a3 a4 queued before B's b1 b2, the order is
 *   a1 b1 a2 b2 a3 a4: B joins the round a1 was served in, A's backlog takes one item
 *   per round.
 * - At most `capacity` items wait; `push` past it refuses (false). What the queue keeps
 *   per key besides its items (one number) is bounded by the same capacity: past it, the
 *   memory of keys with nothing queued is forgotten, which costs them nothing but the
 *   rest of a round's precedence.
 */
export class FairQueue<T> {
  readonly capacity: number;
  #items: Entry<T>[] = [];
  /** Per key, the round its next item gets, while that is past the round being served. */
  readonly #next = new Map<string, number>();
  #round = 0;
  #seq = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get size(): number {
    return this.#items.length;
  }

  /** Queues `item` for `key`; false (nothing queued) when `capacity` items wait already. */
  push(key: string, item: T): boolean {
    if (this.#items.length >= this.capacity) return false;
    const round = Math.max(this.#round, this.#next.get(key) ?? this.#round);
    if (this.#next.size >= this.capacity && !this.#next.has(key)) this.#forgetIdle();
    this.#next.set(key, round + 1);
    this.#items.push({ key, round, seq: this.#seq++, item });
    return true;
  }

  /** The next item by the rules above; undefined when none waits. */
  shift(): T | undefined {
    let best = -1;
    for (let i = 0; i < this.#items.length; i++) {
      const e = this.#items[i]!;
      const b = this.#items[best];
      if (b === undefined || e.round < b.round || (e.round === b.round && e.seq < b.seq)) best = i;
    }
    if (best < 0) return undefined;
    const [taken] = this.#items.splice(best, 1);
    if (taken!.round > this.#round) {
      this.#round = taken!.round;
      for (const [key, next] of this.#next) if (next <= this.#round) this.#next.delete(key);
    }
    return taken!.item;
  }

  /** Takes every item, in queue order (for failing them all at once). */
  drain(): T[] {
    const items = this.#items.map((e) => e.item);
    this.#items = [];
    this.#next.clear();
    return items;
  }

  #forgetIdle(): void {
    const queued = new Set(this.#items.map((e) => e.key));
    for (const key of this.#next.keys()) if (!queued.has(key)) this.#next.delete(key);
  }
}
