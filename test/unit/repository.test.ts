/**
 * Snapshot repository: what a user checks - differential storage, byte-identical restores,
 * corruption detected, crashes never produce a "complete" snapshot, gc removes exactly the
 * unreferenced chunks, retention + delete.
 */
import { pseudoRandom, tempDirPerTest } from "../support/tempFiles";
import { randomBytes } from "crypto";
import { spawnSync } from "child_process";
import { hostname } from "os";
import { join } from "path";
import { appendFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from "fs";
import { chunkBuffer, chunkFile, DEFAULT_CHUNKER, MiB } from "../../repository/chunker";
import { RepositoryBusyError } from "../../repository/lock";
import { Manifest } from "../../repository/manifest";
import { SnapshotCorruptError, SnapshotIncompleteError, SnapshotRepository } from "../../repository/repository";
import { snapshotsToDelete } from "../../core/retention";

const PAGE = 4096;
const scratch = tempDirPerTest("pvm-repo-test-");
const writeTemp = scratch.write;

async function snapshot(repo: SnapshotRepository, vm: string, files: Record<string, string>, createdAt?: Date) {
  const p = await repo.begin(vm, { host: "qemu+ssh://host-a/system", includesMemory: "memory" in files, createdAt });
  for (const [role, path] of Object.entries(files)) await p.addFile(role, path);
  return p.commit();
}

function manifestOf(path: string): Manifest {
  return JSON.parse(readFileSync(path, "utf8")) as Manifest;
}

function chunkSet(m: Manifest): Set<string> {
  return new Set(m.files.flatMap((f) => f.chunks.map((c) => c.sha256)));
}

function storedChunksOrEmpty(root: string): Set<string> {
  return existsSync(join(root, "chunks")) ? storedChunks(root) : new Set();
}

function storedChunks(root: string): Set<string> {
  const out = new Set<string>();
  for (const sub of readdirSync(join(root, "chunks"))) {
    for (const n of readdirSync(join(root, "chunks", sub))) if (/^[0-9a-f]{64}$/.test(n)) out.add(n);
  }
  return out;
}

describe("chunker", () => {
  test("streaming cuts equal in-memory cuts whatever the read size, and respect min/max", async () => {
    const data = randomBytes(24 * MiB);
    const file = writeTemp("f.bin", data);
    const expected = chunkBuffer(data);
    for (const readSize of [4 * MiB, 5 * MiB + 123, 16 * MiB]) {
      const got: Array<{ offset: number; length: number }> = [];
      for await (const c of chunkFile(file, { readSize })) {
        expect(c.data.equals(data.subarray(c.offset, c.offset + c.length))).toBe(true);
        got.push({ offset: c.offset, length: c.length });
      }
      expect(got).toEqual(expected);
    }
    expected.slice(0, -1).forEach((c) => {
      expect(c.length).toBeGreaterThanOrEqual(DEFAULT_CHUNKER.minSize);
      expect(c.length).toBeLessThanOrEqual(DEFAULT_CHUNKER.maxSize);
    });
    const avg = data.length / expected.length;
    expect(avg).toBeGreaterThan(512 * 1024);
    expect(avg).toBeLessThan(2 * MiB);
  });

  test("all-zero input (untouched guest memory) cuts at maxSize and is stored once", async () => {
    const zeros = Buffer.alloc(17 * MiB);
    const cuts = chunkBuffer(zeros);
    expect(cuts.map((c) => c.length)).toEqual([4, 4, 4, 4, 1].map((m) => m * MiB));
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const s = await snapshot(repo, "idle", { memory: writeTemp("z", zeros) });
    expect(s.storedBytes).toBe(5 * MiB); // one 4 MiB zero chunk + the 1 MiB tail
  });
});

describe("SnapshotRepository", () => {
  test("second snapshot of a 64 MiB file with a few changed 4 KiB pages stores only a small fraction; materialize is byte-identical", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const v1 = pseudoRandom(64 * MiB, "v1");
    const xml = Buffer.from("<domain type='kvm'><name>web1</name></domain>\n");
    const memPath = writeTemp("memory.sav", v1);
    const xmlPath = writeTemp("domain.xml", xml);

    const s1 = await snapshot(repo, "web1", { memory: memPath, "domain.xml": xmlPath });
    expect(s1.complete).toBe(true);
    expect(s1.backend).toBe("libvirt");
    expect(s1.bytes).toBe(v1.length + xml.length);
    expect(s1.storedBytes).toBe(s1.bytes); // nothing to dedupe against
    expect(s1.location).toBe(join(repo.root, "vms", "web1", `${s1.id}.manifest.json`));
    expect(s1.id).toMatch(/^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{8}$/);

    const v2 = Buffer.from(v1);
    const pages = [3, 1111, 5000, 9999, 15000]; // 5 scattered pages
    for (const p of pages) pseudoRandom(PAGE, `page ${p}`).copy(v2, p * PAGE);
    writeFileSync(memPath, v2);
    const s2 = await snapshot(repo, "web1", { memory: memPath, "domain.xml": xmlPath });
    const ratio = s2.storedBytes / s2.bytes;
    console.log(`differential: 2nd snapshot stored ${(s2.storedBytes / MiB).toFixed(2)} MiB of ${(s2.bytes / MiB).toFixed(2)} MiB (ratio ${ratio.toFixed(4)}) after ${pages.length} changed 4 KiB pages`);
    expect(s2.storedBytes).toBeGreaterThan(0);
    expect(ratio).toBeLessThan(0.2);

    expect((await repo.list("web1")).map((r) => r.id)).toEqual([s2.id, s1.id]);
    expect((await repo.newestComplete("web1"))?.id).toBe(s2.id);
    expect(await repo.listVms()).toEqual(["web1"]);
    expect(await repo.get("web1", s1.id)).toEqual(s1);

    const out1 = await repo.materialize("web1", s1.id, join(scratch.dir(), "restore1"));
    const out2 = await repo.materialize("web1", s2.id, join(scratch.dir(), "restore2"));
    expect(Object.keys(out2).sort()).toEqual(["domain.xml", "memory"]);
    expect(readFileSync(out1.memory).equals(v1)).toBe(true);
    expect(readFileSync(out2.memory).equals(v2)).toBe(true);
    expect(readFileSync(out2["domain.xml"]).equals(xml)).toBe(true);
    expect(readdirSync(join(scratch.dir(), "restore2")).sort()).toEqual(["domain.xml", "memory"]); // no temp leftovers
    expect(await repo.verify("web1", s1.id)).toEqual({ ok: true, problems: [] });
  });

  test("inserting bytes at the front (shifted offsets) still dedupes most chunks", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const v1 = pseudoRandom(32 * MiB, "insert");
    const path = writeTemp("memory.sav", v1);
    await snapshot(repo, "vm1", { memory: path });
    const v2 = Buffer.concat([pseudoRandom(777, "front"), v1]);
    writeFileSync(path, v2);
    const s2 = await snapshot(repo, "vm1", { memory: path });
    const ratio = s2.storedBytes / s2.bytes;
    console.log(`insert 777 bytes at front: stored ${(s2.storedBytes / MiB).toFixed(2)} MiB of ${(s2.bytes / MiB).toFixed(2)} MiB (ratio ${ratio.toFixed(4)})`);
    expect(ratio).toBeLessThan(0.15);
    const out = await repo.materialize("vm1", s2.id, join(scratch.dir(), "r"));
    expect(readFileSync(out.memory).equals(v2)).toBe(true);
  });

  test("role names become safe file names (disk:vda -> disk-vda)", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const disk = randomBytes(300_000);
    const s = await snapshot(repo, "vm1", { "disk:vda": writeTemp("vda.qcow2", disk) });
    const out = await repo.materialize("vm1", s.id, join(scratch.dir(), "r"));
    expect(out["disk:vda"]).toBe(join(scratch.dir(), "r", "disk-vda"));
    expect(readFileSync(out["disk:vda"]).equals(disk)).toBe(true);
    expect(s.includesMemory).toBe(false);
  });

  test("a corrupted chunk makes verify fail naming the file and chunk, and materialize refuse", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const s = await snapshot(repo, "vm1", { memory: writeTemp("m", randomBytes(8 * MiB)), "disk:vda": writeTemp("d", randomBytes(2 * MiB)) });
    const m = manifestOf(s.location);
    const mem = m.files.find((f) => f.role === "memory")!;
    const victim = mem.chunks[2].sha256;
    const chunkPath = join(repo.root, "chunks", victim.slice(0, 2), victim);
    const bytes = readFileSync(chunkPath);
    bytes[12345] ^= 0xff; // same size, different content: a bit flip on disk
    writeFileSync(chunkPath, bytes);

    const v = await repo.verify("vm1", s.id);
    expect(v.ok).toBe(false);
    expect(v.problems).toHaveLength(1);
    expect(v.problems[0]).toContain(`file "memory" chunk 3/${mem.chunks.length}`);
    expect(v.problems[0]).toContain(victim);
    expect(v.problems[0]).toContain("corrupt");

    const dest = join(scratch.dir(), "restore");
    await expect(repo.materialize("vm1", s.id, dest)).rejects.toThrow(SnapshotCorruptError);
    await expect(repo.materialize("vm1", s.id, dest)).rejects.toThrow(/file "memory" chunk 3\/.*corrupt/);
    expect(existsSync(dest) ? readdirSync(dest) : []).toEqual([]); // nothing half-written left

    // A missing chunk is reported too (and materialize refuses before writing anything).
    rmSync(chunkPath);
    expect((await repo.verify("vm1", s.id)).problems[0]).toMatch(/chunk 3\/\d+ .* is missing/);
    await expect(repo.materialize("vm1", s.id, dest)).rejects.toThrow(/is missing/);
  });

  test("a manifest left as .tmp (crash before the rename) or a begun snapshot is incomplete and never newestComplete", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const path = writeTemp("m", randomBytes(3 * MiB));
    const old = await snapshot(repo, "vm1", { memory: path }, new Date(Date.now() - 60_000));
    const crashed = await snapshot(repo, "vm1", { memory: path }, new Date(Date.now() - 30_000));
    // What a crash between fsync of the temp manifest and the rename leaves on disk:
    renameSync(crashed.location, crashed.location + ".tmp");
    // A snapshot that was begun and never committed (process died while copying memory):
    const begun = await repo.begin("vm1", { host: "h", includesMemory: true });
    await begun.addFile("memory", path);

    const list = await repo.list("vm1");
    expect(list.map((r) => [r.id, r.complete])).toEqual([
      [begun.id, false],
      [crashed.id, false],
      [old.id, true],
    ]);
    expect(list[1].location).toBe(crashed.location + ".tmp");
    expect((await repo.newestComplete("vm1"))?.id).toBe(old.id);
    await expect(repo.materialize("vm1", crashed.id, join(scratch.dir(), "r"))).rejects.toThrow(SnapshotIncompleteError);
    await expect(repo.materialize("vm1", begun.id, join(scratch.dir(), "r"))).rejects.toThrow(/incomplete/);
    expect((await repo.verify("vm1", crashed.id)).ok).toBe(false);

    // gc refuses to run while a snapshot is being written (shared lock held by `begun`).
    await expect(repo.gc()).rejects.toThrow(RepositoryBusyError);
    await begun.abort();
    expect((await repo.list("vm1")).map((r) => r.id)).toEqual([crashed.id, old.id]);

    // The young temp manifest keeps its chunks through gc; once older than an hour it does not.
    const r1 = await repo.gc();
    expect(r1.protectedTempManifests).toBe(1);
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(crashed.location + ".tmp", hourAgo, hourAgo);
    await repo.gc();
    expect((await repo.verify("vm1", old.id)).ok).toBe(true); // shared chunks still there
  });

  test("commit verifies before the rename: a chunk lost between write and commit leaves the snapshot incomplete", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const p = await repo.begin("vm1", { host: "h", includesMemory: true });
    const f = await p.addFile("memory", writeTemp("m", randomBytes(2 * MiB)));
    rmSync(join(repo.root, "chunks", f.chunks[0].sha256.slice(0, 2), f.chunks[0].sha256));
    await expect(p.commit()).rejects.toThrow(/failed verification.*missing/);
    const [r] = await repo.list("vm1");
    expect(r.complete).toBe(false);
    expect(r.location.endsWith(".manifest.json.tmp")).toBe(true);
    expect(await repo.newestComplete("vm1")).toBeUndefined();
    await p.abort();
    expect(await repo.list("vm1")).toEqual([]);
  });

  test("a file that changes while being read is rejected", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const path = writeTemp("m", randomBytes(48 * MiB));
    const p = await repo.begin("vm1", { host: "h", includesMemory: true });
    const adding = p.addFile("memory", path);
    adding.catch(() => undefined);
    // Wait until the first chunk is stored (reading is under way), then let the "guest" write.
    while (storedChunksOrEmpty(repo.root).size === 0) await new Promise((r) => setImmediate(r));
    appendFileSync(path, randomBytes(PAGE));
    await expect(adding).rejects.toThrow(/changed while it was being read/);
    await p.addFile("domain.xml", writeTemp("x", Buffer.from("<domain/>")));
    await expect(p.commit()).rejects.toThrow(/failed addFile/); // never commit a snapshot missing a file
    await p.abort();
    expect(await repo.list("vm1")).toEqual([]);
    expect(storedChunksOrEmpty(repo.root).size).toBe(0); // the failed snapshot's chunks went with it
  });

  test("delete + gc removes exactly the chunks no remaining manifest references", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const v1 = randomBytes(16 * MiB);
    const path = writeTemp("m", v1);
    const a = await snapshot(repo, "vm1", { memory: path });
    const v2 = Buffer.from(v1);
    randomBytes(PAGE).copy(v2, 10 * PAGE);
    randomBytes(PAGE).copy(v2, 3000 * PAGE);
    writeFileSync(path, v2);
    const b = await snapshot(repo, "vm1", { memory: path });
    const other = await snapshot(repo, "vm2", { memory: writeTemp("m2", randomBytes(2 * MiB)) });

    const manifestA = manifestOf(a.location);
    const refsA = chunkSet(manifestA);
    const refsB = chunkSet(manifestOf(b.location));
    const refsOther = chunkSet(manifestOf(other.location));
    const before = storedChunks(repo.root);
    expect(before).toEqual(new Set([...refsA, ...refsB, ...refsOther]));

    expect(await repo.gc()).toMatchObject({ chunksDeleted: 0 }); // nothing unreferenced yet

    expect(await repo.delete("vm1", a.id)).toBe(true);
    const onlyA = [...refsA].filter((h) => !refsB.has(h) && !refsOther.has(h));
    expect(onlyA.length).toBeGreaterThan(0);
    const res = await repo.gc();
    expect(new Set(res.deleted)).toEqual(new Set(onlyA));
    const sizeOf = new Map(manifestA.files.flatMap((f) => f.chunks.map((c) => [c.sha256, c.size] as const)));
    expect(res.bytesDeleted).toBe(onlyA.reduce((s, h) => s + sizeOf.get(h)!, 0));
    expect(storedChunks(repo.root)).toEqual(new Set([...refsB, ...refsOther]));

    const out = await repo.materialize("vm1", b.id, join(scratch.dir(), "r"));
    expect(readFileSync(out.memory).equals(v2)).toBe(true);
    expect((await repo.verify("vm2", other.id)).ok).toBe(true);
  });

  test("retention: snapshotsToDelete + delete + gc keeps the newest complete ones and clears old debris", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    const now = new Date();
    const hoursAgo = (h: number) => new Date(now.getTime() - h * 3600_000);
    const base = randomBytes(6 * MiB);
    const path = writeTemp("m", base);
    const made = [];
    for (const h of [5, 4, 3, 2, 1]) {
      randomBytes(PAGE).copy(base, h * 100 * PAGE);
      writeFileSync(path, base);
      made.push(await snapshot(repo, "vm1", { memory: path }, hoursAgo(h)));
    }
    // Debris: a snapshot begun 2 h ago whose process died, and one begun just now (maybe still running).
    const dead = await repo.begin("vm1", { host: "h", includesMemory: true, createdAt: hoursAgo(2.5) });
    await dead.addFile("memory", path);
    await dead.commit(); // commit it ...
    renameSync(repo.manifestPath("vm1", dead.id), repo.manifestPath("vm1", dead.id) + ".tmp"); // ... then pretend it crashed
    const youngMarker = await repo.begin("vm1", { host: "h", includesMemory: true, createdAt: hoursAgo(0.1) });

    const records = await repo.list("vm1");
    expect(records).toHaveLength(7);
    const doomed = snapshotsToDelete(records, { keepLast: 2, maxAgeSeconds: 3.5 * 3600 }, now);
    expect(doomed.map((r) => r.id).sort()).toEqual([made[0].id, made[1].id, made[2].id, dead.id].sort());
    for (const r of doomed) await repo.delete(r.vm, r.id);
    await youngMarker.abort();
    await repo.gc();

    const left = await repo.list("vm1");
    expect(left.map((r) => r.id)).toEqual([made[4].id, made[3].id]);
    expect(left.every((r) => r.complete)).toBe(true);
    const live = new Set([...chunkSet(manifestOf(made[4].location)), ...chunkSet(manifestOf(made[3].location))]);
    expect(storedChunks(repo.root)).toEqual(live);
    for (const r of left) expect((await repo.verify("vm1", r.id)).ok).toBe(true);

    // keepLast 1 with everything too old still keeps the newest complete snapshot.
    const again = snapshotsToDelete(left, { keepLast: 1, maxAgeSeconds: 1 }, now);
    expect(again.map((r) => r.id)).toEqual([made[3].id]);
  });

  test("a stale lock left by a dead process does not block gc; a live one does", async () => {
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"));
    await snapshot(repo, "vm1", { memory: writeTemp("m", randomBytes(MiB)) });
    const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
    const deadPid = Number(child.stdout.toString());
    const lockInfo = (pid: number) => JSON.stringify({ kind: "shared", token: "ab12", pid, hostname: hostname(), purpose: "snapshot x", createdAt: new Date().toISOString() });
    writeFileSync(join(repo.root, "locks", "shared-00dead00.lock"), lockInfo(deadPid));
    await expect(repo.gc()).resolves.toMatchObject({ chunksDeleted: 0 });
    expect(readdirSync(join(repo.root, "locks"))).toEqual([]);

    writeFileSync(join(repo.root, "locks", "shared-11111111.lock"), lockInfo(process.pid));
    await expect(repo.gc()).rejects.toThrow(/busy.*snapshot x/);
    rmSync(join(repo.root, "locks", "shared-11111111.lock"));
  });

  // Issue 14: a damaged manifest used to abort gc for the whole repository ("gc aborted, nothing
  // deleted"), which stopped retention. It is now skipped and reported; other garbage still goes.
  test("a truncated manifest: gc skips and reports it, keeps the chunks still listed in it, and still deletes other garbage", async () => {
    const warnings: string[] = [];
    const repo = new SnapshotRepository(join(scratch.dir(), "repo"), { onWarning: (m) => warnings.push(m) });
    const a = await snapshot(repo, "vm1", { memory: writeTemp("m", randomBytes(2 * MiB)) });
    const b = await snapshot(repo, "vm1", { memory: writeTemp("m2", randomBytes(8 * MiB)) });
    const c = await snapshot(repo, "vm2", { memory: writeTemp("m3", randomBytes(2 * MiB)) });
    const refsA = chunkSet(manifestOf(a.location));
    await repo.delete("vm1", a.id);
    const textB = readFileSync(b.location, "utf8");
    const listedB = [...chunkSet(JSON.parse(textB) as Manifest)];
    const cut = textB.indexOf(listedB[2]) + 64; // truncated after the third chunk hash
    writeFileSync(b.location, textB.slice(0, cut));
    const legible = listedB.filter((h) => textB.slice(0, cut).includes(h));
    expect(legible.length).toBeGreaterThanOrEqual(3);
    expect(legible.length).toBeLessThan(listedB.length);

    const res = await repo.gc();
    expect(res.damagedManifests).toEqual([{ path: b.location, problem: expect.stringContaining("not valid JSON") }]);
    expect(warnings.join("\n")).toContain(b.location);
    const stored = storedChunks(repo.root);
    for (const h of legible) expect(stored.has(h)).toBe(true); // what can still be read of b is kept
    for (const h of chunkSet(manifestOf(c.location))) expect(stored.has(h)).toBe(true);
    for (const h of refsA) expect(stored.has(h)).toBe(false); // the deleted snapshot's garbage still goes
    expect(new Set(res.deleted)).toEqual(new Set([...refsA, ...listedB.filter((h) => !legible.includes(h))]));
    expect(res.manifests).toBe(1);
    expect((await repo.verify("vm2", c.id)).ok).toBe(true);
    expect((await repo.list("vm1"))[0]).toMatchObject({ id: b.id, complete: false });
  });
});
