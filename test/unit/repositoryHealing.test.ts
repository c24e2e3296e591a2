/**
 * Issue 14 (points 2-5, 9): a repository that heals, one writer per VM, no debris. Real files in a
 * temp dir (and a real 8 MiB tmpfs for the full-filesystem case); the CLI runs as a process.
 */
import { pseudoRandom, tempDirPerTest } from "../support/tempFiles";
import { createHash } from "crypto";
import { ChildProcess, spawn, spawnSync } from "child_process";
import { hostname, tmpdir } from "os";
import { join } from "path";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, unlinkSync, writeFileSync } from "fs";
import { MiB } from "../../repository/chunker";
import { Manifest } from "../../repository/manifest";
import { SnapshotRepository } from "../../repository/repository";
import { checkRepository } from "../../repository/check";
import { pendingWriterDead } from "../../repository/staleMarkers";
import { VmWriterBusyError } from "../../repository/vmWriterLock";
import { RepositoryFullError } from "../../repository/space";
import { repositoryCheckCommand } from "../../cli/repositoryCommand";
import { runCli } from "../support/cli";
import { PACKAGE_ROOT } from "../../lib/packageRoot";

const PAGE = 4096;
const scratch = tempDirPerTest("pvm-heal-test-");
const writeTemp = scratch.write;

async function snapshot(repo: SnapshotRepository, vm: string, files: Record<string, string>) {
  const p = await repo.begin(vm, { host: "qemu+ssh://host-a/system", includesMemory: "memory" in files });
  for (const [role, path] of Object.entries(files)) await p.addFile(role, path);
  return p.commit();
}

const manifestOf = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Manifest;
const chunksOf = (path: string) => new Set(manifestOf(path).files.flatMap((f) => f.chunks.map((c) => c.sha256)));

function storedChunks(root: string): string[] {
  const out: string[] = [];
  if (!existsSync(join(root, "chunks"))) return out;
  for (const sub of readdirSync(join(root, "chunks"))) for (const n of readdirSync(join(root, "chunks", sub))) out.push(n);
  return out.sort();
}

function chunkPath(repo: SnapshotRepository, sha: string): string {
  return join(repo.root, "chunks", sha.slice(0, 2), sha);
}

function flipByte(path: string, at: number): void {
  const b = readFileSync(path);
  b[at] ^= 0x5a;
  writeFileSync(path, b);
}

/**
 * Four snapshots (three of vm1, one of vm2) of 6 MiB memory images that differ only in their
 * last pages, so their first chunks are shared; returns them and a chunk all four share.
 */
async function sharedChunkScenario(repo: SnapshotRepository) {
  const base = pseudoRandom(6 * MiB, "shared-base");
  const memPath = join(scratch.dir(), "memory.sav");
  const snaps = [];
  for (const [vm, v] of [["vm1", 1], ["vm1", 2], ["vm1", 3], ["vm2", 4]] as const) {
    const img = Buffer.from(base);
    pseudoRandom(PAGE, `tail ${v}`).copy(img, img.length - 3 * PAGE);
    writeFileSync(memPath, img);
    snaps.push(await snapshot(repo, vm, { memory: memPath }));
  }
  const sets = snaps.map((s) => chunksOf(s.location));
  const shared = [...sets[0]].filter((h) => sets.every((s) => s.has(h)));
  expect(shared.length).toBeGreaterThan(0);
  writeFileSync(memPath, base); // the VM's current memory still has the shared content
  return { snaps, victim: shared[0], base, memPath, names: snaps.map((s) => `${s.vm}/${s.id}`).sort() };
}

describe("a corrupt chunk shared by every snapshot", () => {
  test("verify names every affected snapshot; the next snapshot with that content heals it and all verify again", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const { snaps, victim, memPath, names } = await sharedChunkScenario(repo);
    flipByte(chunkPath(repo, victim), 1000);

    for (const s of snaps) {
      const v = await repo.verify(s.vm, s.id);
      expect(v.ok).toBe(false);
      expect(v.damagedChunks).toEqual([{ sha256: victim, problem: expect.stringContaining("corrupt"), snapshots: names }]);
    }

    // Before the fix every later commit failed verification here, forever.
    const statsBefore = repo.chunks.stats.chunksHealed;
    const healer = await snapshot(repo, "vm1", { memory: memPath });
    expect(healer.complete).toBe(true);
    expect(repo.chunks.stats.chunksHealed - statsBefore).toBe(1);
    for (const s of [...snaps, healer]) expect(await repo.verify(s.vm, s.id)).toEqual({ ok: true, problems: [] });
    const out = await repo.materialize("vm1", snaps[0].id, join(scratch.dir(), "restore"));
    expect(createHash("sha256").update(readFileSync(out.memory)).digest("hex")).toBe(manifestOf(snaps[0].location).files[0].sha256);
  });

  test("a truncated chunk (wrong size) is rewritten by the next snapshot too", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const { snaps, victim, memPath } = await sharedChunkScenario(repo);
    writeFileSync(chunkPath(repo, victim), readFileSync(chunkPath(repo, victim)).subarray(0, 1000));
    expect((await repo.verify("vm1", snaps[0].id)).problems[0]).toMatch(/has 1000 bytes/);
    await snapshot(repo, "vm2", { memory: memPath });
    for (const s of snaps) expect((await repo.verify(s.vm, s.id)).ok).toBe(true);
  });

  test("`protected-vm repository check --read-data` finds it (exit 1) and `--repair --source` rewrites it (exit 0), as a process", async () => {
    const main = join(PACKAGE_ROOT, "dist", "cli", "main.js");
    if (!existsSync(main)) throw new Error(`${main} is missing: run npx tsc -p tsconfig.json first`);
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const { snaps, victim, memPath, names } = await sharedChunkScenario(repo);

    const clean = await runCli(["repository", "check", "--repository", repo.root, "--read-data", "--json"]);
    expect(clean.code).toBe(0);
    expect(clean.json).toMatchObject({ ok: true, manifests: 4, damagedChunks: [] });

    flipByte(chunkPath(repo, victim), 77);
    // Without --read-data only presence and size are checked: a flipped byte is not seen.
    expect((await runCli(["repository", "check", "--repository", repo.root])).code).toBe(0);

    const found = await runCli(["repository", "check", "--repository", repo.root, "--read-data"]);
    expect(found.code).toBe(1);
    expect(found.stdout).toContain(`damaged chunk ${victim}`);
    for (const n of names) expect(found.stdout).toContain(n);
    expect(found.stdout).toContain("damage found and not repaired");

    const repaired = await runCli(["repository", "check", "--repository", repo.root, "--read-data", "--repair", "--source", memPath, "--json"]);
    expect(repaired.code).toBe(0);
    expect(repaired.json.repaired).toEqual([{ sha256: victim, source: expect.stringContaining(memPath) }]);
    expect(repaired.json.quarantined).toEqual([]);
    for (const s of snaps) expect((await repo.verify(s.vm, s.id)).ok).toBe(true);
    expect((await runCli(["repository", "check", "--repository", repo.root, "--read-data"])).code).toBe(0);

    expect((await runCli(["repository", "check", "--repository", repo.root, "--source", memPath])).code).toBe(2); // --source needs --repair
    expect((await runCli(["repository", "frobnicate"])).code).toBe(2);
  });

  test("check --repair without a good source quarantines the affected snapshots (recovery and retention skip them); a later heal restores them", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const { snaps, victim, memPath, names } = await sharedChunkScenario(repo);
    flipByte(chunkPath(repo, victim), 5);
    const out: string[] = [];
    const code = await repositoryCheckCommand({ repository: repo.root, readData: true, repair: true, out: (t) => out.push(t) });
    expect(code).toBe(1); // damage found, not repaired (only quarantined)
    expect(out.join("")).toContain(`quarantined ${names[0]}`);
    expect(existsSync(chunkPath(repo, victim))).toBe(false); // no reader gets the bad bytes

    expect((await repo.list("vm1")).map((r) => r.complete)).toEqual([false, false, false]);
    expect(await repo.newestComplete("vm1")).toBeUndefined();
    expect(await repo.newestComplete("vm2")).toBeUndefined();
    // gc keeps the quarantined snapshots' other chunks.
    const before = storedChunks(repo.root);
    expect((await repo.gc()).chunksDeleted).toBe(0);
    expect(storedChunks(repo.root)).toEqual(before);
    // A second check reports them as known (exit 0: no complete snapshot is damaged).
    const again = await checkRepository(repo, { readData: true });
    expect(again.ok).toBe(true);
    expect(again.alreadyQuarantined.map((q) => q.snapshot).sort()).toEqual(names);

    // A new snapshot with the shared content writes the chunk again; repair then restores them.
    await snapshot(repo, "vm1", { memory: memPath });
    const restored = await checkRepository(repo, { repair: true });
    expect(restored.restored.sort()).toEqual(names);
    for (const s of snaps) expect((await repo.verify(s.vm, s.id)).ok).toBe(true);
    expect((await repo.list("vm1")).every((r) => r.complete)).toBe(true);
  });
});

describe("one writer per VM", () => {
  test("a second writer of the same VM waits for the first, then writes; a refusal names the holder; no debris", async () => {
    const root = join(scratch.dir(), "repo");
    const a = new SnapshotRepository(root);
    const b = new SnapshotRepository(root, { writerWaitMs: 0 });
    const c = new SnapshotRepository(root, { writerWaitMs: 20_000 });
    const mem = writeTemp("m", pseudoRandom(2 * MiB, "w"));

    const first = await a.begin("vm1", { host: "h", includesMemory: true });
    const refusal = b.begin("vm1", { host: "h", includesMemory: true });
    await expect(refusal).rejects.toThrow(VmWriterBusyError);
    await expect(refusal).rejects.toThrow(new RegExp(`pid ${process.pid} on ${hostname()}`));
    // Another VM is not blocked.
    const other = await b.begin("vm2", { host: "h", includesMemory: true });
    await other.addFile("memory", mem);
    await other.commit();

    let secondBegun = false;
    const second = c.begin("vm1", { host: "h", includesMemory: true }).then((p) => ((secondBegun = true), p));
    await new Promise((r) => setTimeout(r, 600));
    expect(secondBegun).toBe(false); // waiting for the first
    await first.addFile("memory", mem);
    const r1 = await first.commit();
    const p2 = await second;
    await p2.addFile("memory", mem);
    const r2 = await p2.commit();

    expect((await a.list("vm1")).map((r) => [r.id, r.complete])).toEqual([[r2.id, true], [r1.id, true]]);
    expect(readdirSync(join(root, "vms", "vm1")).sort()).toEqual([`${r1.id}.manifest.json`, `${r2.id}.manifest.json`].sort());
    expect(readdirSync(join(root, "locks"))).toEqual([]);
  });

  test("a writer process killed mid-take: its lock is taken over and its pending marker cleared by the next take; gc clears others", async () => {
    const compiled = join(PACKAGE_ROOT, "dist", "repository", "repository.js");
    if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run npx tsc -p tsconfig.json first`);
    const root = join(scratch.dir(), "repo");
    const script = `
      const { SnapshotRepository } = require(${JSON.stringify(compiled)});
      new SnapshotRepository(${JSON.stringify(root)}).begin(process.argv[1], { host: "h", includesMemory: true })
        .then((p) => { process.stdout.write(p.id + "\\n"); setInterval(() => {}, 1000); });`;
    const startWriter = (vm: string) =>
      new Promise<{ child: ChildProcess; id: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ["-e", script, vm], { stdio: ["ignore", "pipe", "inherit"] });
        child.stdout!.once("data", (d) => resolve({ child, id: String(d).trim() }));
        child.once("exit", (code) => reject(new Error(`writer exited ${code}`)));
      });
    const killed = (child: ChildProcess) => new Promise((r) => (child.once("exit", r), child.kill("SIGKILL")));

    const w1 = await startWriter("vm1");
    const repo = new SnapshotRepository(root, { writerWaitMs: 300 });
    await expect(repo.begin("vm1", { host: "h", includesMemory: true })).rejects.toThrow(new RegExp(`another snapshot writer holds VM vm1: .*pid ${w1.child.pid} on ${hostname()}`));
    await killed(w1.child);
    const w2 = await startWriter("vm2");
    await killed(w2.child);
    expect((await repo.list("vm1")).map((r) => r.id)).toEqual([w1.id]); // the killed take's marker

    const p = await repo.begin("vm1", { host: "h", includesMemory: true }); // takes over the dead lock
    await p.addFile("memory", writeTemp("m", pseudoRandom(MiB, "k")));
    const r = await p.commit();
    expect((await repo.list("vm1")).map((x) => x.id)).toEqual([r.id]); // marker of the dead take gone

    const g = await repo.gc();
    expect(g.staleMarkersRemoved).toEqual([join(root, "vms", "vm2", `${w2.id}.pending.json`)]);
    expect(await repo.list("vm2")).toEqual([]);
    expect(readdirSync(join(root, "locks"))).toEqual([]);
  });

  test("pendingWriterDead: dead pid on this host, or an old marker from another host", () => {
    const now = Date.parse("2026-12-03T12:00:00Z");
    const ctx = { hostname: "a", now, pidAlive: (pid: number) => pid === 10, foreignGraceMs: 3600_000 };
    expect(pendingWriterDead({ pid: 10, hostname: "a" }, now - 5 * 3600_000, ctx)).toBe(false); // alive, however old
    expect(pendingWriterDead({ pid: 11, hostname: "a" }, now - 1000, ctx)).toBe(true);
    expect(pendingWriterDead({ pid: 11, hostname: "b" }, now - 1000, ctx)).toBe(false); // cannot tell yet
    expect(pendingWriterDead({ pid: 11, hostname: "b" }, now - 2 * 3600_000, ctx)).toBe(true);
    expect(pendingWriterDead(undefined, now - 1000, ctx)).toBe(false);
    expect(pendingWriterDead(undefined, now - 2 * 3600_000, ctx)).toBe(true);
  });

  test("a step failing after the commit point is a warning, never a failed snapshot", async () => {
    const warnings: string[] = [];
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"), { onWarning: (m) => warnings.push(m) });
    const p = await repo.begin("vm1", { host: "h", includesMemory: true });
    await p.addFile("memory", writeTemp("m", pseudoRandom(MiB, "c")));
    // Make the last step (removing the pending marker) fail: the marker path becomes a non-empty directory.
    const marker = join(repo.root, "vms", "vm1", `${p.id}.pending.json`);
    unlinkSync(marker);
    mkdirSync(marker);
    writeFileSync(join(marker, "x"), "x");
    const r = await p.commit();
    expect(r.complete).toBe(true);
    expect(p.state).toBe("committed");
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`${p.id} is committed; removing the pending marker failed`))]);
    expect((await repo.newestComplete("vm1"))?.id).toBe(r.id);
    expect((await repo.verify("vm1", r.id)).ok).toBe(true);
    expect(readdirSync(join(repo.root, "locks"))).toEqual([]);
  });
});

describe("a failed snapshot removes the chunks only it wrote", () => {
  test("but never a chunk another snapshot in progress deduplicated against: those are left for gc", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const kept = await snapshot(repo, "vm0", { memory: writeTemp("k", pseudoRandom(2 * MiB, "kept")) });
    const file = writeTemp("x", pseudoRandom(3 * MiB, "x"));
    const a = await repo.begin("vm1", { host: "h", includesMemory: true });
    await a.addFile("memory", file); // creates the chunks
    const b = await repo.begin("vm2", { host: "h", includesMemory: true });
    await b.addFile("memory", file); // deduplicates against a's new chunks
    const r = await a.abort();
    expect(r).toMatchObject({ chunksRemoved: 0 });
    expect(r.chunksLeftForGc).toBeGreaterThan(0);
    const rb = await b.commit();
    expect((await repo.verify("vm2", rb.id)).ok).toBe(true);

    // Alone, an aborted snapshot's own chunks go at once; shared ones stay.
    const c = await repo.begin("vm3", { host: "h", includesMemory: true });
    await c.addFile("memory", writeTemp("y", Buffer.concat([pseudoRandom(2 * MiB, "kept"), pseudoRandom(2 * MiB, "y")])));
    const before = storedChunks(repo.root).length;
    const rc = await c.abort();
    expect(rc.chunksRemoved).toBeGreaterThan(0);
    expect(storedChunks(repo.root).length).toBe(before - rc.chunksRemoved);
    expect(new Set(storedChunks(repo.root))).toEqual(new Set([...chunksOf(kept.location), ...chunksOf(rb.location)]));
    expect((await repo.verify("vm0", kept.id)).ok).toBe(true);
  });
});

const isRoot = process.getuid?.() === 0;

(isRoot ? describe : describe.skip)("a full repository filesystem (8 MiB tmpfs)", () => {
  let mnt: string;
  beforeAll(() => {
    mnt = mkdtempSync(join(tmpdir(), "pvm-full-"));
    const r = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]);
    if (r.status !== 0) throw new Error(`mount tmpfs failed: ${r.stderr}`);
  });
  afterAll(() => {
    spawnSync("umount", [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  test("the error names the path and free space; the failed snapshot's chunks are removed; earlier snapshots still verify", async () => {
    const root = join(mnt, "repo");
    const repo = new SnapshotRepository(root);
    const first = await snapshot(repo, "vm1", { memory: writeTemp("m1", pseudoRandom(3 * MiB, "first")) });
    const afterFirst = storedChunks(root);
    const freeBefore = statfsSync(mnt).bavail * statfsSync(mnt).bsize;

    const big = writeTemp("m2", Buffer.concat([pseudoRandom(3 * MiB, "first"), pseudoRandom(9 * MiB, "big")]));
    const p = await repo.begin("vm1", { host: "h", includesMemory: true });
    const err = await p.addFile("memory", big).then(() => undefined, (e: Error) => e);
    expect(err).toBeInstanceOf(RepositoryFullError);
    expect(err!.message).toMatch(new RegExp(`^repository ${root} is full: \\d+ bytes free, needed ~\\d+ \\(writing memory from ${big}\\)$`));
    expect((err as RepositoryFullError).neededBytes).toBeGreaterThan(0);
    expect((err as RepositoryFullError).neededBytes).toBeLessThanOrEqual(12 * MiB);
    expect(storedChunks(root).length).toBeGreaterThan(afterFirst.length); // it did write some before filling up

    const cleanup = await p.abort();
    expect(cleanup.chunksRemoved).toBeGreaterThan(0);
    expect(storedChunks(root)).toEqual(afterFirst); // no orphans, no temp files
    expect(statfsSync(mnt).bavail * statfsSync(mnt).bsize).toBeGreaterThanOrEqual(freeBefore - 64 * 1024); // the space is back
    expect((await repo.list("vm1")).map((r) => r.id)).toEqual([first.id]);
    expect((await repo.verify("vm1", first.id)).ok).toBe(true);
    expect(readdirSync(join(root, "locks"))).toEqual([]);
  });
});
