import type { PauseReason, ProtocolVersion } from "./connection-state.js";
import type { MqttBase } from "./context.js";
import { MqttProtocolError } from "./errors.js";
import type { Transport } from "./transport.js";

/**
 * From `mqtt.max_outbound_bytes / SOFT_MARK_DIVISOR` unsent on, the client is behind:
 * reading from it pauses (its PINGREQs and PUBLISHes cannot make us write more: TCP pushes
 * back on it) and deliveries wait. The rest of the cap is room for what is already owed
 * when it falls behind: one delivery (config keeps max_packet_size at most half the cap)
 * and the answers to one read of the socket.
 */
const SOFT_MARK_DIVISOR = 8;
/** PUBREC with a reason code from this on ends a QoS 2 exchange (section 4.3.3). */
export const PUBREC_ERROR = 0x80;

/** Consecutive commits of one connection that share a group commit's promise. */
interface CommitGroup {
  readonly commit: Promise<void>;
  readonly committed: (() => void)[];
  readonly failed: ((err: unknown) => void)[];
}

/** What flow control reads of its connection. */
export interface FlowHost {
  readonly transport: Transport;
  /** Reading is paused for output, and resumed, only while connected. */
  readonly connected: boolean;
  /** The client's unsent bytes went past `mqtt.max_outbound_bytes`: it is cut. */
  overCap(): void;
}

/**
 * One connection's flow control, both ways: why reading is paused (one set of reasons,
 * resumed when none is left), the bytes the client has not taken, the durable commits
 * it waits on, and its unanswered QoS 1/2 PUBLISHes (MQTT 5 Receive Maximum, section 4.9).
 */
export class Flow {
  readonly #ctx: MqttBase;
  readonly #host: FlowHost;
  readonly #cut: () => void;
  readonly #pausedFor = new Set<PauseReason>();
  readonly #softMarkBytes: number;
  /** Bytes of deliveries decided on but written only after a commit (see `reserve`). */
  #reservedBytes = 0;
  #pendingCommits = 0;
  /** The group the next commit joins if it shares its promise (see trackCommit). */
  #lastGroup: CommitGroup | undefined;
  #idleWaiters: (() => void)[] = [];
  /** Inbound QoS 1/2 packet ids not yet answered with PUBACK, PUBCOMP or an error PUBREC. */
  readonly #inboundUnanswered = new Set<number>();

  constructor(ctx: MqttBase, host: FlowHost, cut: () => void) {
    this.#ctx = ctx;
    this.#host = host;
    this.#cut = cut;
    this.#softMarkBytes = Math.floor(ctx.options.maxOutboundBytes / SOFT_MARK_DIVISOR);
  }

  // -- reading -----------------------------------------------------------------------

  pausedFor(reason: PauseReason): boolean {
    return this.#pausedFor.has(reason);
  }

  pauseFor(reason: PauseReason): void {
    if (this.#pausedFor.has(reason)) return;
    this.#pausedFor.add(reason);
    if (this.#pausedFor.size === 1) this.#host.transport.pause();
  }

  /** Drops a reason; reading resumes when none is left (and the client is connected). */
  resumeFor(reason: PauseReason): void {
    if (!this.#pausedFor.delete(reason)) return;
    this.#resumeIfFree();
  }

  /** Drops a reason without resuming yet: the caller resumes after its own work. */
  clear(reason: PauseReason): boolean {
    return this.#pausedFor.delete(reason);
  }

  #resumeIfFree(): void {
    if (this.#host.connected && this.#pausedFor.size === 0) this.#host.transport.resume();
  }

  resumeIfFree(): void {
    this.#resumeIfFree();
  }

  // -- writing -----------------------------------------------------------------------

  /**
   * Every write goes through here. A client that is behind stops being read; one whose
   * unsent bytes still grow past `mqtt.max_outbound_bytes` is cut.
   */
  write(bytes: Uint8Array): void {
    const { transport } = this.#host;
    transport.write(bytes);
    const unsent = transport.writableLength;
    if (unsent < this.#softMarkBytes) return;
    if (unsent > this.#ctx.options.maxOutboundBytes) {
      this.#host.overCap();
      return;
    }
    if (this.#host.connected) this.pauseFor("output");
  }

  /** The peer took every queued byte: read again if it is no longer behind. */
  drained(): void {
    if (this.#pausedFor.has("output") && !this.behind()) this.resumeFor("output");
  }

  /** True while the client has (or will have, after pending commits) a soft mark unsent. */
  behind(): boolean {
    return this.#host.transport.writableLength + this.#reservedBytes >= this.#softMarkBytes;
  }

  /**
   * A delivery of about `bytes` will be written once the session store commits: counted as
   * unsent from now, so that one commit cannot release a whole window past the soft mark.
   */
  reserve(bytes: number): void {
    this.#reservedBytes += bytes;
  }

  /** The reserved delivery is being written now (or dropped). */
  release(bytes: number): void {
    this.#reservedBytes -= bytes;
  }

  /**
   * A PUBLISH that would alone take up the room above the soft mark is never written: it
   * would cut the client. MQTT ones cannot be that large (max_packet_size is at most half
   * of max_outbound_bytes); a message from the hub or a serial device could.
   */
  fits(bytes: Uint8Array): boolean {
    return bytes.length <= this.#ctx.options.maxOutboundBytes - 2 * this.#softMarkBytes;
  }

  // -- inbound QoS 1/2 ---------------------------------------------------------------

  /**
   * Tracks a durable commit the client waits on; pauses reading while too many are
   * pending so a fast publisher cannot outrun the disk. The messages of one group commit
   * share its promise: consecutive ones are tracked as one group, with one reaction to the
   * promise and their callbacks run in the order they came (so acks keep their order, and
   * each still runs only after its commit).
   */
  trackCommit(
    commit: Promise<void>,
    onCommitted: () => void,
    onFailed: (err: unknown) => void,
  ): void {
    const { maxPendingCommits } = this.#ctx.options;
    this.#pendingCommits++;
    if (this.#pendingCommits >= maxPendingCommits) this.pauseFor("commits");
    const last = this.#lastGroup;
    if (last !== undefined && last.commit === commit) {
      last.committed.push(onCommitted);
      last.failed.push(onFailed);
      return;
    }
    const group: CommitGroup = { commit, committed: [onCommitted], failed: [onFailed] };
    this.#lastGroup = group;
    commit.then(
      () => this.#settleGroup(group, group.committed),
      (err: unknown) =>
        this.#settleGroup(
          group,
          group.failed.map((onFailed) => () => onFailed(err)),
        ),
    );
  }

  /** Runs each callback of a settled group under the guard, then counts them settled. */
  #settleGroup(group: CommitGroup, callbacks: readonly (() => void)[]): void {
    if (this.#lastGroup === group) this.#lastGroup = undefined;
    const { maxPendingCommits } = this.#ctx.options;
    for (const callback of callbacks) {
      // The ack is written before the settle may end a closing connection's transport;
      // one failing callback cuts the connection, and the rest still settle.
      this.#ctx.guard.run("mqtt.commit", callback, this.#cut);
      this.#pendingCommits--;
    }
    // Half the bound: reading does not flap on and off at every commit.
    if (this.#pendingCommits <= maxPendingCommits / 2) this.resumeFor("commits");
    if (this.#pendingCommits === 0) this.wakeIdle();
  }

  /** Runs `fn` once no commit is pending (at once if none is, or if `now`). */
  whenIdle(fn: () => void, now = false): void {
    if (now || this.#pendingCommits === 0) fn();
    else this.#idleWaiters.push(fn);
  }

  wakeIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /**
   * A QoS 1/2 PUBLISH from the client: one more it has unanswered. An MQTT 5 client past
   * our Receive Maximum breaks [MQTT-3.3.4-7] and is told 0x93. A resent PUBLISH with an
   * id still open counts once.
   */
  inboundPublish(version: ProtocolVersion, packetId: number): void {
    this.#inboundUnanswered.add(packetId);
    const max = this.#ctx.options.receiveMaximum;
    if (version === 5 && this.#inboundUnanswered.size > max) {
      throw new MqttProtocolError(
        "receiveMaxExceeded",
        `${this.#inboundUnanswered.size} unanswered, Receive Maximum ${max}`,
      );
    }
  }

  /**
   * An answer to a QoS 1/2 PUBLISH of the client. PUBACK, PUBCOMP and a PUBREC with an
   * error end its exchange, and give the client its quota back (section 4.9).
   */
  inboundAnswered(
    kind: "puback" | "pubrec" | "pubcomp",
    packetId: number,
    reasonCode: number,
  ): void {
    if (kind !== "pubrec" || reasonCode >= PUBREC_ERROR) this.#inboundUnanswered.delete(packetId);
  }
}
