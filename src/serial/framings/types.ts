/** Receives what a framer finds in the byte stream. Must not call back into the framer. */
export interface FrameSink {
  /** One complete frame (its content as the framing defines it; never empty). */
  frame(bytes: Buffer): void;
  /** `bytes` bytes of the stream were skipped or dropped, for `reason`. */
  bad(reason: BadFrameReason, bytes: number): void;
}

/**
 * Why bytes were dropped; the label of the serial bad-frame counter.
 * - `garbage`: bytes outside any frame (before a header, before the first SLIP END).
 * - `too_long`: a frame longer than the framing's `maxLength`.
 * - `bad_checksum`: a frame whose checksum does not match.
 * - `truncated`: a length field that declares a frame shorter than its own fixed parts.
 * - `bad_escape`: a SLIP escape byte followed by something other than ESC_END / ESC_ESC.
 */
export type BadFrameReason = "garbage" | "too_long" | "bad_checksum" | "truncated" | "bad_escape";

/** A serial byte stream → frames state machine. Pure: no timers, no I/O. */
export interface Framer {
  push(chunk: Uint8Array, nowMs: number): void;
  /** Inter-byte-timeout framings: emit/close a pending frame when idle long enough; others: no-op. */
  tick(nowMs: number): void;
  /** Drops partial state (port reopened). Counts nothing. */
  reset(): void;
}

export type ChecksumType = "sum16" | "sum8" | "xor8" | "crc16_modbus";

export type ChecksumSpec = {
  readonly type: ChecksumType;
  /** Bytes covered: from frame start to the checksum; the checksum is the frame's last bytes. */
  readonly endian: "big" | "little"; // how a 16-bit checksum is stored
};

export type LineFramingSpec = {
  readonly type: "line";
  /** Default "\n"; may be several bytes ("\r\n"); UTF-8 encoded. */
  readonly delimiter: string;
  /** Default 4096; longest line, counted after the trailing CR is trimmed. */
  readonly maxLength: number;
  /** Default true: strip one trailing \r. */
  readonly trimCR: boolean;
};

export type FixedFramingSpec = { readonly type: "fixed"; readonly length: number };

export type LengthPrefixedFramingSpec = {
  readonly type: "length_prefixed";
  readonly lengthBytes: 1 | 2 | 4;
  readonly endian: "big" | "little";
  /** The length value counts the prefix itself too. */
  readonly includesPrefix: boolean;
  /** Longest payload. */
  readonly maxLength: number;
};

export type HeaderFramingSpec = {
  readonly type: "header";
  /** e.g. [0x42, 0x4d] */
  readonly header: readonly number[];
  /** Where the length field starts; at or after the end of the header. */
  readonly lengthOffset: number;
  readonly lengthBytes: 1 | 2;
  readonly endian: "big" | "little";
  /** Total frame bytes = lengthOffset + lengthBytes + value + lengthAdjust. */
  readonly lengthAdjust: number;
  readonly checksum: ChecksumSpec | null;
  /** Longest whole frame, header and checksum included. */
  readonly maxLength: number;
};

/** RFC 1055: END 0xC0, ESC 0xDB, ESC_END 0xDC, ESC_ESC 0xDD. `maxLength` bounds the decoded frame. */
export type SlipFramingSpec = { readonly type: "slip"; readonly maxLength: number };

/** A frame ends after `gapMs` of silence. */
export type IdleFramingSpec = {
  readonly type: "idle";
  readonly gapMs: number;
  readonly maxLength: number;
};

export type FramingSpec =
  | LineFramingSpec
  | FixedFramingSpec
  | LengthPrefixedFramingSpec
  | HeaderFramingSpec
  | SlipFramingSpec
  | IdleFramingSpec;
