/**
 * What every command file shares: the context a command runs in (streams, environment, how to
 * build a backend - tests swap these), the usage error, option parsers, and `runAction`, which
 * turns a command's result or error into output and an exit code the same way for every command.
 */
import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { Backend } from "../hypervisor/backend";
import { createBackend, BackendConnection } from "../hypervisor/createBackend";
import { EXIT, exitCodeOf } from "../core/errors";

export interface OutputStream {
  /** Calls cb once the chunk is handed on (process.stdout/stderr do). */
  write(chunk: string, cb?: () => void): unknown;
  isTTY?: boolean;
}

export interface CliContext {
  stdout: OutputStream;
  stderr: OutputStream;
  env: NodeJS.ProcessEnv;
  /** Builds the backend a command talks to; tests pass a fake. */
  createBackend(conn: BackendConnection): Backend;
  /** The exit code of the command that ran (set by runAction). */
  exitCode: number;
}

export function processContext(): CliContext {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env, createBackend, exitCode: EXIT.ok };
}

/** Bad input found after parsing (a flag combination, a missing environment variable): exit 2. */
export class UsageError extends Error {
  readonly exitCode = EXIT.usage;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** commander's own errors: --help and --version are 0, everything else it rejects is usage (2). */
export function exitCodeOfCommanderError(e: CommanderError): number {
  return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
}

// ------------------------------------------------------------------ option parsers

/** Repeatable, comma-separated list: `--hosts a,b --hosts c` -> [a, b, c]. */
export function collectList(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

/** Repeatable option kept as given: `--config a=1 --config b=2`. */
export function collectRaw(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A number > 0 (commander names the option in its error). */
export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("takes a number > 0.");
  return n;
}

/** An integer >= 0. */
export function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("takes a whole number >= 0.");
  return n;
}

// ------------------------------------------------------------------ running a command

/** Write and wait until the chunk is handed to the OS (before process.exit). */
export function writeOut(stream: OutputStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    stream.write(text, () => resolve());
  });
}

/** What a command's action returns: the exit code, and optionally what to print on stdout. */
export interface CommandResult {
  code: number;
  /** Printed on stdout as given (a text report). */
  text?: string;
  /** Printed on stdout as JSON: one line with --json, indented otherwise. */
  value?: unknown;
}

/**
 * Wraps a command's action: runs it, prints its result, and maps any error to its exit code
 * (core/errors: refused 3; UsageError 2; anything else 1). With --json, a failure is also one JSON
 * object on stdout so a pipeline always gets JSON. The message goes to stderr; never a stack trace
 * for expected errors.
 */
export function runAction<A extends unknown[]>(ctx: CliContext, name: string, fn: (...args: A) => Promise<CommandResult>) {
  return async (...args: A): Promise<void> => {
    const cmd = args[args.length - 1] as Command;
    const json = Boolean(cmd.opts().json);
    try {
      const r = await fn(...args);
      if (r.text !== undefined) await writeOut(ctx.stdout, r.text);
      if (r.value !== undefined) await writeOut(ctx.stdout, (json ? JSON.stringify(r.value) : JSON.stringify(r.value, null, 2)) + "\n");
      ctx.exitCode = r.code;
    } catch (e) {
      if (e instanceof CommanderError) throw e;
      const err = e as Error;
      const code = exitCodeOf(e);
      const kind = code === EXIT.refused ? "refused" : code === EXIT.usage ? "usage" : "failed";
      // An error may carry what was done before it failed (recover: every attempt), for --json readers.
      const report = (err as { report?: unknown }).report;
      if (json) await writeOut(ctx.stdout, JSON.stringify({ ok: false, refused: code === EXIT.refused, error: err.message, exitCode: code, ...(report ? { report } : {}) }) + "\n");
      await writeOut(ctx.stderr, `protected-vm ${name}: ${kind}: ${err.message}\n`);
      if (code === EXIT.usage) await writeOut(ctx.stderr, `(see: protected-vm ${name} --help)\n`);
      if (code === EXIT.failed && ctx.env.PROTECTED_VM_DEBUG && err.stack) await writeOut(ctx.stderr, err.stack + "\n");
      ctx.exitCode = code;
    }
  };
}
