/** Sockets counted from accept, by address and before CONNECT: see docs/mqtt.md. */
export type AdmissionRefusal = "max-pending" | "per-address";

/** One accepted socket's place. */
export interface Admission {
  /** CONNECT was accepted: the socket no longer counts as pending. */
  established(): void;
  /** The socket is gone (may be called more than once). */
  release(): void;
}

export interface AdmissionLimits {
  readonly maxPending: number;
  readonly maxPerAddress: number;
}

export interface AdmissionEvents {
  /** A socket refused at accept, or a pending one closed to make room. */
  refused(reason: AdmissionRefusal): void;
  /** The number of pending sockets changed. */
  pending(count: number): void;
}

interface AddressSockets {
  open: number;
  /** Oldest first. */
  readonly pending: Set<Place>;
}

interface Place extends Admission {
  state: "pending" | "established" | "released";
  readonly close: () => void;
}

export class Admissions {
  readonly #limits: AdmissionLimits;
  readonly #events: AdmissionEvents;
  readonly #addresses = new Map<string, AddressSockets>();
  #pending = 0;

  constructor(limits: AdmissionLimits, events: AdmissionEvents) {
    this.#limits = limits;
    this.#events = events;
  }

  get pendingCount(): number {
    return this.#pending;
  }

  /** Sockets held by `address` now. */
  openFrom(address: string): number {
    return this.#addresses.get(address)?.open ?? 0;
  }

  /**
   * A socket from `address` was accepted: its place, or undefined when it is refused
   * (the caller closes it). `close` closes the socket should its place be given away.
   */
  admit(address: string, close: () => void): Admission | undefined {
    const { maxPending, maxPerAddress } = this.#limits;
    const mine = this.#addresses.get(address);
    if (maxPerAddress > 0 && (mine?.open ?? 0) >= maxPerAddress) {
      this.#events.refused("per-address");
      return undefined;
    }
    if (maxPending > 0 && this.#pending >= maxPending) {
      const hog = this.#mostPending();
      // Only when it makes things fairer; an address never pushes out its own sockets.
      if (hog === undefined || hog.pending.size <= (mine?.pending.size ?? 0) + 1) {
        this.#events.refused("max-pending");
        return undefined;
      }
      const oldest = hog.pending.values().next().value as Place;
      this.#leavePending(hog, oldest);
      this.#events.refused("max-pending");
      oldest.close();
    }
    let sockets = mine;
    if (sockets === undefined) {
      sockets = { open: 0, pending: new Set() };
      this.#addresses.set(address, sockets);
    }
    const entry = sockets;
    entry.open++;
    const place: Place = {
      state: "pending",
      close,
      established: () => {
        if (place.state !== "pending") return;
        this.#leavePending(entry, place);
        place.state = "established";
      },
      release: () => {
        if (place.state === "released") return;
        if (place.state === "pending") this.#leavePending(entry, place);
        place.state = "released";
        entry.open--;
        if (entry.open === 0) this.#addresses.delete(address);
      },
    };
    entry.pending.add(place);
    this.#pending++;
    this.#events.pending(this.#pending);
    return place;
  }

  #leavePending(sockets: AddressSockets, place: Place): void {
    if (!sockets.pending.delete(place)) return;
    this.#pending--;
    this.#events.pending(this.#pending);
  }

  #mostPending(): AddressSockets | undefined {
    let most: AddressSockets | undefined;
    for (const sockets of this.#addresses.values()) {
      if (most === undefined || sockets.pending.size > most.pending.size) most = sockets;
    }
    return most;
  }
}

/** The address part of `host:port` (`::ffff:` of IPv4-mapped addresses taken off). */
export function sourceAddress(remote: string): string {
  const at = remote.lastIndexOf(":");
  const host = at > 0 ? remote.slice(0, at) : remote;
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}
