/** Pending markers of killed takes do not pile up: retention removes them once their writer is dead. */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { SnapshotRepository } from "../../repository/repository";
import { snapshotsToDelete } from "../../core/retention";
import { pruneSnapshots } from "../../ops/prune";
import { LibvirtBackend } from "../../hypervisor/libvirt/backend";

/** A pid that certainly ran and exited. */
function deadPid(): number {
  return Number(execFileSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).trim());
}

test("a marker whose writer died is debris at once; one whose writer runs is kept through the grace period", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "pv-pending-"));
  try {
    const repo = new SnapshotRepository(root, { lockWaitMs: 1000 });
    const meta = () => ({ host: "qemu:///system", createdAt: new Date(), startedAt: new Date(), includesMemory: true });
    // A complete snapshot, then two takes that never finish: one "killed" (its pid gone), one still running (ours).
    const done = await repo.begin("vm1", meta());
    const f = path.join(root, "data");
    fs.writeFileSync(f, "x".repeat(1000));
    await done.addFile("disk:vda", f);
    await done.commit();
    const killed = await repo.begin("vm1", meta());
    await killed.abort().catch(() => undefined); // release its lock; the marker is rewritten below as a killed process would leave it
    const running = await repo.begin("vm1", meta());
    const dir = path.join(root, "vms", "vm1");
    let markers = fs.readdirSync(dir).filter((n) => n.endsWith(".pending.json"));
    // abort() removed the killed take's marker: put it back as a dead process leaves it.
    const runningMarker = path.join(dir, markers[0]);
    const killedMarker = runningMarker.replace(/\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}/, (id) => id.slice(0, -8) + "deadbeef");
    const m = JSON.parse(fs.readFileSync(runningMarker, "utf8"));
    m.id = path.basename(killedMarker, ".pending.json");
    m.pid = deadPid();
    fs.writeFileSync(killedMarker, JSON.stringify(m));

    const all = await repo.list("vm1");
    const gone = all.filter((s) => s.writerGone);
    expect(gone.map((s) => s.id)).toEqual([m.id]);
    expect(snapshotsToDelete(all, { keepLast: 3 }).map((s) => s.id)).toEqual([m.id]);

    // The running take is never touched; once it ends, the scheduler's prune removes the dead one's marker.
    await running.abort();
    const { deleted } = await pruneSnapshots(new LibvirtBackend(), "vm1", root, { keepLast: 3 });
    expect(deleted.map((s) => s.id)).toEqual([m.id]);
    markers = fs.readdirSync(dir).filter((n) => n.endsWith(".pending.json"));
    expect(markers).toEqual([]);
    expect((await repo.list("vm1")).map((s) => s.complete)).toEqual([true]);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
