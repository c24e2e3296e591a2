/** Runs the compiled CLI (dist/cli/main.js) in its own process, as a user or CI would. */
import { execFile } from "child_process";
import * as path from "path";
import { PACKAGE_ROOT } from "../../lib/packageRoot";

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is JSON. */
  json?: any;
}

export function runCli(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const main = path.join(PACKAGE_ROOT, "dist", "cli", "main.js");
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [main, ...args],
      { cwd: PACKAGE_ROOT, env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as any).code === "number" ? (err as any).code : 1) : 0;
        let json: any;
        try {
          json = JSON.parse(String(stdout));
        } catch {
          json = undefined;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr), json });
      },
    );
  });
}

/** A unique, valid stack/VM name suffix for one test run. */
export function runId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
}
