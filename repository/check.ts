/**
 * `repository check [--read-data] [--repair]`, modelled on restic's `check --read-data`:
 * read every manifest; check every chunk they reference (present with the right size, or with
 * readData re-read and rehashed); list the damaged chunks and every snapshot they break.
 *
 * Repair, in order:
 *  1. Rewrite a damaged chunk from a good source: files given as `sources` (e.g. the VM's current
 *     disk or a restored copy) are cut with the repository's chunker and any piece whose hash is a
 *     damaged chunk's hash replaces it. (A later snapshot with the same content heals a chunk by
 *     itself: ChunkStore.put rewrites a damaged copy.)
 *  2. Snapshots still needing a damaged chunk are quarantined: their manifest is renamed to
 *     `<id>.manifest.json.quarantined`, so recovery never chooses them and retention does not
 *     count them as complete; gc keeps their chunks. The damaged chunk file is removed, so no
 *     reader gets its bytes and the next snapshot with that content writes it afresh.
 *  3. Quarantined snapshots whose chunks are all good again (healed since) are verified in full
 *     and renamed back: complete and restorable again.
 */
import { readFile, rename } from "fs/promises";
import { dirname } from "path";
import { chunkFile } from "./chunker";
import { sha256 } from "./chunks";
import { fsyncDir, statIfExists } from "./fsutil";
import { Manifest, MANIFEST_SUFFIX, parseManifest, QUARANTINED_SUFFIX } from "./manifest";
import type { SnapshotRepository } from "./repository";

export interface CheckOptions {
  /** Re-read and rehash every chunk (slow: reads the whole repository). Default: size check only. */
  readData?: boolean;
  repair?: boolean;
  /** Files to take good copies of damaged chunks from (repair only). */
  sources?: string[];
  /** How long to wait for the lock (repair waits for in-progress snapshots). Default 60 s. */
  lockWaitMs?: number;
}

export interface CheckedChunk {
  sha256: string;
  size: number;
  problem: string;
  /** Snapshots ("vm/id") that need this chunk. */
  snapshots: string[];
}

export interface CheckReport {
  /** Complete + quarantined manifests read. */
  manifests: number;
  chunksChecked: number;
  bytesRead: number;
  readData: boolean;
  /** Manifests that cannot be parsed (their snapshot is not restorable; retention removes it). */
  damagedManifests: Array<{ path: string; problem: string }>;
  /** Damaged chunks needed by complete (not quarantined) snapshots, as found. */
  damagedChunks: CheckedChunk[];
  /** Complete snapshots that need a damaged chunk, as found ("vm/id"). */
  affectedSnapshots: string[];
  /** Snapshots quarantined before this run, with what is wrong with them now. */
  alreadyQuarantined: Array<{ snapshot: string; problems: string[] }>;
  /** --repair: chunks rewritten from a source. */
  repaired: Array<{ sha256: string; source: string }>;
  /** --repair: snapshots quarantined by this run. */
  quarantined: string[];
  /** --repair: quarantined snapshots whose chunks are all good again, made complete again. */
  restored: string[];
  /** True when every complete snapshot's chunks are (now) good and no manifest is damaged. */
  ok: boolean;
  /** True when damage was found and not all of it was repaired from a source. */
  unrepairedDamage: boolean;
}

interface ManifestEntry {
  snapshot: string;
  path: string;
  quarantined: boolean;
  manifest: Manifest;
}

export async function checkRepository(repo: SnapshotRepository, opts: CheckOptions = {}): Promise<CheckReport> {
  await repo.ready();
  // Repair rewrites, removes and renames under the exclusive lock: no writer can be
  // deduplicating against a chunk while it is replaced or removed. A read-only check only needs
  // gc to keep out.
  const release = await repo.holdLock(opts.repair ? "exclusive" : "shared", `check${opts.repair ? " --repair" : ""}`, opts.lockWaitMs);
  try {
    return await runCheck(repo, opts);
  } finally {
    await release();
  }
}

async function runCheck(repo: SnapshotRepository, opts: CheckOptions): Promise<CheckReport> {
  const report: CheckReport = {
    manifests: 0,
    chunksChecked: 0,
    bytesRead: 0,
    readData: !!opts.readData,
    damagedManifests: [],
    damagedChunks: [],
    affectedSnapshots: [],
    alreadyQuarantined: [],
    repaired: [],
    quarantined: [],
    restored: [],
    ok: true,
    unrepairedDamage: false,
  };

  const entries: ManifestEntry[] = [];
  for (const f of await repo.manifestFiles()) {
    if (f.kind === "tmp") continue;
    try {
      const manifest = parseManifest(await readFile(f.path, "utf8"), f.path);
      entries.push({ snapshot: `${f.vm}/${f.id}`, path: f.path, quarantined: f.kind === "quarantined", manifest });
    } catch (e) {
      report.damagedManifests.push({ path: f.path, problem: (e as Error).message });
    }
  }
  report.manifests = entries.length;

  // Every referenced chunk once, with the snapshots that need it.
  const refs = new Map<string, { size: number; users: Set<string>; activeUsers: Set<string> }>();
  for (const e of entries) {
    for (const file of e.manifest.files) {
      for (const c of file.chunks) {
        const r = refs.get(c.sha256) ?? { size: c.size, users: new Set<string>(), activeUsers: new Set<string>() };
        r.users.add(e.snapshot);
        if (!e.quarantined) r.activeUsers.add(e.snapshot);
        refs.set(c.sha256, r);
      }
    }
  }

  const bad = new Map<string, string>();
  for (const [sha, r] of refs) {
    report.chunksChecked++;
    if (opts.readData) {
      const res = await repo.chunks.check(sha, r.size);
      if (res.ok) report.bytesRead += res.size;
      else bad.set(sha, res.reason === "missing" ? "missing" : res.detail);
    } else {
      const st = await statIfExists(repo.chunks.pathOf(sha));
      if (!st) bad.set(sha, "missing");
      else if (st.size !== r.size) bad.set(sha, `has ${st.size} bytes, expected ${r.size}`);
    }
  }

  for (const [sha, problem] of bad) {
    const r = refs.get(sha)!;
    if (r.activeUsers.size === 0) continue; // only quarantined snapshots need it: known damage
    report.damagedChunks.push({ sha256: sha, size: r.size, problem, snapshots: [...r.users].sort() });
  }
  report.affectedSnapshots = [...new Set(report.damagedChunks.flatMap((c) => [...refs.get(c.sha256)!.activeUsers]))].sort();
  for (const e of entries.filter((x) => x.quarantined)) {
    const problems = chunkProblems(e.manifest, bad);
    report.alreadyQuarantined.push({ snapshot: e.snapshot, problems });
  }

  if (opts.repair) {
    // 1. Good copies from the sources.
    if (bad.size && opts.sources?.length) {
      const params = await repo.chunkerParams();
      for (const source of opts.sources) {
        for await (const piece of chunkFile(source, { params })) {
          const sha = sha256(piece.data);
          if (!bad.has(sha) || piece.length !== refs.get(sha)!.size) continue;
          await repo.chunks.put(piece.data, sha);
          bad.delete(sha);
          report.repaired.push({ sha256: sha, source: `${source} at offset ${piece.offset}` });
        }
      }
      await repo.chunks.flush();
    }
    // 2. Quarantine what still needs a damaged chunk; drop the damaged copies.
    for (const e of entries) {
      if (e.quarantined || chunkProblems(e.manifest, bad).length === 0) continue;
      await rename(e.path, e.path.slice(0, -MANIFEST_SUFFIX.length) + QUARANTINED_SUFFIX);
      await fsyncDir(dirname(e.path));
      e.quarantined = true;
      report.quarantined.push(e.snapshot);
    }
    for (const sha of bad.keys()) await repo.chunks.remove(sha);
    // 3. Quarantined snapshots that are whole again (verified in full, whatever readData says).
    for (const e of entries) {
      if (!e.quarantined || report.quarantined.includes(e.snapshot) || chunkProblems(e.manifest, bad).length) continue;
      if ((await repo.checkManifestData(e.manifest)).length) continue;
      const final = e.path.slice(0, -QUARANTINED_SUFFIX.length) + MANIFEST_SUFFIX;
      await rename(e.path, final);
      await fsyncDir(dirname(final));
      report.restored.push(e.snapshot);
    }
  }

  const repairedAll = report.damagedChunks.every((c) => report.repaired.some((r) => r.sha256 === c.sha256));
  report.unrepairedDamage = report.damagedManifests.length > 0 || !repairedAll;
  report.ok = report.damagedManifests.length === 0 && (report.damagedChunks.length === 0 || (!!opts.repair && repairedAll));
  return report;
}

function chunkProblems(m: Manifest, bad: Map<string, string>): string[] {
  const out: string[] = [];
  for (const f of m.files) for (const c of f.chunks) if (bad.has(c.sha256)) out.push(`file ${JSON.stringify(f.role)}: chunk ${c.sha256} ${bad.get(c.sha256)}`);
  return [...new Set(out)];
}
