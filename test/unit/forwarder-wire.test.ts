// What the forwarder puts on the wire and reads back, without nats.js' general paths: the
// Nats-Msg-Id header bytes built from a prefix (equal to nats.js' own encoding), and
// PubAcks read without JSON (as nats-server 2.9 writes them).
import { headers as natsHeaders } from "@nats-io/transport-node";
import { describe, expect, it } from "vitest";
import { MessageIdHeaders, storedAck } from "../../src/upstream/forwarder.js";

describe("MessageIdHeaders", () => {
  it("encodes what nats.js headers() encodes for Nats-Msg-Id alone, and reads like it", () => {
    for (const prefix of ["gw1-", "gw1.building.", "gw-ü.é."]) {
      const h = new MessageIdHeaders(prefix);
      for (const row of [1, 42, 9_007_199_254_740_991]) {
        const want = natsHeaders();
        want.set("Nats-Msg-Id", `${prefix}${row}`);
        const bytes = h.forRow(row).encode();
        expect(Buffer.from(bytes).toString()).toBe(want.toString());
        expect(h.get("Nats-Msg-Id")).toBe(`${prefix}${row}`);
        expect([...h]).toEqual([["Nats-Msg-Id", [`${prefix}${row}`]]]);
        // The bytes of an earlier row stay as they were (nats.js may not have sent them yet).
        expect(Buffer.from(h.forRow(row + 1).encode()).toString()).not.toBe(want.toString());
        expect(Buffer.from(bytes).toString()).toBe(want.toString());
      }
    }
  });
});

describe("storedAck", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  it("reads nats-server's PubAcks without JSON, and leaves the rest to JSON", () => {
    // As nats-server 2.9.10 writes them.
    expect(storedAck(bytes('{"stream":"T", "seq":1}'))).toBe(false);
    expect(storedAck(bytes('{"stream":"T", "seq":1,"duplicate": true}'))).toBe(true);
    expect(storedAck(bytes('{"stream":"T","seq":1,"domain":"hub","duplicate":true}'))).toBe(true);
    expect(
      storedAck(
        bytes(
          '{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 1"},"stream":"T","seq":0}',
        ),
      ),
    ).toBeUndefined();
    expect(storedAck(bytes(""))).toBeUndefined();
    expect(storedAck(bytes("{"))).toBeUndefined();
    // A view into a larger buffer, as nats.js hands it over.
    const big = bytes('xx{"stream":"T","seq":2}yy');
    expect(storedAck(big.subarray(2, big.length - 2))).toBe(false);
  });
});
