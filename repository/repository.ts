/**
 * The snapshot repository: a directory on shared storage holding chunked, deduplicated,
 * verified snapshots (memory + disks + domain XML) of many VMs.
 *
 *   <root>/repository.json              format version + chunker parameters
 *   <root>/chunks/ab/abcdef...          content-addressed chunks (chunks.ts)
 *   <root>/vms/<vm>/<id>.pending.json   begun, not committed
 *   <root>/vms/<vm>/<id>.manifest.json.tmp  written, being verified
 *   <root>/vms/<vm>/<id>.manifest.json  complete (verified; the rename is the commit point)
 *   <root>/vms/<vm>/<id>.manifest.json.quarantined  set aside by check --repair (check.ts)
 *   <root>/locks/                       shared/exclusive lock files (lock.ts), one writer per VM
 *                                       (vmWriterLock.ts)
 *
 * Differential by construction: a snapshot's files are cut into content-defined chunks and only
 * chunks not already stored are written, yet every manifest lists all its chunks, so any
 * snapshot is restored on its own (no chain of differences to replay) and deleting one snapshot
 * never invalidates another. gc() removes chunks no manifest references.
 */
import { createHash } from "crypto";
import { open, readdir, readFile, rename, stat } from "fs/promises";
import { join, resolve } from "path";
import { hostname } from "os";
import type { SnapshotRecord } from "../core/model";
import { pidAlive } from "../lib/pid";
import { chunkFile, ChunkerParams, DEFAULT_CHUNKER, GEAR_ID, validateParams } from "./chunker";
import { ChunkStore, sha256 } from "./chunks";
import { fsyncDir, isErrno, mkdirp, randomHex, statIfExists, unlinkIfExists, writeFileSynced } from "./fsutil";
import { LockHandle, LockManager, RepositoryBusyError } from "./lock";
import { asRepositoryFull } from "./space";
import { removeDeadPendingMarkers, WriterContext } from "./staleMarkers";
import { FileVmWriterLock, VmWriterLease, VmWriterLock } from "./vmWriterLock";
import {
  assertRole,
  assertSnapshotId,
  assertVmName,
  ChunkRef,
  fileNameForRole,
  incompleteRecord,
  isSnapshotId,
  Manifest,
  MANIFEST_FORMAT,
  MANIFEST_SUFFIX,
  MANIFEST_VERSION,
  ManifestFile,
  manifestToRecord,
  newSnapshotId,
  parseManifest,
  parsePending,
  PENDING_FORMAT,
  PENDING_SUFFIX,
  PendingMarker,
  QUARANTINED_SUFFIX,
  TMP_MANIFEST_SUFFIX,
} from "./manifest";

export class SnapshotNotFoundError extends Error {
  constructor(vm: string, id: string) {
    super(`snapshot ${vm}/${id} does not exist`);
    this.name = "SnapshotNotFoundError";
  }
}

export class SnapshotIncompleteError extends Error {
  constructor(vm: string, id: string) {
    super(`snapshot ${vm}/${id} is incomplete (never committed and verified); it cannot be restored`);
    this.name = "SnapshotIncompleteError";
  }
}

export class SnapshotCorruptError extends Error {
  constructor(message: string, readonly problems: string[]) {
    super(message);
    this.name = "SnapshotCorruptError";
  }
}

export interface RepositoryOptions {
  /** Chunker parameters for a new repository (an existing one keeps those in repository.json). */
  chunker?: ChunkerParams;
  /** A lock whose holder stopped refreshing it this long ago is stale. Default 10 min. */
  lockStaleMs?: number;
  /** How long begin/verify/materialize wait for a running gc. Default 60 s. */
  lockWaitMs?: number;
  /** gc keeps chunks of temp manifests younger than this, and temp chunk files. Default 1 h. */
  incompleteGraceMs?: number;
  /** How long begin() waits for another writer of the same VM (when not given a lease). Default 60 s. */
  writerWaitMs?: number;
  /** Problems that do not change an operation's result (e.g. cleanup after a commit). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

export interface BeginMeta {
  /** Host the VM runs on. */
  host: string;
  includesMemory: boolean;
  /** The consistent moment the snapshot captures; default now. Also determines the id. */
  createdAt?: Date | string;
  /** When the take started, for durationMs; default the begin() call. */
  startedAt?: Date;
  pauseMs?: number;
  /**
   * The VM writer lease the caller already holds for the whole take (acquireWriter()); begin()
   * then does not take one, and commit/abort do not release it. Without it begin() acquires the
   * lease itself and commit()/abort() release it.
   */
  writer?: VmWriterLease;
}

/** A chunk that fails its check, and every snapshot ("vm/id") that needs it. */
export interface DamagedChunk {
  sha256: string;
  problem: string;
  snapshots: string[];
}

export interface VerifyResult {
  ok: boolean;
  problems: string[];
  /** When not ok: the damaged chunks and every snapshot in the repository they also break. */
  damagedChunks?: DamagedChunk[];
}

export interface GcOptions {
  /** Wait this long for in-progress snapshots to finish; default 0 (fail at once with RepositoryBusyError). */
  waitMs?: number;
  /** Report what would be removed without removing anything. */
  dryRun?: boolean;
}

export interface GcResult {
  manifests: number;
  /** Temp manifests young enough that their chunks were kept. */
  protectedTempManifests: number;
  chunksScanned: number;
  chunksKept: number;
  chunksDeleted: number;
  bytesDeleted: number;
  /** Leftover temp chunk files older than the grace period that were removed. */
  tempFilesRemoved: number;
  deleted: string[];
  /** Manifests that could not be read: skipped (the chunk hashes still legible in them were kept). */
  damagedManifests: Array<{ path: string; problem: string }>;
  /** Pending markers of takes whose writer is dead, removed. */
  staleMarkersRemoved: string[];
}

/** The mark phase of gc: every chunk some manifest (complete, quarantined, young temp) needs. */
interface LiveSet {
  live: Set<string>;
  manifests: number;
  protectedTemps: number;
  damaged: Array<{ path: string; problem: string }>;
}

interface RepoConfig {
  format: "protected-vm.repository";
  version: 1;
  chunker: ChunkerParams & { gear: string };
  createdAt: string;
}

export class SnapshotRepository {
  readonly root: string;
  readonly chunks: ChunkStore;
  private readonly locks: LockManager;
  readonly writers: VmWriterLock;
  private readonly opts: Required<Omit<RepositoryOptions, "chunker">>;
  private chunker: ChunkerParams;
  private readyP?: Promise<void>;

  constructor(rootDir: string, opts: RepositoryOptions = {}) {
    this.root = resolve(rootDir);
    this.chunker = opts.chunker ?? { ...DEFAULT_CHUNKER };
    validateParams(this.chunker);
    this.chunks = new ChunkStore(join(this.root, "chunks"));
    this.opts = {
      lockStaleMs: opts.lockStaleMs ?? 10 * 60 * 1000,
      lockWaitMs: opts.lockWaitMs ?? 60_000,
      incompleteGraceMs: opts.incompleteGraceMs ?? 60 * 60 * 1000,
      writerWaitMs: opts.writerWaitMs ?? 60_000,
      onWarning: opts.onWarning ?? ((m: string) => process.emitWarning(m, "ProtectedVmRepositoryWarning")),
    };
    this.locks = new LockManager(join(this.root, "locks"), { staleMs: this.opts.lockStaleMs });
    this.writers = new FileVmWriterLock(this.locks);
  }

  /**
   * Become the one snapshot writer of vm for a whole take (hypervisor steps included); pass the
   * lease to begin(). Waits up to waitMs (default writerWaitMs), then throws VmWriterBusyError
   * naming the holder. A lease of a dead process is taken over.
   */
  async acquireWriter(vm: string, purpose: string, opts: { waitMs?: number } = {}): Promise<VmWriterLease> {
    assertVmName(vm);
    await this.ready();
    return this.writers.acquire(vm, purpose, { waitMs: opts.waitMs ?? this.opts.writerWaitMs });
  }

  /** Hold the repository lock of that kind (for tools such as check); returns its release. */
  async holdLock(kind: "shared" | "exclusive", purpose: string, waitMs = this.opts.lockWaitMs): Promise<() => Promise<void>> {
    await this.ready();
    const h = kind === "shared" ? await this.locks.acquireShared(purpose, { waitMs }) : await this.locks.acquireExclusive(purpose, { waitMs });
    return () => h.release();
  }

  /** @internal */
  warn(message: string): void {
    try {
      this.opts.onWarning(message);
    } catch {
      /* a failing logger must not fail the operation */
    }
  }

  /** @internal */
  writerContext(): WriterContext {
    return { hostname: hostname(), now: Date.now(), pidAlive, foreignGraceMs: this.opts.incompleteGraceMs };
  }

  /** Chunker parameters in effect (those recorded in repository.json once opened). */
  async chunkerParams(): Promise<ChunkerParams> {
    await this.ready();
    return { ...this.chunker };
  }

  // ---------------------------------------------------------------- writing

  /** Start a snapshot of vm. Holds a shared lock (so gc waits) until commit() or abort(). */
  async begin(vm: string, meta: BeginMeta): Promise<PendingSnapshot> {
    assertVmName(vm);
    if (typeof meta.host !== "string") throw new Error("begin: meta.host is required");
    await this.ready();
    if (meta.createdAt !== undefined && Number.isNaN(new Date(meta.createdAt).getTime())) throw new Error(`begin: bad createdAt ${String(meta.createdAt)}`);
    const ownLease = meta.writer === undefined;
    if (meta.writer && meta.writer.vm !== vm) throw new Error(`begin: the writer lease is for ${meta.writer.vm}, not ${vm}`);
    const lease = meta.writer ?? (await this.writers.acquire(vm, `snapshot of ${vm} (pid ${process.pid})`, { waitMs: this.opts.writerWaitMs }));
    // Times are taken once we are the writer (a begin that waited captures the later moment).
    const startedAt = meta.startedAt ?? new Date();
    const createdAt = meta.createdAt === undefined ? new Date() : new Date(meta.createdAt);
    const id = newSnapshotId(createdAt);
    let lock: LockHandle;
    try {
      lock = await this.locks.acquireShared(`snapshot ${vm}/${id}`, { waitMs: this.opts.lockWaitMs });
    } catch (e) {
      if (ownLease) await lease.release();
      throw e;
    }
    try {
      const dir = this.vmDir(vm);
      await mkdirp(dir);
      // We are the VM's one writer: markers of earlier takes whose writer died are debris.
      await removeDeadPendingMarkers(dir, this.writerContext()).catch((e: Error) => this.warn(`could not clear stale pending markers of ${vm}: ${e.message}`));
      const marker: PendingMarker = {
        format: PENDING_FORMAT,
        version: MANIFEST_VERSION,
        id,
        vm,
        host: meta.host,
        createdAt: createdAt.toISOString(),
        includesMemory: meta.includesMemory,
        ...(meta.pauseMs !== undefined ? { pauseMs: meta.pauseMs } : {}),
        startedAt: startedAt.toISOString(),
        pid: process.pid,
        hostname: hostname(),
      };
      const markerText = JSON.stringify(marker, null, 2) + "\n";
      try {
        await writeFileSynced(join(dir, id + PENDING_SUFFIX), markerText, "wx");
        await fsyncDir(dir);
      } catch (e) {
        throw await asRepositoryFull(e, this.root, Buffer.byteLength(markerText), `pending marker of ${vm}/${id}`);
      }
      return new PendingSnapshot(this, marker, lock, startedAt, ownLease ? lease : undefined);
    } catch (e) {
      await lock.release();
      if (ownLease) await lease.release();
      throw e;
    }
  }

  // ---------------------------------------------------------------- reading

  /** Every snapshot of vm, newest first, including incomplete ones (complete: false). */
  async list(vm: string): Promise<SnapshotRecord[]> {
    assertVmName(vm);
    const dir = this.vmDir(vm);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw e;
    }
    const ids = new Map<string, SnapshotFiles>();
    for (const n of names) {
      for (const [suffix, key] of [[MANIFEST_SUFFIX, "final"], [TMP_MANIFEST_SUFFIX, "tmp"], [PENDING_SUFFIX, "pending"], [QUARANTINED_SUFFIX, "quarantined"]] as const) {
        if (!n.endsWith(suffix)) continue;
        const id = n.slice(0, -suffix.length);
        if (!isSnapshotId(id)) continue;
        ids.set(id, { ...ids.get(id), [key]: true });
      }
    }
    const out: SnapshotRecord[] = [];
    for (const [id, has] of ids) {
      const r = await this.recordFor(vm, id, has);
      if (r) out.push(r);
    }
    return out.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  }

  /** VMs that have at least one snapshot (complete or not). */
  async listVms(): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(join(this.root, "vms"));
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw e;
    }
    const out: string[] = [];
    for (const n of names.sort()) {
      try {
        assertVmName(n);
      } catch {
        continue;
      }
      if ((await this.list(n)).length > 0) out.push(n);
    }
    return out;
  }

  async newestComplete(vm: string): Promise<SnapshotRecord | undefined> {
    return (await this.list(vm)).find((r) => r.complete);
  }

  async get(vm: string, id: string): Promise<SnapshotRecord | undefined> {
    assertVmName(vm);
    assertSnapshotId(id);
    const dir = this.vmDir(vm);
    const has = {
      final: !!(await statIfExists(join(dir, id + MANIFEST_SUFFIX))),
      tmp: !!(await statIfExists(join(dir, id + TMP_MANIFEST_SUFFIX))),
      pending: !!(await statIfExists(join(dir, id + PENDING_SUFFIX))),
      quarantined: !!(await statIfExists(join(dir, id + QUARANTINED_SUFFIX))),
    };
    return this.recordFor(vm, id, has);
  }

  /** The manifest of a complete snapshot; throws SnapshotIncompleteError / SnapshotNotFoundError. */
  async readManifest(vm: string, id: string): Promise<Manifest> {
    assertVmName(vm);
    assertSnapshotId(id);
    const path = this.manifestPath(vm, id);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
      const r = await this.get(vm, id);
      if (r) throw new SnapshotIncompleteError(vm, id);
      throw new SnapshotNotFoundError(vm, id);
    }
    let m: Manifest;
    try {
      m = parseManifest(text, path);
    } catch (e) {
      throw new SnapshotCorruptError((e as Error).message, [(e as Error).message]);
    }
    if (m.id !== id || m.vm !== vm) {
      const msg = `${path}: manifest is for ${m.vm}/${m.id}`;
      throw new SnapshotCorruptError(msg, [msg]);
    }
    return m;
  }

  manifestPath(vm: string, id: string): string {
    return join(this.vmDir(vm), id + MANIFEST_SUFFIX);
  }

  // ---------------------------------------------------------------- checking and restoring

  /** Re-read every chunk of the snapshot and check chunk and whole-file hashes. */
  async verify(vm: string, id: string): Promise<VerifyResult> {
    let m: Manifest;
    try {
      m = await this.readManifest(vm, id);
    } catch (e) {
      if (e instanceof SnapshotCorruptError) return { ok: false, problems: e.problems };
      if (e instanceof SnapshotIncompleteError || e instanceof SnapshotNotFoundError) return { ok: false, problems: [e.message] };
      throw e;
    }
    const lock = await this.locks.acquireShared(`verify ${vm}/${id}`, { waitMs: this.opts.lockWaitMs });
    try {
      const { problems, badChunks } = await this.inspectManifestData(m);
      if (problems.length === 0) return { ok: true, problems };
      // A chunk is shared by every snapshot with the same content: name all it breaks.
      const users = await this.snapshotsUsing(new Set(badChunks.keys()));
      const damagedChunks = [...badChunks].map(([sha, problem]) => ({ sha256: sha, problem, snapshots: users.get(sha) ?? [`${vm}/${id}`] }));
      return { ok: false, problems, damagedChunks };
    } finally {
      await lock.release();
    }
  }

  /** For each hash: every snapshot ("vm/id", complete or quarantined) whose manifest lists it. */
  async snapshotsUsing(hashes: Set<string>): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (hashes.size === 0) return out;
    for (const entry of await this.manifestFiles()) {
      if (entry.kind === "tmp") continue;
      let m: Manifest;
      try {
        m = parseManifest(await readFile(entry.path, "utf8"), entry.path);
      } catch {
        continue;
      }
      const seen = new Set<string>();
      for (const f of m.files) {
        for (const c of f.chunks) {
          if (!hashes.has(c.sha256) || seen.has(c.sha256)) continue;
          seen.add(c.sha256);
          out.set(c.sha256, [...(out.get(c.sha256) ?? []), `${m.vm}/${m.id}`]);
        }
      }
    }
    for (const list of out.values()) list.sort();
    return out;
  }

  /** Every manifest file in the repository: complete, quarantined and temp ones. */
  async manifestFiles(): Promise<Array<{ vm: string; id: string; path: string; kind: "final" | "quarantined" | "tmp"; mtimeMs: number }>> {
    const out: Array<{ vm: string; id: string; path: string; kind: "final" | "quarantined" | "tmp"; mtimeMs: number }> = [];
    let vmNames: string[] = [];
    try {
      vmNames = await readdir(join(this.root, "vms"));
    } catch (e) {
      if (!isErrno(e, "ENOENT")) throw e;
    }
    for (const vm of vmNames.sort()) {
      const dir = join(this.root, "vms", vm);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (e) {
        if (isErrno(e, "ENOTDIR", "ENOENT")) continue;
        throw e;
      }
      for (const n of names.sort()) {
        for (const [suffix, kind] of [[MANIFEST_SUFFIX, "final"], [QUARANTINED_SUFFIX, "quarantined"], [TMP_MANIFEST_SUFFIX, "tmp"]] as const) {
          if (!n.endsWith(suffix) || !isSnapshotId(n.slice(0, -suffix.length))) continue;
          const st = await statIfExists(join(dir, n));
          if (st) out.push({ vm, id: n.slice(0, -suffix.length), path: join(dir, n), kind, mtimeMs: st.mtimeMs });
        }
      }
    }
    return out;
  }

  /**
   * Rebuild every file of a complete snapshot into destDir, checking every chunk and each whole
   * file while writing. Files are written under temp names and renamed only when all of them are
   * good, so a refused restore leaves nothing behind. Returns role -> path.
   */
  async materialize(vm: string, id: string, destDir: string): Promise<Record<string, string>> {
    const m = await this.readManifest(vm, id);
    const lock = await this.locks.acquireShared(`materialize ${vm}/${id}`, { waitMs: this.opts.lockWaitMs });
    const temps: Array<{ tmp: string; final: string; role: string }> = [];
    try {
      // Fail fast (before writing gigabytes) when a chunk is missing or has the wrong size.
      const missing: string[] = [];
      for (const f of m.files) {
        for (let i = 0; i < f.chunks.length; i++) {
          const c = f.chunks[i];
          const st = await statIfExists(this.chunks.pathOf(c.sha256));
          if (!st) missing.push(`${describeChunk(f, i)} is missing`);
          else if (st.size !== c.size) missing.push(`${describeChunk(f, i)} has ${st.size} bytes, expected ${c.size}`);
        }
      }
      if (missing.length) throw corrupt(vm, id, missing);

      await mkdirp(destDir);
      for (const f of m.files) {
        const final = join(destDir, f.name);
        const tmp = join(destDir, `.${f.name}.partial-${randomHex(4)}`);
        temps.push({ tmp, final, role: f.role });
        const fh = await open(tmp, "wx", 0o600);
        try {
          const whole = createHash("sha256");
          let offset = 0;
          for (let i = 0; i < f.chunks.length; i++) {
            const c = f.chunks[i];
            let data: Buffer;
            try {
              data = await this.chunks.readVerified(c.sha256, c.size);
            } catch (e) {
              throw corrupt(vm, id, [`${describeChunk(f, i)}: ${(e as Error).message}`]);
            }
            whole.update(data);
            await writeAll(fh, data, offset);
            offset += data.length;
          }
          const digest = whole.digest("hex");
          if (offset !== f.size || digest !== f.sha256) {
            throw corrupt(vm, id, [`file ${JSON.stringify(f.role)}: rebuilt file has ${offset} bytes / sha256 ${digest}, manifest says ${f.size} / ${f.sha256}`]);
          }
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      const out: Record<string, string> = {};
      for (const t of temps) {
        await rename(t.tmp, t.final);
        out[t.role] = t.final;
      }
      await fsyncDir(destDir);
      return out;
    } catch (e) {
      for (const t of temps) await unlinkIfExists(t.tmp).catch(() => false);
      throw e;
    } finally {
      await lock.release();
    }
  }

  // ---------------------------------------------------------------- deleting

  /** Remove a snapshot's manifest (and any temp state). Its chunks go at the next gc(). */
  async delete(vm: string, id: string): Promise<boolean> {
    assertVmName(vm);
    assertSnapshotId(id);
    const dir = this.vmDir(vm);
    let any = false;
    // The complete manifest first: from this instant the snapshot is no longer restorable.
    for (const suffix of [MANIFEST_SUFFIX, QUARANTINED_SUFFIX, TMP_MANIFEST_SUFFIX, PENDING_SUFFIX]) {
      if (await unlinkIfExists(join(dir, id + suffix))) any = true;
    }
    if (any) await fsyncDir(dir);
    return any;
  }

  /**
   * Mark and sweep: delete every chunk that no complete or quarantined manifest (and no temp
   * manifest younger than incompleteGraceMs) references. Takes the exclusive lock, so it never
   * runs while a snapshot is being written, verified or materialized; throws RepositoryBusyError
   * then. A manifest that cannot be read is skipped and reported in damagedManifests (the chunk
   * hashes still legible in its text are kept) - one damaged snapshot must not stop retention for
   * the whole repository. Also removes pending markers whose writer is dead.
   */
  async gc(opts: GcOptions = {}): Promise<GcResult> {
    await this.ready();
    const lock = await this.locks.acquireExclusive("gc", { waitMs: opts.waitMs ?? 0 });
    try {
      const now = Date.now();
      const { live, manifests, protectedTemps, damaged } = await this.markLive(now);
      const { chunks, temps } = await this.chunks.scan();
      const result: GcResult = {
        manifests,
        protectedTempManifests: protectedTemps,
        chunksScanned: chunks.length,
        chunksKept: 0,
        chunksDeleted: 0,
        bytesDeleted: 0,
        tempFilesRemoved: 0,
        deleted: [],
        damagedManifests: damaged,
        staleMarkersRemoved: [],
      };
      for (const c of chunks) {
        if (live.has(c.sha256)) {
          result.chunksKept++;
          continue;
        }
        if (!opts.dryRun) await this.chunks.remove(c.sha256);
        result.chunksDeleted++;
        result.bytesDeleted += c.size;
        result.deleted.push(c.sha256);
      }
      for (const t of temps) {
        if (now - t.mtimeMs < this.opts.incompleteGraceMs) continue;
        if (!opts.dryRun) await unlinkIfExists(t.path);
        result.tempFilesRemoved++;
      }
      if (!opts.dryRun) {
        const vms = new Set((await this.vmDirNames()).map((vm) => this.vmDir(vm)));
        for (const dir of vms) result.staleMarkersRemoved.push(...(await removeDeadPendingMarkers(dir, this.writerContext())));
        await this.locks.clearStaleOwners();
      }
      for (const d of damaged) this.warn(`gc skipped a damaged manifest: ${d.path}: ${d.problem}`);
      return result;
    } finally {
      await lock.release();
    }
  }

  /**
   * Remove those of `hashes` that no manifest references, under the exclusive lock (so no
   * writer can be deduplicating against them meanwhile). Used by abort() for the chunks a failed
   * snapshot created. When other snapshots are in progress the chunks are left for gc.
   */
  async removeChunksIfUnreferenced(hashes: Iterable<string>, waitMs = 2000): Promise<{ removed: number; bytes: number; leftForGc: number }> {
    const wanted = [...new Set(hashes)];
    if (wanted.length === 0) return { removed: 0, bytes: 0, leftForGc: 0 };
    let lock: LockHandle;
    try {
      lock = await this.locks.acquireExclusive("remove chunks of a failed snapshot", { waitMs });
    } catch (e) {
      if (e instanceof RepositoryBusyError) return { removed: 0, bytes: 0, leftForGc: wanted.length };
      throw e;
    }
    try {
      const { live } = await this.markLive(Date.now());
      let removed = 0;
      let bytes = 0;
      for (const h of wanted) {
        if (live.has(h)) continue;
        const st = await statIfExists(this.chunks.pathOf(h));
        if (await this.chunks.remove(h)) {
          removed++;
          bytes += st?.size ?? 0;
        }
      }
      if (removed) await fsyncDir(this.chunks.dir).catch(() => undefined);
      return { removed, bytes, leftForGc: 0 };
    } finally {
      await lock.release();
    }
  }

  /** @internal The mark phase; call under the exclusive lock. */
  async markLive(now: number): Promise<LiveSet> {
    const out: LiveSet = { live: new Set(), manifests: 0, protectedTemps: 0, damaged: [] };
    for (const entry of await this.manifestFiles()) {
      if (entry.kind === "tmp" && now - entry.mtimeMs >= this.opts.incompleteGraceMs) continue;
      let text: string;
      try {
        text = await readFile(entry.path, "utf8");
      } catch (e) {
        if (isErrno(e, "ENOENT")) continue; // deleted meanwhile
        throw e;
      }
      let m: Manifest;
      try {
        m = parseManifest(text, entry.path);
      } catch (e) {
        // Keep what is still legible: a truncated manifest lists its first chunks intact.
        for (const h of text.match(/[0-9a-f]{64}/g) ?? []) out.live.add(h);
        out.damaged.push({ path: entry.path, problem: (e as Error).message });
        continue;
      }
      for (const f of m.files) for (const c of f.chunks) out.live.add(c.sha256);
      if (entry.kind === "tmp") out.protectedTemps++;
      else out.manifests++;
    }
    return out;
  }

  private async vmDirNames(): Promise<string[]> {
    try {
      return (await readdir(join(this.root, "vms"))).sort();
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw e;
    }
  }

  // ---------------------------------------------------------------- internals

  /** @internal used by PendingSnapshot */
  vmDir(vm: string): string {
    return join(this.root, "vms", vm);
  }

  /** @internal */
  get params(): ChunkerParams {
    return this.chunker;
  }

  /** @internal Re-read every chunk of m; returns problems naming file and chunk. */
  async checkManifestData(m: Manifest): Promise<string[]> {
    return (await this.inspectManifestData(m)).problems;
  }

  /** @internal As checkManifestData, plus each bad chunk's hash -> what is wrong with it. */
  async inspectManifestData(m: Manifest): Promise<{ problems: string[]; badChunks: Map<string, string> }> {
    const problems: string[] = [];
    const badChunks = new Map<string, string>();
    for (const f of m.files) {
      const whole = createHash("sha256");
      let fileOk = true;
      for (let i = 0; i < f.chunks.length; i++) {
        const c = f.chunks[i];
        let data: Buffer;
        try {
          data = await this.chunks.read(c.sha256);
        } catch (e) {
          if (!isErrno(e, "ENOENT")) throw e;
          problems.push(`${describeChunk(f, i)} is missing`);
          badChunks.set(c.sha256, "missing");
          fileOk = false;
          continue;
        }
        if (data.length !== c.size) {
          problems.push(`${describeChunk(f, i)} has ${data.length} bytes, expected ${c.size}`);
          badChunks.set(c.sha256, `has ${data.length} bytes, expected ${c.size}`);
          fileOk = false;
          continue;
        }
        const h = sha256(data);
        if (h !== c.sha256) {
          problems.push(`${describeChunk(f, i)} is corrupt (content hashes to ${h})`);
          badChunks.set(c.sha256, `corrupt (content hashes to ${h})`);
          fileOk = false;
          continue;
        }
        whole.update(data);
      }
      if (fileOk) {
        const d = whole.digest("hex");
        if (d !== f.sha256) problems.push(`file ${JSON.stringify(f.role)}: whole-file sha256 is ${d}, manifest says ${f.sha256}`);
      }
    }
    return { problems, badChunks };
  }

  /** @internal */
  async ready(): Promise<void> {
    this.readyP ??= this.init();
    return this.readyP;
  }

  private async init(): Promise<void> {
    await mkdirp(join(this.root, "chunks"));
    await mkdirp(join(this.root, "vms"));
    await mkdirp(join(this.root, "locks"));
    const path = join(this.root, "repository.json");
    const fresh: RepoConfig = {
      format: "protected-vm.repository",
      version: 1,
      chunker: { ...this.chunker, gear: GEAR_ID },
      createdAt: new Date().toISOString(),
    };
    try {
      await writeFileSynced(path, JSON.stringify(fresh, null, 2) + "\n", "wx");
      await fsyncDir(this.root);
      return;
    } catch (e) {
      if (!isErrno(e, "EEXIST")) throw e;
    }
    let cfg: RepoConfig | undefined;
    for (let attempt = 0; attempt < 20 && !cfg; attempt++) {
      try {
        cfg = JSON.parse(await readFile(path, "utf8")) as RepoConfig;
      } catch {
        await new Promise((r) => setTimeout(r, 50)); // being written by another process
      }
    }
    if (!cfg || cfg.format !== "protected-vm.repository") throw new Error(`${path} is not a protected-vm repository config`);
    if (cfg.version !== 1) throw new Error(`${path}: unsupported repository version ${cfg.version}`);
    const { minSize, avgSize, maxSize } = cfg.chunker;
    this.chunker = { minSize, avgSize, maxSize };
    validateParams(this.chunker);
  }

  private async recordFor(vm: string, id: string, has: SnapshotFiles): Promise<SnapshotRecord | undefined> {
    const dir = this.vmDir(vm);
    const pendingPath = join(dir, id + PENDING_SUFFIX);
    if (has.final) {
      const path = join(dir, id + MANIFEST_SUFFIX);
      try {
        const m = parseManifest(await readFile(path, "utf8"), path);
        if (m.id === id && m.vm === vm) return manifestToRecord(m, path, true);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) return incompleteRecord(vm, id, path); // unreadable: never restorable
      }
    }
    if (has.quarantined) {
      // Was complete; a chunk it needs is damaged: listed, never restorable, until check --repair restores it.
      const path = join(dir, id + QUARANTINED_SUFFIX);
      try {
        const m = parseManifest(await readFile(path, "utf8"), path);
        return manifestToRecord(m, path, false);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) return incompleteRecord(vm, id, path);
      }
    }
    if (has.tmp) {
      const path = join(dir, id + TMP_MANIFEST_SUFFIX);
      try {
        const m = parseManifest(await readFile(path, "utf8"), path);
        return manifestToRecord(m, path, false);
      } catch (e) {
        if (!isErrno(e, "ENOENT")) return incompleteRecord(vm, id, path, await readPending(pendingPath));
      }
    }
    if (has.pending) {
      const marker = await readPending(pendingPath);
      if (marker || (await statIfExists(pendingPath))) return incompleteRecord(vm, id, pendingPath, marker);
    }
    return undefined;
  }
}

interface SnapshotFiles {
  final?: boolean;
  tmp?: boolean;
  pending?: boolean;
  quarantined?: boolean;
}

type PendingState = "open" | "committing" | "committed" | "failed" | "aborted";

/** A snapshot being written. Add files, then commit() or abort(). */
export class PendingSnapshot {
  readonly id: string;
  readonly vm: string;
  private readonly files: ManifestFile[] = [];
  private readonly names = new Set<string>();
  private readonly failedAdds: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private stateV: PendingState = "open";
  /** Chunks this snapshot created (no file of that hash existed): removed again if it fails. */
  private readonly created = new Set<string>();

  constructor(
    private readonly repo: SnapshotRepository,
    private readonly marker: PendingMarker,
    private readonly lock: LockHandle,
    private readonly startedAt: Date,
    /** The VM writer lease when begin() took it (released by commit/abort); undefined when the caller holds one. */
    private readonly lease?: VmWriterLease,
  ) {
    this.id = marker.id;
    this.vm = marker.vm;
  }

  get state(): PendingState {
    return this.stateV;
  }

  /** Temp manifest path while committing; the final one afterwards. */
  get manifestPath(): string {
    return this.repo.manifestPath(this.vm, this.id);
  }

  /**
   * Chunk localPath into the repository as `role`. Calls are serialized in call order. Throws
   * if the file changes while being read (the snapshot would not be consistent).
   */
  addFile(role: string, localPath: string): Promise<ManifestFile> {
    const run = async (): Promise<ManifestFile> => {
      this.assertOpen("addFile");
      assertRole(role);
      const name = fileNameForRole(role);
      if (this.files.some((f) => f.role === role)) throw new Error(`addFile: role ${JSON.stringify(role)} already added`);
      if (this.names.has(name)) throw new Error(`addFile: role ${JSON.stringify(role)} maps to file name ${name}, already used`);
      const before = await stat(localPath);
      if (!before.isFile()) throw new Error(`addFile: ${localPath} is not a regular file`);
      const whole = createHash("sha256");
      const chunks: ChunkRef[] = [];
      let size = 0;
      let stored = 0;
      for await (const c of chunkFile(localPath, { params: this.repo.params })) {
        whole.update(c.data);
        let r;
        try {
          r = await this.repo.chunks.put(c.data);
        } catch (e) {
          throw await asRepositoryFull(e, this.repo.root, before.size - c.offset, `${role} from ${localPath}`);
        }
        if (r.created) this.created.add(r.sha256);
        if (r.written) stored += c.length;
        chunks.push({ sha256: r.sha256, size: c.length });
        size += c.length;
      }
      const after = await stat(localPath);
      if (after.size !== size || after.mtimeMs !== before.mtimeMs || after.size !== before.size) {
        throw new Error(`addFile: ${localPath} changed while it was being read (${before.size} -> ${after.size} bytes)`);
      }
      const f: ManifestFile = { role, name, size, sha256: whole.digest("hex"), storedBytes: stored, chunks };
      this.files.push(f);
      this.names.add(name);
      return f;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch((e: Error) => void this.failedAdds.push(`${role}: ${e.message}`));
    return p;
  }

  /**
   * Add a file whose chunks are already in the store (fixed page/cluster groups, pages.ts).
   * commit() verifies it like any other file.
   */
  addStoredFile(file: ManifestFile): Promise<ManifestFile> {
    const run = async (): Promise<ManifestFile> => {
      this.assertOpen("addStoredFile");
      assertRole(file.role);
      if (file.name !== fileNameForRole(file.role)) throw new Error(`addStoredFile: ${file.role} must be named ${fileNameForRole(file.role)}`);
      if (this.files.some((f) => f.role === file.role) || this.names.has(file.name)) throw new Error(`addStoredFile: role ${JSON.stringify(file.role)} already added`);
      this.files.push(file);
      this.names.add(file.name);
      return file;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch((e: Error) => void this.failedAdds.push(`${file.role}: ${e.message}`));
    return p;
  }

  /**
   * Write the manifest as .tmp, fsync, verify every chunk and whole-file hash, then rename it into
   * place (the commit point). On failure the snapshot stays incomplete (call abort() to clean up).
   */
  async commit(extra: { pauseMs?: number } = {}): Promise<SnapshotRecord> {
    await this.queue;
    this.assertOpen("commit");
    if (this.files.length === 0) throw new Error("commit: no files were added");
    if (this.failedAdds.length) throw new Error(`commit: refusing a snapshot with failed addFile calls (${this.failedAdds.join("; ")}); abort() it`);
    this.stateV = "committing";
    const dir = this.repo.vmDir(this.vm);
    const tmpPath = join(dir, this.id + TMP_MANIFEST_SUFFIX);
    const finalPath = join(dir, this.id + MANIFEST_SUFFIX);
    try {
      await this.repo.chunks.flush();
      const pauseMs = extra.pauseMs ?? this.marker.pauseMs;
      const m: Manifest = {
        format: MANIFEST_FORMAT,
        version: MANIFEST_VERSION,
        id: this.id,
        vm: this.vm,
        host: this.marker.host,
        createdAt: this.marker.createdAt,
        includesMemory: this.marker.includesMemory,
        ...(pauseMs !== undefined ? { pauseMs } : {}),
        committedAt: new Date().toISOString(),
        durationMs: Date.now() - this.startedAt.getTime(),
        chunker: { ...this.repo.params, gear: GEAR_ID },
        files: this.files,
        bytes: this.files.reduce((s, f) => s + f.size, 0),
        storedBytes: this.files.reduce((s, f) => s + f.storedBytes, 0),
      };
      const text = JSON.stringify(m, null, 1) + "\n";
      parseManifest(text, tmpPath); // never write a manifest we could not read back
      try {
        await writeFileSynced(tmpPath, text, "w");
        await fsyncDir(dir);
      } catch (e) {
        throw await asRepositoryFull(e, this.repo.root, Buffer.byteLength(text), `manifest ${tmpPath}`);
      }

      const reread = parseManifest(await readFile(tmpPath, "utf8"), tmpPath);
      const problems = await this.repo.checkManifestData(reread);
      if (problems.length) {
        throw new SnapshotCorruptError(`commit of ${this.vm}/${this.id} failed verification: ${problems.join("; ")}`, problems);
      }
      await rename(tmpPath, finalPath);
      // The rename is the commit point: from here on the snapshot exists and the result is
      // success; a failing cleanup step is reported as a warning, never as a failed snapshot
      // (issue 14: takes reported failed yet committed complete).
      this.stateV = "committed";
      await this.afterCommit("fsync of the VM directory", () => fsyncDir(dir));
      await this.afterCommit("removing the pending marker", () => unlinkIfExists(join(dir, this.id + PENDING_SUFFIX)));
      return manifestToRecord(reread, finalPath, true);
    } catch (e) {
      if (this.stateV === "committing") this.stateV = "failed";
      throw e;
    } finally {
      await this.releaseLocks();
    }
  }

  private async afterCommit(step: string, fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.repo.warn(`snapshot ${this.vm}/${this.id} is committed; ${step} failed afterwards: ${(e as Error).message}`);
    }
  }

  private async releaseLocks(): Promise<void> {
    const committed = this.stateV === "committed";
    for (const [what, release] of [["repository lock", () => this.lock.release()], ["VM writer lock", () => this.lease?.release()]] as const) {
      try {
        await release();
      } catch (e) {
        if (!committed) throw e;
        this.repo.warn(`snapshot ${this.vm}/${this.id} is committed; releasing its ${what} failed afterwards: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Drop the snapshot's temp state and the chunks only it wrote (those no manifest references,
   * checked under the exclusive lock), so a failed take - e.g. on a full filesystem - leaves no
   * orphans behind. If other snapshots are being written meanwhile those chunks are left to gc().
   */
  async abort(): Promise<{ chunksRemoved: number; bytesRemoved: number; chunksLeftForGc: number }> {
    await this.queue;
    if (this.stateV === "committed") throw new Error(`abort: ${this.vm}/${this.id} is already committed (use delete)`);
    if (this.stateV === "aborted") return { chunksRemoved: 0, bytesRemoved: 0, chunksLeftForGc: 0 };
    this.stateV = "aborted";
    const dir = this.repo.vmDir(this.vm);
    try {
      await unlinkIfExists(join(dir, this.id + TMP_MANIFEST_SUFFIX));
      await unlinkIfExists(join(dir, this.id + PENDING_SUFFIX));
      await fsyncDir(dir);
    } finally {
      // Release the shared lock first: the chunk removal below needs the exclusive one.
      await this.lock.release();
    }
    try {
      const r = await this.repo.removeChunksIfUnreferenced(this.created);
      if (r.leftForGc) this.repo.warn(`aborted snapshot ${this.vm}/${this.id}: ${r.leftForGc} chunks it wrote are left for gc (other snapshots are in progress)`);
      return { chunksRemoved: r.removed, bytesRemoved: r.bytes, chunksLeftForGc: r.leftForGc };
    } finally {
      await this.lease?.release();
    }
  }

  private assertOpen(what: string): void {
    if (this.stateV !== "open") throw new Error(`${what}: snapshot ${this.vm}/${this.id} is ${this.stateV}`);
  }
}

function describeChunk(f: ManifestFile, i: number): string {
  let offset = 0;
  for (let k = 0; k < i; k++) offset += f.chunks[k].size;
  return `file ${JSON.stringify(f.role)} chunk ${i + 1}/${f.chunks.length} (sha256 ${f.chunks[i].sha256}, offset ${offset}, ${f.chunks[i].size} bytes)`;
}

function corrupt(vm: string, id: string, problems: string[]): SnapshotCorruptError {
  return new SnapshotCorruptError(`snapshot ${vm}/${id} cannot be materialized: ${problems.join("; ")}`, problems);
}

async function writeAll(fh: import("fs/promises").FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function readPending(path: string): Promise<PendingMarker | undefined> {
  try {
    return parsePending(await readFile(path, "utf8"));
  } catch {
    return undefined;
  }
}
