import { errorMessage } from "../core/index.js";
import { createDecoder, type DecodeResult, type Decoder } from "./decoders.js";
import { createFramer, type Framer } from "./framing.js";
import { type DeviceOptions, PortDevice } from "./port-device.js";
import { ProfileError } from "./profile.js";
import { sleep } from "./sleep.js";

/**
 * Idle framing ends a frame after `gap_ms` of silence, which only a clock can tell: the
 * framer is ticked twice per gap, so a frame ends at most half a gap late...
 */
const IDLE_TICKS_PER_GAP = 2;
/** ...but not more often than this, which a short gap would otherwise ask for. */
const MIN_IDLE_TICK_MS = 5;

/**
 * A device that sends by itself: its bytes are cut into frames by the profile's framing,
 * decoded by its decoder, and published as typed fields. A bad frame costs that frame
 * only: counted, logged once a minute per reason, and the next good frame is decoded.
 */
export class StreamingDevice extends PortDevice {
  readonly #framer: Framer;
  readonly #decode: Decoder;
  /** Line framings cut text: a command's answer is replied as text, others as hex. */
  readonly #textFrames: boolean;
  /** How often an idle framer is ticked; undefined for the framings that need no clock. */
  readonly #tickMs: number | undefined;

  constructor(options: DeviceOptions) {
    super(options, { badMessage: "bad serial data dropped", dataWhere: "serial.data" });
    const { profile } = options;
    const { spec } = profile;
    if (spec.kind !== "stream") {
      throw new ProfileError(profile.file, [
        `decoder.type: a streaming device cannot use ${JSON.stringify(profile.decoder.type)}`,
      ]);
    }
    try {
      // validateProfile built both once already: a throw here is a bug, reported as the
      // profile's problem rather than as a crash.
      const decode = createDecoder(spec.decoder);
      this.#decode = decode;
      const framing = spec.framing;
      this.#textFrames = framing.type === "line";
      this.#framer = createFramer(framing, {
        frame: (bytes) => {
          // The answer to the command on the line is its reply; it is telemetry as well
          // when the profile's fields decode from it, and never counted as bad data.
          const answered = this.commands.onFrame(bytes);
          this.#onFrame(decode(bytes), answered);
        },
        bad: (reason, bytes) => this.out.bad(reason, `${bytes} bytes`),
      });
      this.#tickMs =
        framing.type === "idle"
          ? Math.max(MIN_IDLE_TICK_MS, framing.gapMs / IDLE_TICKS_PER_GAP)
          : undefined;
    } catch (err) {
      throw new ProfileError(profile.file, [errorMessage(err)]);
    }
  }

  protected override onData(chunk: Buffer): void {
    this.#framer.push(chunk, this.clock.now());
  }

  /** A bug the bytes reached drops the partial frame, never the process. */
  protected override onDataFailed(): void {
    this.#framer.reset();
  }

  protected override onOpen(): void {
    this.#framer.reset();
  }

  protected override async run(signal: AbortSignal): Promise<void> {
    const tickMs = this.#tickMs;
    if (tickMs === undefined) return;
    while (await sleep(this.clock, tickMs, signal)) {
      this.guard.run(
        "serial.idle-tick",
        () => this.#framer.tick(this.clock.now()),
        () => this.#framer.reset(),
      );
    }
  }

  protected override answer(frame: Buffer): Record<string, unknown> {
    const body: Record<string, unknown> = this.#textFrames
      ? { text: frame.toString("utf8") }
      : { hex: frame.toString("hex") };
    const decoded = this.#decode(frame);
    if (decoded.ok) {
      const { values } = this.out.values(decoded.values);
      if (values !== undefined) body.values = values;
    }
    return body;
  }

  #onFrame(result: DecodeResult, answered: boolean): void {
    if (!result.ok) {
      if (!answered) this.out.bad(result.reason, result.detail);
      return;
    }
    if (answered) {
      this.out.publish(result.values, this.config.device, result.kind);
      return;
    }
    // A header row carries no values by design; anything else without a profile field
    // means the profile's field sources do not match what the decoder produced.
    const published = this.out.publish(result.values, this.config.device, result.kind);
    if (!published && result.kind !== "header") {
      this.out.bad("no_fields", "no profile field in the frame");
    }
  }
}
