/**
 * The errors every layer shares, each with the exit code the CLI gives it, so a refusal means the
 * same on every backend (0 done, 1 failed, 2 usage, 3 refused, 4 drill check failed).
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, refused: 3, checkFailed: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/**
 * An operation that was refused on purpose because doing it would be unsafe or impossible
 * (a second running copy, a host not confirmed down, no usable snapshot): nothing was changed.
 */
export class RefusedError extends Error {
  readonly exitCode: ExitCode = EXIT.refused;
  constructor(message: string) {
    super(message);
    this.name = "RefusedError";
  }
}

/** The exit code for any error: its own `exitCode` when it has one, else 1 (failed). */
export function exitCodeOf(e: unknown): number {
  const code = (e as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === "number" && Number.isInteger(code) ? code : EXIT.failed;
}
