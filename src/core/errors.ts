/**
 * Base of every error leafgate raises on purpose. `code` is stable (scripts and
 * docs/errors.md refer to it); `cause` carries the underlying error.
 */
export class LeafgateError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The message of `err` when it is an Error, else its string form. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
