/** `protected-vm stack` config flags: secrets from the environment or a private file, never from argv. */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Command } from "commander";
import { UsageError } from "../../cli/program";
import { configFrom, register } from "../../cli/stackCommand";

/** The options of `protected-vm stack up ...a`, parsed by the real command definition. */
function args(...a: string[]) {
  const program = new Command("protected-vm").exitOverride();
  let parsed: Record<string, unknown> = {};
  register(program, { stdout: process.stdout, stderr: process.stderr, env: {}, exitCode: 0 } as never);
  const up = program.commands.find((c) => c.name() === "stack")!.commands.find((c) => c.name() === "up")!;
  up.action((opts: Record<string, unknown>) => void (parsed = opts));
  program.parse(["stack", "up", "--program", "p.js", ...a], { from: "user" });
  return parsed;
}

test("--secret-env and --secret-file give secret values; --config plain ones", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-secret-"));
  const file = path.join(dir, "key");
  fs.writeFileSync(file, "s3cr3t\n", { mode: 0o600 });
  const cfg = configFrom(args("--config", "zoneId=z1", "--secret-env", "apiKey=MY_KEY", "--secret-file", `secretKey=${file}`), { MY_KEY: "k3y" });
  expect(cfg).toEqual({ zoneId: { value: "z1", secret: false }, apiKey: { value: "k3y", secret: true }, secretKey: { value: "s3cr3t", secret: true } });
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--secret k=v is refused (exit 2) without echoing the value; unset env vars and readable files are refused", () => {
  const err = (() => {
    try {
      configFrom(args("--secret", "secretKey=hunter2"), {});
    } catch (e) {
      return e as UsageError;
    }
  })()!;
  expect(err).toBeInstanceOf(UsageError);
  expect(err.exitCode).toBe(2);
  expect(err.message).toMatch(/ps.*--secret-env.*--secret-file/);
  expect(err.message).not.toContain("hunter2");

  expect(() => configFrom(args("--secret-env", "apiKey=NOT_SET"), {})).toThrow(/NOT_SET is not set/);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pv-secret-"));
  const file = path.join(dir, "key");
  fs.writeFileSync(file, "s3cr3t", { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  expect(() => configFrom(args("--secret-file", `secretKey=${file}`), {})).toThrow(/mode 644 lets other users read it; chmod 600/);
  fs.rmSync(dir, { recursive: true, force: true });
});
