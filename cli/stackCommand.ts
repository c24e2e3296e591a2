/**
 * `protected-vm stack <up|preview|refresh|destroy> --program <module> --stack <name>`:
 * runs a program module (exporting `program`) as an inline Pulumi program against the local
 * file backend. Used by the README's main job, by CI and by the integration tests.
 */
import * as fs from "fs";
import * as path from "path";
import { ConfigMap } from "@pulumi/pulumi/automation";
import { openStack } from "../pulumi/automation/stack";
import { ParsedArgs, UsageError, boolFlag, flag, flagList } from "./args";

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

/**
 * Plain values come from `--config k=v`; secrets never from the command line (any user can read
 * a process's arguments with `ps`): `--secret-env k=ENV_VAR` reads the value from the
 * environment, `--secret-file k=PATH` from a file only its owner can read (one trailing newline
 * dropped). They reach Pulumi through stdin (pulumi/automation/stack.ts setSecretConfig).
 */
export function configFrom(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): ConfigMap {
  const cfg: ConfigMap = {};
  if (args.flags.has("secret")) {
    throw new UsageError("--secret k=v would put the secret in the process arguments, which any user can read with `ps`; use --secret-env k=ENV_VAR (value from the environment) or --secret-file k=PATH (a file with mode 0600)");
  }
  const pairs = (key: string) =>
    (args.flags.get(key) ?? []).map((kv) => {
      const i = kv.indexOf("=");
      if (i <= 0 || i === kv.length - 1) throw new UsageError(`--${key} takes key=${key === "config" ? "value" : key === "secret-env" ? "ENV_VAR" : "PATH"}, got ${key === "config" ? JSON.stringify(kv) : JSON.stringify(kv.slice(0, Math.max(i, 0)) || kv.slice(0, 20))}`);
      return [kv.slice(0, i), kv.slice(i + 1)] as const;
    });
  for (const [k, v] of pairs("config")) cfg[k] = { value: v, secret: false };
  for (const [k, name] of pairs("secret-env")) {
    const value = env[name];
    if (value === undefined || value === "") throw new UsageError(`--secret-env ${k}=${name}: environment variable ${name} is not set`);
    cfg[k] = { value, secret: true };
  }
  for (const [k, file] of pairs("secret-file")) {
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

export async function stackCommand(args: ParsedArgs): Promise<StackRunResult> {
  const op = args.positionals[1];
  const programPath = flag(args, "program");
  const stackName = flag(args, "stack") ?? "dev";
  if (!op || !["up", "preview", "refresh", "destroy", "outputs", "resources"].includes(op)) {
    throw new UsageError("usage: protected-vm stack <up|preview|refresh|destroy|outputs|resources> --program <module.js> [--stack NAME] [--project NAME] [--config k=v] [--secret-env k=ENV_VAR] [--secret-file k=PATH] [--policy-pack DIR]");
  }
  if (!programPath) throw new UsageError("--program <module.js> is required (a module exporting `program`)");
  const mod = require(path.resolve(programPath));
  const program = mod.program ?? mod.default;
  if (typeof program !== "function") throw new UsageError(`${programPath} exports no \`program\` function`);
  const projectName = flag(args, "project") ?? path.basename(path.dirname(path.resolve(programPath)));
  const stack = await openStack({ projectName, stackName, program, config: configFrom(args) });
  const policyPacks = flagList(args, "policy-pack").map((p) => path.resolve(p));
  const onOutput = boolFlag(args, "quiet") ? undefined : (s: string) => process.stderr.write(s);
  const result: StackRunResult = { operation: op, stack: stackName };
  if (op === "up") {
    const r = await stack.up({ onOutput, policyPacks });
    result.summary = brief(r.summary);
    result.outputs = Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.secret ? "[secret]" : v.value]));
  } else if (op === "preview") {
    const r = await stack.preview({ onOutput, policyPacks, diff: boolFlag(args, "diff") });
    result.changeSummary = r.changeSummary as Record<string, number>;
  } else if (op === "refresh") {
    // runProgram: the program runs too, so the stack outputs (currentHost, newestSnapshotId) are
    // computed again from the refreshed resources - a plain refresh updates resources only.
    const r = await stack.refresh({ onOutput, runProgram: true });
    result.summary = brief(r.summary);
    const outs = await stack.outputs();
    result.outputs = Object.fromEntries(Object.entries(outs).map(([k, v]) => [k, v.secret ? "[secret]" : v.value]));
  } else if (op === "destroy") {
    const r = await stack.destroy({ onOutput });
    result.summary = brief(r.summary);
  } else if (op === "resources") {
    // What the state records for each resource (secret values stay encrypted, shown as "[secret]").
    const deployment = await stack.exportStack();
    result.resources = (deployment.deployment.resources ?? []).map((r: any) => ({ urn: r.urn, type: r.type, id: r.id, outputs: redactSecrets(r.outputs ?? {}) }));
  } else {
    const outs = await stack.outputs();
    result.outputs = Object.fromEntries(Object.entries(outs).map(([k, v]) => [k, v.secret ? "[secret]" : v.value]));
  }
  return result;
}
