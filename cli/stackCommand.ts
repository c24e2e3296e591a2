/**
 * `protected-vm stack <up|preview|refresh|destroy|outputs|resources> --program <module> --stack <name>`:
 * runs a program module (exporting `program`) as an inline Pulumi program against the local
 * file backend. Used by the README's main job, by CI and by the integration tests.
 * Pulumi's own progress goes to stderr (unless --quiet); the summary, as JSON, to stdout.
 */
import * as fs from "fs";
import * as path from "path";
import { Command, Option } from "commander";
import { openStack, type ConfigMap } from "../pulumi/automation/stack";
import { EXIT } from "../core/errors";
import { CliContext, UsageError, collectList, collectRaw, runAction } from "./program";

/** The parts of an update summary a user reads: result and resource change counts. */
function brief(summary: { result?: string; resourceChanges?: Record<string, number> }) {
  return { result: summary.result, resourceChanges: summary.resourceChanges ?? {} };
}

export interface StackRunResult {
  operation: string;
  stack: string;
  summary?: unknown;
  changeSummary?: Record<string, number>;
  outputs?: Record<string, unknown>;
  resources?: { urn: string; type: string; id?: string; outputs: unknown }[];
}

// Pulumi's wire markers: a value {[SIG_KEY]: SECRET_SIG, ...} is a secret.
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

function redactSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(redactSecrets);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (o[SIG_KEY] === SECRET_SIG) return "[secret]";
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, redactSecrets(x)]));
  }
  return v;
}

/** The config options of a stack command, as commander parses them. */
export interface ConfigOptions {
  config?: string[];
  /** Refused: a secret value on the command line. */
  secret?: string[];
  secretEnv?: string[];
  secretFile?: string[];
}

/**
 * Plain values come from `--config k=v`; secrets never from the command line (any user can read
 * a process's arguments with `ps`): `--secret-env k=ENV_VAR` reads the value from the
 * environment, `--secret-file k=PATH` from a file only its owner can read (one trailing newline
 * dropped). They reach Pulumi through stdin (pulumi/automation/stack.ts setSecretConfig).
 */
export function configFrom(opts: ConfigOptions, env: NodeJS.ProcessEnv = process.env): ConfigMap {
  const cfg: ConfigMap = {};
  if (opts.secret?.length) {
    throw new UsageError("--secret k=v would put the secret in the process arguments, which any user can read with `ps`; use --secret-env k=ENV_VAR (value from the environment) or --secret-file k=PATH (a file with mode 0600)");
  }
  const pairs = (flag: "config" | "secret-env" | "secret-file", values: string[] | undefined) =>
    (values ?? []).map((kv) => {
      const i = kv.indexOf("=");
      if (i <= 0 || i === kv.length - 1) {
        // Never echo what could be a secret: only the key part of a malformed pair.
        const shown = flag === "config" ? JSON.stringify(kv) : JSON.stringify(kv.slice(0, Math.max(i, 0)) || kv.slice(0, 20));
        throw new UsageError(`--${flag} takes key=${flag === "config" ? "value" : flag === "secret-env" ? "ENV_VAR" : "PATH"}, got ${shown}`);
      }
      return [kv.slice(0, i), kv.slice(i + 1)] as const;
    });
  for (const [k, v] of pairs("config", opts.config)) cfg[k] = { value: v, secret: false };
  for (const [k, name] of pairs("secret-env", opts.secretEnv)) {
    const value = env[name];
    if (value === undefined || value === "") throw new UsageError(`--secret-env ${k}=${name}: environment variable ${name} is not set`);
    cfg[k] = { value, secret: true };
  }
  for (const [k, file] of pairs("secret-file", opts.secretFile)) {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      throw new UsageError(`--secret-file ${k}=${file}: ${(e as Error).message}`);
    }
    if (!st.isFile()) throw new UsageError(`--secret-file ${k}=${file}: not a regular file`);
    if (st.mode & 0o077) throw new UsageError(`--secret-file ${k}=${file}: mode ${(st.mode & 0o777).toString(8)} lets other users read it; chmod 600 ${file}`);
    cfg[k] = { value: fs.readFileSync(file, "utf8").replace(/\r?\n$/, ""), secret: true };
  }
  return cfg;
}

export type StackOperation = "up" | "preview" | "refresh" | "destroy" | "outputs" | "resources";

interface StackOptions extends ConfigOptions {
  program: string;
  stack: string;
  project?: string;
  policyPack?: string[];
  quiet?: boolean;
  diff?: boolean;
  json?: boolean;
}

const plainOutputs = (outs: Record<string, { value: unknown; secret: boolean }>) =>
  Object.fromEntries(Object.entries(outs).map(([k, v]) => [k, v.secret ? "[secret]" : v.value]));

export async function runStack(op: StackOperation, opts: StackOptions, stderr: CliContext["stderr"]): Promise<StackRunResult> {
  const mod = require(path.resolve(opts.program));
  const program = mod.program ?? mod.default;
  if (typeof program !== "function") throw new UsageError(`--program ${opts.program} exports no \`program\` function`);
  const projectName = opts.project ?? path.basename(path.dirname(path.resolve(opts.program)));
  const stack = await openStack({ projectName, stackName: opts.stack, program, config: configFrom(opts) });
  const policyPacks = (opts.policyPack ?? []).map((p) => path.resolve(p));
  const onOutput = opts.quiet ? undefined : (s: string) => void stderr.write(s);
  const result: StackRunResult = { operation: op, stack: opts.stack };
  if (op === "up") {
    const r = await stack.up({ onOutput, policyPacks });
    result.summary = brief(r.summary);
    result.outputs = plainOutputs(r.outputs);
  } else if (op === "preview") {
    const r = await stack.preview({ onOutput, policyPacks, diff: !!opts.diff });
    result.changeSummary = r.changeSummary as Record<string, number>;
  } else if (op === "refresh") {
    // runProgram: the program runs too, so the stack outputs (currentHost, newestSnapshotId) are
    // computed again from the refreshed resources - a plain refresh updates resources only.
    const r = await stack.refresh({ onOutput, runProgram: true });
    result.summary = brief(r.summary);
    result.outputs = plainOutputs(await stack.outputs());
  } else if (op === "destroy") {
    const r = await stack.destroy({ onOutput });
    result.summary = brief(r.summary);
  } else if (op === "resources") {
    // What the state records for each resource (secret values stay encrypted, shown as "[secret]").
    const deployment = await stack.exportStack();
    result.resources = (deployment.deployment.resources ?? []).map((r: any) => ({ urn: r.urn, type: r.type, id: r.id, outputs: redactSecrets(r.outputs ?? {}) }));
  } else {
    result.outputs = plainOutputs(await stack.outputs());
  }
  return result;
}

const OPERATIONS: Array<{ op: StackOperation; summary: string; policy?: boolean; diff?: boolean }> = [
  { op: "up", summary: "create or update the stack's resources", policy: true },
  { op: "preview", summary: "show what up would change (validation errors name the field)", policy: true, diff: true },
  { op: "refresh", summary: "read the real state of every resource into the stack" },
  { op: "destroy", summary: "delete the stack's resources" },
  { op: "outputs", summary: "print the stack's outputs (secrets as [secret])" },
  { op: "resources", summary: "print what the state records for each resource (secrets as [secret])" },
];

export function register(program: Command, ctx: CliContext): void {
  const stack = program
    .command("stack")
    .summary("run a program module as a Pulumi stack (local file backend)")
    .description("Run a program module (exporting `program`) as an inline Pulumi program against the local file backend.");
  for (const { op, summary, policy, diff } of OPERATIONS) {
    const sub = stack
      .command(op)
      .summary(summary)
      .description(`${summary}. The result is JSON on stdout; Pulumi's progress on stderr.`)
      .requiredOption("--program <module.js>", "compiled module exporting `program` (or a default export)")
      .option("--stack <name>", "stack name", "dev")
      .option("--project <name>", "project name (default: the module's directory name)")
      .option("--config <key=value>", "stack config value (repeatable)", collectRaw)
      .option("--secret-env <key=ENV_VAR>", "stack config value stored as a Pulumi secret, read from environment variable ENV_VAR (repeatable)", collectRaw)
      .option("--secret-file <key=PATH>", "stack config value stored as a Pulumi secret, read from a file of mode 0600 (repeatable)", collectRaw)
      // Accepted only to refuse it with the reason: a value here would be readable with `ps`.
      .addOption(new Option("--secret <key=value>").argParser(collectRaw).hideHelp())
      .option("--quiet", "do not stream Pulumi's progress to stderr")
      .option("--json", "print the result as one JSON line");
    if (policy) sub.option("--policy-pack <dir>", "run this policy pack (repeatable)", collectList);
    if (diff) sub.option("--diff", "show a detailed diff");
    sub.action(runAction(ctx, `stack ${op}`, async (opts: StackOptions) => ({ code: EXIT.ok, value: await runStack(op, opts, ctx.stderr) })));
  }
}
