/**
 * The package as a user gets it: `npm pack` this checkout, install the tarball into a fresh
 * project outside the checkout (so nothing resolves through our own node_modules), compile a small
 * TypeScript program that imports "protected-vm" by name against the installed declaration files,
 * and run it under Pulumi mocks.
 *
 * Needs the npm registry or a warm npm cache (`--prefer-offline`) for the package's dependencies.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..", "..");
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
const NPM_QUIET = ["--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"];

let tmp = "";
let app = "";
let packed: { filename: string; files: { path: string }[] };

function run(cmd: string, args: string[], cwd: string): string {
  try {
    return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${err.stdout ?? ""}\n${err.stderr ?? ""}\n${err.message}`);
  }
}

/** The user's program: everything it learns is printed as one JSON line. */
const USER_PROGRAM = `
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { ProtectedVM, recover, runDrill, createBackend, Scheduler, policyPackPath, PolicyValidationError, RecoveryRefused, RefusedError, exitCodeOf } from "protected-vm";
import type { ProtectedVMArgs, SnapshotPolicy } from "protected-vm";

const registered: { type: string; name: string; inputs: Record<string, unknown> }[] = [];
pulumi.runtime.setMocks(
  {
    newResource(args) {
      registered.push({ type: args.type, name: args.name, inputs: args.inputs });
      const state: Record<string, unknown> = { ...args.inputs };
      if (args.type.endsWith(":Domain")) Object.assign(state, { currentHost: args.inputs.host, state: "running", vmId: "uuid-1" });
      return { id: args.name + "-id", state };
    },
    call: () => ({}),
  },
  "user-project",
  "dev",
  false,
);

function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

const args: ProtectedVMArgs = {
  vmName: "web-1",
  memoryMiB: 256,
  disk: { sizeMiB: 32, pool: "vms" },
  primaryHost: "qemu:///system",
  recoveryHosts: ["qemu+ssh://kvm2.example/system"],
  snapshotPolicy: { repository: "/mnt/pv-snapshots", keepLast: 4 },
};

async function main() {
  const vm = new ProtectedVM("web", args);
  const policy: SnapshotPolicy = await valueOf(vm.policy);
  const vmName: string = await valueOf(vm.vmName);
  const currentHost: string = await valueOf(vm.currentHost);
  // Let the mocks see every child before looking at them.
  await valueOf(vm.retention.urn);
  const domain = registered.find((r) => r.type.endsWith(":Domain"));
  const serializedProvider = domain ? String(await Promise.resolve(domain.inputs.__provider)) : "";

  let badPolicy = "";
  let badPolicyIsValidationError = false;
  try {
    new ProtectedVM("bad", { ...args, vmName: "bad", snapshotPolicy: { repository: "/mnt/pv-snapshots", keepLast: 0 } });
  } catch (e) {
    badPolicy = (e as Error).message;
    badPolicyIsValidationError = e instanceof PolicyValidationError;
  }

  // Module paths a dynamic provider records when protected-vm is installed (no extension), the
  // same with ".js", and the legacy path saved stacks of 0.1 recorded.
  const current = require("protected-vm/dist/pulumi/providers/domainImpl");
  const withExt = require("protected-vm/dist/pulumi/providers/domainImpl.js");
  const legacy = require("protected-vm/dist/provider/dynamic/domainImpl");

  console.log(JSON.stringify({
    vmName,
    currentHost,
    policy,
    types: registered.map((r) => r.type),
    serializedProvider,
    badPolicy,
    badPolicyIsValidationError,
    exported: { recover: typeof recover, runDrill: typeof runDrill, createBackend: typeof createBackend, Scheduler: typeof Scheduler },
    refusal: (() => { const e = new RecoveryRefused("no snapshot"); return { isRefusedError: e instanceof RefusedError, exitCode: exitCodeOf(e) }; })(),
    policyPackPath,
    policyPackExists: fs.existsSync(policyPackPath),
    policyPackExecutable: (() => { try { fs.accessSync(policyPackPath, fs.constants.X_OK); return true; } catch { return false; } })(),
    policyPackMain: require.resolve(path.dirname(policyPackPath)),
    providerModules: {
      currentRead: typeof current.read,
      sameWithExtension: withExt.read === current.read,
      legacySame: legacy.read === current.read && legacy.create === current.create,
    },
  }));
}
main().catch((e) => { console.error(e); process.exit(1); });
`;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pv-package-"));
  // `npm pack` runs prepack (the build) and writes only the tarball into tmp.
  const out = run("npm", ["pack", "--json", "--pack-destination", tmp, "--loglevel=error"], ROOT);
  packed = JSON.parse(out.slice(out.indexOf("[")))[0];
  app = path.join(tmp, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "pv-user", version: "1.0.0", private: true }, null, 2));
  run("npm", ["install", path.join(tmp, packed.filename), "@types/node@20", ...NPM_QUIET], app);
}, 600000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test("the tarball holds the build, the declarations and the policy pack, and no tests or caches", () => {
  const files = packed.files.map((f) => f.path);
  for (const f of [
    "package.json",
    "README.md",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/cli/main.js",
    "dist/pulumi/providers/domainImpl.js",
    "dist/provider/dynamic/domainImpl.js",
    "dist/pulumi/policy/pack/index.js",
    "pulumi/policy/pack/PulumiPolicy.yaml",
    "pulumi/policy/pack/package.json",
    "pulumi/policy/pack/protected-vm-policy",
  ])
    expect(files).toContain(f);
  // Only the layers' compiled code, the policy pack and the Pulumi bootstrap: no tests, caches,
  // lab, bench, examples, source maps or stale build output of an earlier layout.
  const shipped = /^(README\.md|package\.json|dist\/index\.(js|d\.ts)|dist\/(core|lib|hypervisor|repository|ops|pulumi|cli|provider)\/.*\.(js|d\.ts)|pulumi\/policy\/pack\/(PulumiPolicy\.yaml|package\.json|protected-vm-policy)|scripts\/(bootstrap-pulumi\.sh|pulumi-version|pulumi-build\/.*))$/;
  expect(files.filter((f) => !shipped.test(f))).toEqual([]);
  // TypeScript sources stay in the repository; declarations ship.
  expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
});

test("a user's TypeScript program imports protected-vm by name, compiles strictly and runs under Pulumi mocks", () => {
  fs.writeFileSync(path.join(app, "index.ts"), USER_PROGRAM);
  fs.writeFileSync(
    path.join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        // node16 resolution reads the package's "exports" map and its "types" conditions.
        module: "node16",
        moduleResolution: "node16",
        strict: true,
        // Our own declaration files are checked too (only the dependencies' are skipped).
        skipLibCheck: false,
        types: ["node"],
        outDir: "out",
      },
      files: ["index.ts"],
    }),
  );
  run("node", [TSC, "-p", "tsconfig.json"], app);

  const result = JSON.parse(run("node", ["out/index.js"], app).trim().split("\n").pop()!);
  expect(result.vmName).toBe("web-1");
  expect(result.currentHost).toBe("qemu:///system");
  // Defaults applied to what the user left out.
  expect(result.policy).toEqual({
    repository: "/mnt/pv-snapshots",
    keepLast: 4,
    minIntervalSeconds: 30,
    maxIntervalSeconds: 300,
    loadAdaptive: true,
    cpuIdlePercent: 20,
    cpuBusyPercent: 70,
    includeMemory: true,
    onDestroy: "keep",
    liveSnapshot: "auto",
  });
  expect(result.types).toEqual(
    expect.arrayContaining(["protected-vm:index:ProtectedVM", "pulumi-nodejs:dynamic/protected-vm:Domain", "pulumi-nodejs:dynamic/protected-vm:Retention"]),
  );
  // Installed, the state records the module by package name, not by an absolute path of this machine.
  expect(result.serializedProvider).toContain("protected-vm/dist/pulumi/providers/domainImpl");
  expect(result.serializedProvider).not.toContain(tmp);

  expect(result.badPolicyIsValidationError).toBe(true);
  expect(result.badPolicy).toContain("snapshotPolicy.keepLast:");

  expect(result.exported).toEqual({ recover: "function", runDrill: "function", createBackend: "function", Scheduler: "function" });
  // A refused recovery is the shared refusal error, exit code 3 as the README promises.
  expect(result.refusal).toEqual({ isRefusedError: true, exitCode: 3 });
  expect(result.policyPackPath).toBe(path.join(fs.realpathSync(app), "node_modules", "protected-vm", "pulumi", "policy", "pack", "protected-vm-policy"));
  expect(result.policyPackExists).toBe(true);
  expect(result.policyPackExecutable).toBe(true);
  // The pack's package.json points at its compiled code inside the installed dist/.
  expect(result.policyPackMain).toBe(path.join(fs.realpathSync(app), "node_modules", "protected-vm", "dist", "pulumi", "policy", "pack", "index.js"));
  expect(result.providerModules).toEqual({ currentRead: "function", sameWithExtension: true, legacySame: true });
});

test("the protected-vm command is installed and prints its usage", () => {
  const bin = path.join(app, "node_modules", ".bin", "protected-vm");
  expect(fs.realpathSync(bin)).toBe(path.join(fs.realpathSync(app), "node_modules", "protected-vm", "dist", "cli", "main.js"));
  // Usage goes to stdout (--help, exit 0) or stderr (usage error, exit 2) depending on the CLI version.
  const r = spawnSync(bin, ["--help"], { cwd: app, encoding: "utf8" });
  expect([0, 2]).toContain(r.status);
  for (const command of ["recover", "drill", "scheduler", "stack"]) expect(r.stdout + r.stderr).toContain(command);
});
