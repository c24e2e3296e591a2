/**
 * A stack saved before the layout moved (protected-vm 0.1, commit d4aed27) still refreshes and
 * destroys. Its state records each dynamic provider as a closure that requires
 * <checkout>/dist/provider/dynamic/<x>Impl.js; those modules are now re-export shims of
 * pulumi/providers/<x>Impl.
 *
 * The fixture (test/fixtures/pre-move-stack) is the `pulumi stack export` of the example stack
 * (one ProtectedVM on lab host a, baseline snapshot on) made with the pre-move checkout, with the
 * checkout root, lab host URIs, repository and guest paths replaced by placeholders, plus the
 * stack's config file (its encryption salt decrypts the secrets in the state with the lab
 * passphrase). Here the placeholders become this checkout and this lab, the VM is defined on host
 * a, and the real pulumi CLI imports, refreshes and destroys the stack.
 */
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ensureLab, LabState } from "../../lab/lab";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { PACKAGE_ROOT, pulumiEnv } from "../../pulumi/automation/pulumiEnv";
import { runId } from "../support/cli";
import type { VmSpec } from "../../core/model";

const FIXTURE = path.join(PACKAGE_ROOT, "test", "fixtures", "pre-move-stack");
// Fixed by the fixture: the stack and project names are part of every URN in it.
const STACK = "pre-move";
const PROJECT = "protected-vm-example";
const VM = "pv-premove";
const LEGACY_MODULES = ["domainImpl", "snapshotImpl", "retentionImpl"].map((m) => path.join(PACKAGE_ROOT, "dist", "provider", "dynamic", `${m}.js`));

interface StateResource {
  type: string;
  urn: string;
  id?: string;
  inputs?: Record<string, any>;
  outputs?: Record<string, any>;
}

let lab: LabState;
let backend: LibvirtBackend;
let scratch = "";
let workDir = "";
let env: Record<string, string> = {};
let binDir = "";
let definedVmId = "";

function fill(text: string): string {
  const values: Record<string, string> = {
    "@@LAB_HOST_A@@": lab.hosts.a.uri,
    "@@LAB_HOST_B@@": lab.hosts.b.uri,
    "@@LAB_REPOSITORY@@": lab.repository,
    "@@LAB_GUEST_KERNEL@@": lab.guest.kernel,
    "@@LAB_GUEST_INITRD@@": lab.guest.initrd,
    "@@CHECKOUT_ROOT@@": PACKAGE_ROOT,
  };
  const out = Object.entries(values).reduce((acc, [placeholder, value]) => acc.split(placeholder).join(value), text);
  const left = out.match(/@@[A-Z_]+@@/);
  if (left) throw new Error(`fixture placeholder ${left[0]} has no value`);
  return out;
}

function pulumi(args: string[], timeoutMs = 300_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(path.join(binDir, "pulumi"), [...args, "--stack", STACK, "--non-interactive"], { cwd: workDir, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function exportedResources(): Promise<StateResource[]> {
  const r = await pulumi(["stack", "export"]);
  if (r.code !== 0) throw new Error(`pulumi stack export failed:\n${r.stderr}`);
  return (JSON.parse(r.stdout).deployment.resources ?? []) as StateResource[];
}

const byType = (resources: StateResource[], suffix: string) => resources.find((r) => r.type.endsWith(suffix));

async function removeVmEverywhere(): Promise<void> {
  for (const host of [lab.hosts.a.uri, lab.hosts.b.uri]) {
    await backend.deleteVm({ name: VM, host }).catch(() => undefined);
  }
}

beforeAll(async () => {
  lab = await ensureLab();
  backend = new LibvirtBackend({ pool: lab.hosts.a.pool });
  ({ binDir, env } = pulumiEnv());
  // Its own state folder and project folder, so the fixture's fixed stack name meets no other stack.
  // Inside the package: the dynamic provider plugin resolves @pulumi/pulumi from there.
  scratch = path.join(PACKAGE_ROOT, ".cache", `saved-stack-${runId()}`);
  workDir = path.join(scratch, "project");
  fs.mkdirSync(path.join(scratch, "state"), { recursive: true });
  fs.mkdirSync(workDir, { recursive: true });
  env = { ...env, PULUMI_BACKEND_URL: `file://${path.join(scratch, "state")}` };
  fs.writeFileSync(path.join(workDir, "Pulumi.yaml"), `name: ${PROJECT}\nruntime: nodejs\n`);
  fs.writeFileSync(path.join(workDir, `Pulumi.${STACK}.yaml`), fill(fs.readFileSync(path.join(FIXTURE, `Pulumi.${STACK}.yaml`), "utf8")));
  fs.writeFileSync(path.join(workDir, "deployment.json"), fill(fs.readFileSync(path.join(FIXTURE, "deployment.json"), "utf8")));

  // The VM the saved stack describes, on this lab's host a (a leftover of an interrupted run goes first).
  await removeVmEverywhere();
  const deployment = JSON.parse(fs.readFileSync(path.join(workDir, "deployment.json"), "utf8"));
  const domain = byType(deployment.deployment.resources, ":Domain")!;
  const info = await backend.defineVm(domain.inputs!.spec as VmSpec, lab.hosts.a.uri);
  definedVmId = info.id;
}, 600_000);

afterAll(async () => {
  // Whatever happened above: no VM, no stack, no scratch files left behind.
  if (workDir && fs.existsSync(path.join(workDir, "Pulumi.yaml"))) {
    const left = await exportedResources().catch(() => []);
    if (left.length > 0) await pulumi(["destroy", "--yes", "--skip-preview"]);
    await pulumi(["stack", "rm", "--yes", "--force"]);
  }
  if (lab) await removeVmEverywhere();
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
}, 600_000);

test("the fixture's providers require the pre-move module paths, which exist in this build", () => {
  const deployment = JSON.parse(fs.readFileSync(path.join(workDir, "deployment.json"), "utf8"));
  const dynamic = (deployment.deployment.resources as StateResource[]).filter((r) => r.type.startsWith("pulumi-nodejs:dynamic/"));
  expect(dynamic.map((r) => r.type.split(":").pop()).sort()).toEqual(["Domain", "Retention", "Snapshot"]);
  const recorded = new Set(dynamic.flatMap((r) => [...String(r.inputs!.__provider).matchAll(/modulePath: "([^"]+)"/g)].map((m) => m[1])));
  expect([...recorded].sort()).toEqual([...LEGACY_MODULES].sort());
  for (const file of LEGACY_MODULES) expect(fs.existsSync(file)).toBe(true);
});

test("stack import + pulumi refresh read the VM through the legacy modules", async () => {
  const init = await pulumi(["stack", "init"]);
  expect(init.code).toBe(0);
  // The fixture's config file kept its salt: the secrets in the state decrypt with the lab passphrase.
  expect(fs.readFileSync(path.join(workDir, `Pulumi.${STACK}.yaml`), "utf8")).toContain(fs.readFileSync(path.join(FIXTURE, `Pulumi.${STACK}.yaml`), "utf8").split("\n")[0]);
  const imported = await pulumi(["stack", "import", "--file", "deployment.json"]);
  expect(imported.code).toBe(0);

  const refresh = await pulumi(["refresh", "--yes", "--skip-preview"]);
  if (refresh.code !== 0) console.error(refresh.stdout, refresh.stderr);
  expect(refresh.code).toBe(0);

  const resources = await exportedResources();
  // Domain.read found the VM we defined (a new UUID, stopped) where the state says it runs.
  expect(byType(resources, ":Domain")!.outputs).toMatchObject({ currentHost: lab.hosts.a.uri, state: "shutoff", vmId: definedVmId });
  // Snapshot.read looked in this lab's repository: the baseline taken before the move is not there.
  expect(byType(resources, ":Snapshot")!.outputs).toMatchObject({ pruned: true, snapshot: { id: "20261203T170245.476Z-a16c2c3c", complete: false } });
  expect(byType(resources, ":Retention")!.outputs).toMatchObject({ snapshotCount: 0, newestSnapshotId: null });
  // Refresh did not rewrite the recorded module paths: the state still depends on the shims.
  expect(String(byType(resources, ":Domain")!.outputs!.__provider ?? byType(resources, ":Domain")!.inputs!.__provider)).toContain(LEGACY_MODULES[0]);
});

test("pulumi destroy removes the VM from the lab host and empties the stack", async () => {
  expect(await backend.findVm(VM, [lab.hosts.a.uri])).toBeDefined();
  const destroy = await pulumi(["destroy", "--yes", "--skip-preview"]);
  if (destroy.code !== 0) console.error(destroy.stdout, destroy.stderr);
  expect(destroy.code).toBe(0);
  expect(await backend.findVm(VM, [lab.hosts.a.uri, lab.hosts.b.uri])).toBeUndefined();
  expect(fs.readdirSync(lab.hosts.a.storageDir).filter((f) => f.startsWith(VM))).toEqual([]);
  expect(await exportedResources()).toEqual([]);
});
