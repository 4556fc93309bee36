import { LeafgateError } from "./errors.js";
import { isValidPattern, isValidToken } from "./subject.js";

/** One subscription: what `insert` returns and `remove` takes. */
export interface SublistEntry<T> {
  readonly pattern: string;
  readonly value: T;
  readonly queue: string | undefined;
}

/** The members of one queue group that match a subject, and the group's name. */
export interface QueueGroupMatch<T> extends ReadonlyArray<T> {
  readonly queue: string;
}

/**
 * What matches a subject. `plain` holds every non-queue value once (by identity), however
 * many of its patterns match; `queues` holds one array per queue group, of which the caller
 * delivers to one member. Both are frozen: a cached result is shared between callers.
 */
export interface SublistMatch<T> {
  readonly plain: readonly T[];
  readonly queues: ReadonlyArray<QueueGroupMatch<T>>;
}

/**
 * Subjects whose results are kept, as nats-server's `slCacheMax`. A hit costs one Map
 * lookup and allocates nothing; a miss walks the trie and builds the result arrays.
 */
const MAX_CACHED_SUBJECTS = 1024;
/** Subjects evicted at once when the cache is full, as nats-server's `slCacheSweep`. */
const CACHE_SWEEP = 256;

const WHITESPACE = /\s/;

const EMPTY_MATCH: SublistMatch<never> = Object.freeze({
  plain: Object.freeze([]),
  queues: Object.freeze([]),
});

/** One token position of the trie. Fields are undefined rather than empty. */
interface TrieNode<T> {
  literals: Map<string, TrieNode<T>> | undefined;
  /** Child for a `*` token. */
  star: TrieNode<T> | undefined;
  /** Entries whose pattern has `>` at this position (one or more further tokens). */
  rest: Set<SublistEntry<T>> | undefined;
  /** Entries whose pattern ends at this node. */
  here: Set<SublistEntry<T>> | undefined;
}

function newNode<T>(): TrieNode<T> {
  return { literals: undefined, star: undefined, rest: undefined, here: undefined };
}

function isEmptyNode<T>(node: TrieNode<T>): boolean {
  return (
    node.literals === undefined &&
    node.star === undefined &&
    node.rest === undefined &&
    node.here === undefined
  );
}

/** Accumulates one match; sets give deduplication by identity. */
interface Collector<T> {
  plain: Set<T> | undefined;
  queues: Map<string, Set<T>> | undefined;
}

/**
 * Subscription trie, after nats-server's Sublist: one level per token with a literal map,
 * a `*` child and a `>` set, so a match walks the subject's tokens (and the `*` branches
 * present), never the list of subscriptions. Results are cached per subject; any insert or
 * remove clears the cache.
 *
 * Patterns and subjects come from clients and may have as many tokens as a packet can
 * carry, so no walk recurses: insert and remove loop down one path (remove keeps the path
 * to prune on the way back), and match keeps the `*` branches still to visit on an explicit
 * stack. Each trie node is visited at most once per match.
 */
export class Sublist<T> {
  readonly #root: TrieNode<T> = newNode();
  readonly #entries = new Set<SublistEntry<T>>();
  readonly #cache = new Map<string, SublistMatch<T>>();
  #nodes = 0;

  /** Number of entries inserted and not removed. */
  get size(): number {
    return this.#entries.size;
  }

  /** Trie nodes below the root; a removal prunes every node no other pattern needs. */
  get nodes(): number {
    return this.#nodes;
  }

  /**
   * Adds `value` under `pattern` (NATS wildcards allowed), in queue group `queue` if given.
   * Throws LeafgateError `LG_ERR_SUBJECT_INVALID` for an invalid pattern or queue name.
   */
  insert(pattern: string, value: T, queue?: string): SublistEntry<T> {
    if (!isValidPattern(pattern)) {
      throw new LeafgateError(
        "LG_ERR_SUBJECT_INVALID",
        `invalid subscription pattern "${pattern}"`,
      );
    }
    if (queue !== undefined && !isValidToken(queue)) {
      throw new LeafgateError(
        "LG_ERR_SUBJECT_INVALID",
        `invalid queue group "${queue}" for pattern "${pattern}": it must be a single token`,
      );
    }
    const entry: SublistEntry<T> = Object.freeze({ pattern, value, queue });
    const tokens = pattern.split(".");
    let node = this.#root;
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!;
      if (token === ">") {
        node.rest ??= new Set();
        node.rest.add(entry);
        return this.#added(entry);
      }
      if (token === "*") {
        if (node.star === undefined) {
          node.star = newNode();
          this.#nodes++;
        }
        node = node.star;
      } else {
        node.literals ??= new Map();
        const literals = node.literals;
        let child = literals.get(token);
        if (child === undefined) {
          child = newNode();
          literals.set(token, child);
          this.#nodes++;
        }
        node = child;
      }
    }
    node.here ??= new Set();
    node.here.add(entry);
    return this.#added(entry);
  }

  /** Removes an entry returned by `insert`; false if it was already removed or is foreign. */
  remove(entry: SublistEntry<T>): boolean {
    if (!this.#entries.delete(entry)) return false;
    this.#cache.clear();
    this.#nodes -= removeFrom(this.#root, entry.pattern.split("."), entry);
    return true;
  }

  /**
   * Every value whose pattern matches the literal `subject`. Throws LeafgateError
   * `LG_ERR_SUBJECT_INVALID` if `subject` is not a valid literal subject.
   */
  match(subject: string): SublistMatch<T> {
    const cached = this.#cache.get(subject);
    if (cached !== undefined) return cached;

    const tokens = subject.split(".");
    for (const token of tokens) {
      if (token.length === 0 || token === "*" || token === ">") throw invalidSubject(subject);
    }
    if (WHITESPACE.test(subject)) throw invalidSubject(subject);

    const found: Collector<T> = { plain: undefined, queues: undefined };
    if (this.#entries.size > 0) collect(this.#root, tokens, found);
    const result = freezeResult(found);

    if (this.#cache.size >= MAX_CACHED_SUBJECTS) {
      // Evict the oldest subjects (Map iteration follows insertion order) a batch at a
      // time: finding the first live key skips every slot deleted before it.
      let evict = CACHE_SWEEP;
      for (const oldest of this.#cache.keys()) {
        this.#cache.delete(oldest);
        if (--evict === 0) break;
      }
    }
    this.#cache.set(subject, result);
    return result;
  }

  #added(entry: SublistEntry<T>): SublistEntry<T> {
    this.#entries.add(entry);
    this.#cache.clear();
    return entry;
  }
}

/**
 * Adds every entry matching `tokens` to `found`. Depth first, `*` branch before literal,
 * with the literal branches still to visit on an explicit stack (no recursion: a subject
 * may have tens of thousands of tokens).
 */
function collect<T>(root: TrieNode<T>, tokens: readonly string[], found: Collector<T>): void {
  const pending: { node: TrieNode<T>; at: number }[] = [{ node: root, at: 0 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    let node: TrieNode<T> | undefined = next.node;
    let i = next.at;
    for (; i < tokens.length; i++) {
      if (node.rest !== undefined) addAll(node.rest, found);
      const literal: TrieNode<T> | undefined = node.literals?.get(tokens[i]!);
      if (node.star === undefined) {
        node = literal;
      } else {
        if (literal !== undefined) pending.push({ node: literal, at: i + 1 });
        node = node.star;
      }
      if (node === undefined) break;
    }
    if (node !== undefined && i === tokens.length && node.here !== undefined) {
      addAll(node.here, found);
    }
  }
}

function addAll<T>(entries: Set<SublistEntry<T>>, found: Collector<T>): void {
  for (const entry of entries) {
    if (entry.queue === undefined) {
      found.plain ??= new Set();
      found.plain.add(entry.value);
    } else {
      found.queues ??= new Map();
      const queues = found.queues;
      let members = queues.get(entry.queue);
      if (members === undefined) {
        members = new Set();
        queues.set(entry.queue, members);
      }
      members.add(entry.value);
    }
  }
}

function freezeResult<T>(found: Collector<T>): SublistMatch<T> {
  if (found.plain === undefined && found.queues === undefined) return EMPTY_MATCH;
  const plain = found.plain === undefined ? EMPTY_MATCH.plain : Object.freeze([...found.plain]);
  const queues: QueueGroupMatch<T>[] = [];
  if (found.queues !== undefined) {
    for (const [queue, members] of found.queues) {
      queues.push(Object.freeze(Object.assign([...members], { queue })));
    }
  }
  return Object.freeze({ plain, queues: Object.freeze(queues) });
}

/**
 * Removes `entry` from the trie and prunes the nodes left empty, from the deepest up;
 * returns how many were pruned. The path down is kept in an array, not on the call stack.
 */
function removeFrom<T>(
  root: TrieNode<T>,
  tokens: readonly string[],
  entry: SublistEntry<T>,
): number {
  const path: TrieNode<T>[] = [root];
  let node = root;
  let depth = 0;
  for (; depth < tokens.length; depth++) {
    const token = tokens[depth]!;
    if (token === ">") break;
    const child = token === "*" ? node.star : node.literals?.get(token);
    if (child === undefined) return 0;
    node = child;
    path.push(node);
  }
  if (depth < tokens.length) node.rest = deleteFrom(node.rest, entry);
  else node.here = deleteFrom(node.here, entry);
  // path[i] is the node reached by tokens[i - 1]; unlink each empty one from its parent.
  let pruned = 0;
  for (let i = path.length - 1; i > 0 && isEmptyNode(path[i]!); i--) {
    const parent = path[i - 1]!;
    const token = tokens[i - 1]!;
    if (token === "*") {
      parent.star = undefined;
    } else if (parent.literals !== undefined) {
      parent.literals.delete(token);
      if (parent.literals.size === 0) parent.literals = undefined;
    }
    pruned++;
  }
  return pruned;
}

function deleteFrom<T>(
  set: Set<SublistEntry<T>> | undefined,
  entry: SublistEntry<T>,
): Set<SublistEntry<T>> | undefined {
  if (set === undefined) return undefined;
  set.delete(entry);
  return set.size === 0 ? undefined : set;
}

function invalidSubject(subject: string): LeafgateError {
  return new LeafgateError("LG_ERR_SUBJECT_INVALID", `cannot match invalid subject "${subject}"`);
}
