/**
 * The main job on the local lab, end to end (`npm run demo`):
 *   lab up -> `pulumi up` this example (a ProtectedVM on host a) -> the scheduler takes
 *   snapshots -> host a dies (its QEMU and daemon are killed) -> `recover` resumes the VM on
 *   host b from the newest snapshot -> `pulumi refresh` -> prints where the VM runs, RPO, RTO.
 * It finishes with the guest running on host b. `npm run lab -- down` removes everything.
 */
import * as path from "path";
import { openStack } from "../../pulumi/automation/stack";
import { program } from "./index";
import { Scheduler } from "../../ops/scheduler";
import { recover } from "../../ops/recover";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";
import { ensureLab, counters, waitForConsole } from "../../lab/lab";
import { failHost } from "../../lab/hostFailure";
import { labExampleConfig } from "../../lab/exampleStack";

const VM = "pv-demo";
const say = (s: string) => console.log(`[demo] ${s}`);

async function main() {
  const t0 = Date.now();
  const lab = await ensureLab();
  const A = lab.hosts.a, B = lab.hosts.b;
  const stack = await openStack({
    projectName: "protected-vm-example",
    stackName: "demo",
    program,
    config: Object.fromEntries(
      Object.entries(labExampleConfig(lab, VM, { minInterval: 5, maxInterval: 30, keepLast: 3 })).map(([k, value]) => [k, { value }]),
    ),
  });
  // Start from a clean slate: a previous demo may have left its VM on host b, and a stale copy
  // (with its disk and console log) on host a.
  await stack.destroy();
  const cleaner = new LibvirtBackend({ pool: A.pool });
  for (const h of [A, B]) await cleaner.deleteVm({ name: VM, host: h.uri });

  let t = Date.now();
  const up = await stack.up({ onOutput: (s) => process.stdout.write(s) });
  say(`pulumi up: ${up.summary.result} in ${((Date.now() - t) / 1000).toFixed(1)} s; ${VM} runs on host a (${up.outputs.currentHost.value})`);
  const consoleA = path.join(A.storageDir, `${VM}.console.log`);
  await waitForConsole(consoleA, /PVCOUNT 3 /, 120_000);
  say(`guest is counting on host a: ${counters(consoleA).pop()?.n}`);

  const backend = new LibvirtBackend({ pool: A.pool });
  const scheduler = new Scheduler({ backend, hosts: [A.uri, B.uri], maxSnapshots: 3, log: (e) => say(JSON.stringify(e)) });
  await scheduler.run();

  const lastOnA = counters(consoleA).pop()!.n;
  const failedAt = await failHost(A);
  say(`host a killed at ${failedAt.toISOString()} (guest counter was ${lastOnA})`);

  const report = await recover(backend, VM, { repository: lab.repository, hosts: [A.uri, B.uri], onEvent: (e) => say(`recover [${e.step}] ${e.detail}`) });
  const consoleB = path.join(B.storageDir, `${VM}.console.log`);
  const m = await waitForConsole(consoleB, /PVCOUNT (\d+) /, 60_000);
  const rto = (Date.now() - failedAt.getTime()) / 1000;
  const rpo = (failedAt.getTime() - Date.parse(report.snapshotCreatedAt)) / 1000;

  await ensureLab(); // host a comes back; refresh then finds the VM on host b
  t = Date.now();
  await stack.refresh();
  const domain = (await stack.exportStack()).deployment.resources.find((r: any) => r.type === "pulumi-nodejs:dynamic/protected-vm:Domain");
  say(`pulumi refresh in ${((Date.now() - t) / 1000).toFixed(1)} s: state says ${VM} runs on ${domain?.outputs?.currentHost}`);
  console.log("");
  console.log(`${VM} now runs on host b (${report.to}), resumed from snapshot ${report.snapshotId}.`);
  console.log(`  guest counter: last on host a ${lastOnA}, first on host b ${m[1]} (continued, not rebooted)`);
  console.log(`  RPO ${rpo.toFixed(1)} s (age of the snapshot used at the failure)`);
  console.log(`  RTO ${rto.toFixed(1)} s (failure to guest counting again on host b)`);
  console.log(`  total ${((Date.now() - t0) / 1000).toFixed(0)} s. Remove: npm run lab -- down`);
}

main().catch((e) => {
  console.error(`[demo] failed: ${(e as Error).message}`);
  process.exit(1);
});
