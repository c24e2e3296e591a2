/**
 * The protected-vm policy pack in a real `pulumi preview --policy-pack`: a compliant example
 * stack passes (and the pack is seen to run), a violating one is reported rule by rule against
 * the right resource, mandatory violations fail the preview, advisory ones do not.
 * Needs a build (npx tsc -p .): the pack runs dist/pulumi/policy/pack/index.js.
 */
import { policyPackPath } from "../../index";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { EngineEvent, PolicyEvent } from "@pulumi/pulumi/automation";
import { openStack } from "../../pulumi/automation/stack";
import { PACKAGE_ROOT } from "../../lib/packageRoot";
import { runCli, runId } from "../support/cli";

const PACK = policyPackPath;
const compliantProgram = path.join(PACKAGE_ROOT, "dist", "examples", "policy-compliant", "index.js");
const violationsProgram = path.join(PACKAGE_ROOT, "dist", "examples", "policy-violations", "index.js");

interface PreviewRun {
  ok: boolean;
  error?: string;
  output: string;
  violations: PolicyEvent[];
}

async function preview(program: string, project: string, stackName: string, config: Record<string, string>, policyConfig?: object): Promise<PreviewRun> {
  const { program: fn } = require(program);
  const stack = await openStack({
    projectName: project,
    stackName,
    program: fn,
    config: Object.fromEntries(Object.entries(config).map(([k, v]) => [k, { value: v }])),
  });
  const policyPackConfigs: string[] = [];
  if (policyConfig) {
    const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pv-policy-")), "policy-config.json");
    fs.writeFileSync(f, JSON.stringify(policyConfig));
    policyPackConfigs.push(f);
  }
  const violations: PolicyEvent[] = [];
  let output = "";
  try {
    await stack.preview({
      policyPacks: [PACK],
      policyPackConfigs,
      onOutput: (s) => (output += s),
      onEvent: (e: EngineEvent) => {
        if (e.policyEvent) violations.push(e.policyEvent);
      },
    });
    return { ok: true, output, violations };
  } catch (e) {
    return { ok: false, error: (e as Error).message, output, violations };
  } finally {
    await stack.workspace.removeStack(stackName).catch(() => undefined);
  }
}

/** The Pulumi resource name at the end of a URN. */
const resourceOf = (urn?: string) => (urn ? urn.split("::").pop() : undefined);

describe("policy pack in pulumi preview --policy-pack", () => {
  const id = runId();
  // A "shared" repository outside the default local paths (/tmp, /var/lib/libvirt, ...), wherever
  // the checkout is (CI may clone under /tmp, which the rule rightly counts as host-local).
  const repository = path.join("/srv", "protected-vm-policy-test", `repo-${id}`);
  // A host-local repository that exists (preview refuses a missing one): under /tmp, a default local path.
  const localRepository = fs.mkdtempSync(path.join(os.tmpdir(), "pv-local-repo-"));

  beforeAll(() => {
    fs.mkdirSync(repository, { recursive: true }); // preview refuses a repository that does not exist
    for (const f of [compliantProgram, violationsProgram, path.join(PACKAGE_ROOT, "dist", "pulumi", "policy", "pack", "index.js")]) {
      if (!fs.existsSync(f)) throw new Error(`${f} is missing: run npx tsc -p . first`);
    }
  });
  afterAll(async () => {
    fs.rmSync(repository, { recursive: true, force: true });
    fs.rmSync(localRepository, { recursive: true, force: true });
    try {
      fs.rmdirSync(path.dirname(repository)); // only if now empty (another run may be using it)
    } catch {
      /* not empty */
    }
    // The CLI previews leave empty stacks in the local state folder: remove them.
    for (const [project, stackName] of [["policy-violations", `cli-${id}`], ["policy-compliant", `cli-ok-${id}`]]) {
      const stack = await openStack({ projectName: project, stackName, program: async () => ({}) }).catch(() => undefined);
      await stack?.workspace.removeStack(stackName).catch(() => undefined);
    }
  });

  test("the compliant stack passes, and the analyzer did run", async () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "examples", "policy-compliant", "policy-config.json"), "utf8"));
    cfg["pv-repository-off-host"] = { sharedMounts: [path.dirname(repository)] };
    const r = await preview(compliantProgram, "policy-compliant", `ok-${id}`, { repository, "protected-vm:warmRecovery": '["pc-db"]' }, cfg);
    expect(r.error).toBeUndefined();
    expect(r.violations).toEqual([]);
    expect(r.ok).toBe(true);
    // Not just a green preview: the pack was loaded and evaluated.
    expect(r.output).toMatch(/Policies:\s*\n\s*✅ protected-vm@v[\d.]+ \(local: .*protected-vm-policy\)/);
  });

  test("each rule reports its violation on the right resource; mandatory ones fail the preview", async () => {
    const r = await preview(
      violationsProgram,
      "policy-violations",
      `bad-${id}`,
      { repository, localRepository, "protected-vm:warmRecovery": '["pv-cold-db"]' },
      JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, "examples", "policy-violations", "policy-config.json"), "utf8")),
    );
    expect(r.ok).toBe(false);
    const got = r.violations.map((v) => `${v.policyName} ${resourceOf(v.resourceUrn)} ${v.enforcementLevel}`).sort();
    expect(got).toEqual(
      [
        "pv-vm-protected pv-unprotected mandatory",
        "pv-rpo-target pv-slow-rpo-vm mandatory",
        "pv-retention pv-thin-vm mandatory",
        "pv-recovery-hosts pv-one-recovery-vm mandatory",
        "pv-repository-off-host pv-local-repo-vm mandatory",
        "pv-warm-recovery pv-cold-db-vm mandatory",
        `pv-single-repository policy-violations-bad-${id} advisory`,
      ].sort(),
    );
    // The unprotected VM's message carries its URN; messages say what to change.
    const unprotected = r.violations.find((v) => v.policyName === "pv-vm-protected")!;
    expect(unprotected.message).toContain(unprotected.resourceUrn!);
    expect(r.violations.find((v) => v.policyName === "pv-rpo-target")!.message).toMatch(/3600 s, above the RPO target of 300 s/);
    expect(r.output).toMatch(/\[mandatory\]\s+pv-rpo-target/);
  });

  test("configured levels and parameters: all advisory passes; stack-level quota and retention age", async () => {
    const levels = Object.fromEntries(
      ["pv-vm-protected", "pv-rpo-target", "pv-retention", "pv-recovery-hosts", "pv-repository-off-host", "pv-warm-recovery", "pv-single-repository", "pv-repository-quota"].map((n) => [n, "advisory"]),
    );
    const r = await preview(violationsProgram, "policy-violations", `adv-${id}`, { repository, localRepository, "protected-vm:warmRecovery": '["pv-cold-db"]' }, {
      ...levels,
      "pv-retention": { enforcementLevel: "advisory", minSnapshots: 2, minOldestAgeSeconds: 600 },
      // The shared repository holds 4 VMs (4384 MiB worst case), the local one 1 (1920 MiB).
      "pv-repository-quota": { enforcementLevel: "advisory", quotaMiB: 4000 },
    });
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.violations.length).toBeGreaterThanOrEqual(9);
    expect(r.violations.every((v) => (v.enforcementLevel as string) === "advisory")).toBe(true);
    // keepLast 12 x minInterval 30 = 330 s < 600 s: every protected VM is told (plus pv-thin's keepLast).
    const retention = r.violations.filter((v) => v.policyName === "pv-retention");
    expect(retention.some((v) => /only guarantees a snapshot 330 s old/.test(v.message))).toBe(true);
    const quota = r.violations.filter((v) => v.policyName === "pv-repository-quota");
    expect(quota).toHaveLength(1);
    expect(quota[0].message).toMatch(/repository .*repo-.* is shared by 4 protected VM\(s\) whose retained snapshots need up to 4384 MiB.*over its quota of 4000 MiB/);
  });

  test("the CLI: protected-vm stack preview --policy-pack fails (exit 1) with the rule and resource in its output", async () => {
    const res = await runCli([
      "stack", "preview", "--program", violationsProgram, "--project", "policy-violations", "--stack", `cli-${id}`,
      "--policy-pack", PACK, "--config", `repository=${repository}`, "--config", `localRepository=${localRepository}`,
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/\[mandatory\]\s+pv-vm-protected\s+\(pulumi-nodejs:dynamic\/protected-vm:Domain: pv-unprotected\)/);
    expect(res.stderr).toMatch(/\[mandatory\]\s+pv-rpo-target\s+\(pulumi-nodejs:dynamic\/protected-vm:Domain: pv-slow-rpo-vm\)/);
    const ok = await runCli([
      "stack", "preview", "--program", compliantProgram, "--project", "policy-compliant", "--stack", `cli-ok-${id}`,
      "--policy-pack", PACK, "--config", `repository=${repository}`, "--json",
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/✅ protected-vm@v/);
  });
});
