import { LeafgateError } from "../core/index.js";

/** A device profile mistake: names the file, then each field path and what is wrong. */
export class ProfileError extends LeafgateError {
  readonly problems: readonly string[];

  constructor(file: string, problems: readonly string[]) {
    super(
      "LG_ERR_PROFILE_INVALID",
      `invalid device profile ${file}:\n${problems.map((p) => `  ${p}`).join("\n")}`,
    );
    this.problems = problems;
  }
}
