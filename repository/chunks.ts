/**
 * Content-addressed chunk store: `chunks/ab/abcdef...` named by the SHA-256 of the content.
 *
 * A chunk is written to a temp name in its final directory, fsync'd, then renamed into place,
 * so a chunk file under its hash name is always whole. A chunk already present is not written
 * again - that is what makes the second snapshot of a mostly unchanged VM differential - unless
 * its stored copy is damaged (other size or other bytes): then it is rewritten, so a corrupt
 * chunk shared by every snapshot is healed by the next snapshot that has the same content
 * (issue 14: a flipped byte in a shared chunk used to fail every later commit, forever).
 * Directory entries are made durable in batch by flush() (called before a manifest is written).
 */
import { createHash } from "crypto";
import { readdir, readFile } from "fs/promises";
import { join } from "path";
import { fsyncDir, isErrno, mkdirp, randomHex, statIfExists, unlinkIfExists, writeThenRename } from "./fsutil";

const HASH_RE = /^[0-9a-f]{64}$/;
const TMP_PREFIX = ".tmp-";

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export function isChunkHash(s: string): boolean {
  return HASH_RE.test(s);
}

export interface PutResult {
  sha256: string;
  size: number;
  /** False when the chunk was already stored (deduplicated). */
  written: boolean;
  /** True when no file of this hash existed before (this put created it). */
  created: boolean;
  /** True when a damaged stored copy was replaced. */
  healed: boolean;
}

export interface ChunkStoreStats {
  /** Bytes handed to put(). */
  logicalBytes: number;
  /** Bytes actually written (new chunks). */
  storedBytes: number;
  chunksWritten: number;
  chunksDeduped: number;
  /** Damaged stored copies rewritten. */
  chunksHealed: number;
}

export type ChunkCheck =
  | { ok: true; size: number }
  | { ok: false; reason: "missing" | "size" | "hash"; detail: string };

export class ChunkStore {
  readonly dir: string;
  readonly stats: ChunkStoreStats = { logicalBytes: 0, storedBytes: 0, chunksWritten: 0, chunksDeduped: 0, chunksHealed: 0 };
  private readonly dirtyDirs = new Set<string>();
  private readonly knownDirs = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  pathOf(hash: string): string {
    if (!isChunkHash(hash)) throw new Error(`not a chunk hash: ${JSON.stringify(hash)}`);
    return join(this.dir, hash.slice(0, 2), hash);
  }

  async has(hash: string): Promise<boolean> {
    return (await statIfExists(this.pathOf(hash))) !== undefined;
  }

  /**
   * Store data under its SHA-256 unless an intact copy is already there. A present copy of the
   * wrong size or with other bytes (damaged) is replaced. `hash` may be passed when already
   * computed. The stored copy is compared byte for byte with data (memcmp, no rehash: data hashes
   * to `hash`, so equal bytes are an intact copy); this costs one read of each deduplicated chunk.
   */
  async put(data: Uint8Array, hash: string = sha256(data)): Promise<PutResult> {
    const path = this.pathOf(hash);
    this.stats.logicalBytes += data.length;
    const existing = await statIfExists(path);
    if (existing && existing.isFile() && existing.size === data.length && (await sameBytes(path, data))) {
      this.stats.chunksDeduped++;
      return { sha256: hash, size: data.length, written: false, created: false, healed: false };
    }
    const sub = join(this.dir, hash.slice(0, 2));
    await this.ensureDir(sub);
    const tmp = join(sub, `${TMP_PREFIX}${hash.slice(0, 16)}-${process.pid}-${randomHex(4)}`);
    // The directory fsync is batched in flush().
    await writeThenRename(tmp, path, data);
    this.dirtyDirs.add(sub);
    this.stats.storedBytes += data.length;
    this.stats.chunksWritten++;
    if (existing) this.stats.chunksHealed++;
    return { sha256: hash, size: data.length, written: true, created: !existing, healed: !!existing };
  }

  /** Make the directory entries of chunks written so far durable. */
  async flush(): Promise<void> {
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    for (const d of dirs) await fsyncDir(d);
  }

  /** Read a chunk without checking it. Throws ENOENT when missing. */
  async read(hash: string): Promise<Buffer> {
    return readFile(this.pathOf(hash));
  }

  /** Read a chunk and check its size and hash; throws a descriptive error when wrong. */
  async readVerified(hash: string, expectedSize?: number): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await this.read(hash);
    } catch (e) {
      if (isErrno(e, "ENOENT")) throw new Error(`chunk ${hash} is missing`);
      throw e;
    }
    if (expectedSize !== undefined && data.length !== expectedSize) {
      throw new Error(`chunk ${hash} has ${data.length} bytes, expected ${expectedSize}`);
    }
    const actual = sha256(data);
    if (actual !== hash) throw new Error(`chunk ${hash} is corrupt (content hashes to ${actual})`);
    return data;
  }

  /** Check one chunk without throwing. */
  async check(hash: string, expectedSize?: number): Promise<ChunkCheck> {
    let data: Buffer;
    try {
      data = await this.read(hash);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return { ok: false, reason: "missing", detail: "missing" };
      throw e;
    }
    if (expectedSize !== undefined && data.length !== expectedSize) {
      return { ok: false, reason: "size", detail: `has ${data.length} bytes, expected ${expectedSize}` };
    }
    const actual = sha256(data);
    if (actual !== hash) return { ok: false, reason: "hash", detail: `content hashes to ${actual}` };
    return { ok: true, size: data.length };
  }

  async remove(hash: string): Promise<boolean> {
    return unlinkIfExists(this.pathOf(hash));
  }

  /** Every stored chunk with its size and mtime; also temp files (for cleanup). */
  async scan(): Promise<{ chunks: Array<{ sha256: string; size: number; mtimeMs: number }>; temps: Array<{ path: string; mtimeMs: number }> }> {
    const chunks: Array<{ sha256: string; size: number; mtimeMs: number }> = [];
    const temps: Array<{ path: string; mtimeMs: number }> = [];
    let subs: string[];
    try {
      subs = await readdir(this.dir);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return { chunks, temps };
      throw e;
    }
    for (const sub of subs.sort()) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      let names: string[];
      try {
        names = await readdir(join(this.dir, sub));
      } catch (e) {
        if (isErrno(e, "ENOENT", "ENOTDIR")) continue;
        throw e;
      }
      for (const name of names) {
        const st = await statIfExists(join(this.dir, sub, name));
        if (!st || !st.isFile()) continue;
        if (name.startsWith(TMP_PREFIX)) temps.push({ path: join(this.dir, sub, name), mtimeMs: st.mtimeMs });
        else if (isChunkHash(name) && name.startsWith(sub)) chunks.push({ sha256: name, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
    return { chunks, temps };
  }

  private async ensureDir(sub: string): Promise<void> {
    if (this.knownDirs.has(sub)) return;
    const existed = await statIfExists(sub);
    if (!existed) {
      await mkdirp(sub);
      this.dirtyDirs.add(this.dir);
    }
    this.knownDirs.add(sub);
  }
}

/** True when the file holds exactly data (false when it vanished meanwhile). */
async function sameBytes(path: string, data: Uint8Array): Promise<boolean> {
  let stored: Buffer;
  try {
    stored = await readFile(path);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return false;
    throw e;
  }
  return stored.equals(data);
}
