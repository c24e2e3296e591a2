/**
 * Repository locks: plain files created with O_EXCL (works on local disks and NFSv3+).
 *
 * - Shared locks (`locks/shared-<token>.lock`): held by anything that needs chunks not to vanish
 *   underneath it - a snapshot being written (begin .. commit/abort), verify, materialize.
 *   Any number may exist at once.
 * - The exclusive lock (`locks/exclusive.lock`): held by gc while it marks and sweeps.
 *
 * Both sides create their own file first and then look for the other kind, backing off when
 * they see it, so a gc and a commit can never both proceed.
 *
 * A lock is stale when its holder ran on this host and that pid is gone, or when its mtime is
 * older than staleMs (holders refresh it by a heartbeat, so this covers holders on dead hosts).
 */
import { hostname } from "os";
import { link, readdir, readFile, rename, stat, utimes } from "fs/promises";
import { join } from "path";
import { isErrno, mkdirp, randomHex, unlinkIfExists, writeFileSynced } from "./fsutil";
import { pidAlive } from "../lib/pid";

export interface LockInfo {
  kind: "shared" | "exclusive" | "owner";
  token: string;
  pid: number;
  hostname: string;
  purpose: string;
  createdAt: string;
}

export interface LockOptions {
  /** How long to wait for a conflicting lock to go away before failing (ms). Default 60 s. */
  waitMs?: number;
}

export class RepositoryBusyError extends Error {
  constructor(message: string, readonly holders: LockInfo[]) {
    super(message);
    this.name = "RepositoryBusyError";
  }
}

export interface LockHandle {
  readonly info: LockInfo;
  readonly path: string;
  release(): Promise<void>;
}

const EXCLUSIVE = "exclusive.lock";
const SHARED_RE = /^shared-[0-9a-f]+\.lock$/;
/** Single-owner locks (e.g. one snapshot writer per VM): `owner-<name>.lock`. */
const OWNER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A single-owner lock is held by someone else (and was not released within the wait). */
export class LockHeldError extends Error {
  constructor(message: string, readonly holder: LockInfo) {
    super(message);
    this.name = "LockHeldError";
  }
}

export { pidAlive };

export class LockManager {
  readonly dir: string;
  readonly staleMs: number;
  readonly pollMs: number;

  constructor(dir: string, opts: { staleMs?: number; pollMs?: number } = {}) {
    this.dir = dir;
    this.staleMs = opts.staleMs ?? 10 * 60 * 1000;
    this.pollMs = opts.pollMs ?? 200;
  }

  async acquireShared(purpose: string, opts: LockOptions = {}): Promise<LockHandle> {
    const deadline = Date.now() + (opts.waitMs ?? 60_000);
    await mkdirp(this.dir);
    for (;;) {
      let holder = await this.liveExclusive();
      if (!holder) {
        const handle = await this.create(`shared-${randomHex(8)}.lock`, "shared", purpose);
        holder = await this.liveExclusive();
        if (!holder) return handle;
        await handle.release(); // gc got there first; let it finish
      }
      if (Date.now() >= deadline) {
        throw new RepositoryBusyError(`repository ${this.dir} is locked exclusively by ${describeLock(holder)}`, [holder]);
      }
      await sleep(this.pollMs);
    }
  }

  async acquireExclusive(purpose: string, opts: LockOptions = {}): Promise<LockHandle> {
    const deadline = Date.now() + (opts.waitMs ?? 60_000);
    await mkdirp(this.dir);
    for (;;) {
      let holders: LockInfo[] = [];
      let handle: LockHandle | undefined;
      try {
        handle = await this.create(EXCLUSIVE, "exclusive", purpose);
      } catch (e) {
        if (!isErrno(e, "EEXIST")) throw e;
        const other = await this.liveExclusive();
        if (!other) continue; // it was stale and has been removed: try again at once
        holders = [other];
      }
      if (handle) {
        holders = await this.liveShared();
        if (holders.length === 0) return handle;
        await handle.release(); // snapshots in progress: do not block them
      }
      if (Date.now() >= deadline) {
        throw new RepositoryBusyError(
          `repository ${this.dir} is busy: ${holders.map(describeLock).join("; ")}`,
          holders,
        );
      }
      await sleep(this.pollMs);
    }
  }

  /**
   * A lock with at most one holder, independent of the shared/exclusive pair: `owner-<name>.lock`.
   * Waits up to opts.waitMs for the holder to release it; a stale holder (dead pid on this host,
   * or no heartbeat for staleMs) is taken over. Throws LockHeldError naming the holder.
   */
  async acquireOwner(name: string, purpose: string, opts: LockOptions = {}): Promise<LockHandle> {
    if (!OWNER_NAME_RE.test(name) || name.includes("..")) throw new Error(`invalid lock name ${JSON.stringify(name)}`);
    const deadline = Date.now() + (opts.waitMs ?? 60_000);
    const file = `owner-${name}.lock`;
    await mkdirp(this.dir);
    for (;;) {
      try {
        return await this.create(file, "owner", purpose);
      } catch (e) {
        if (!isErrno(e, "EEXIST")) throw e;
      }
      const holder = await this.checkLive(join(this.dir, file));
      if (!holder) continue; // it was stale and has been removed: try again at once
      if (Date.now() >= deadline) throw new LockHeldError(`${name} is locked: ${describeLock(holder)}`, holder);
      await sleep(this.pollMs);
    }
  }

  /** Remove stale owner locks (holder dead) so they do not linger as debris; returns how many. */
  async clearStaleOwners(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return 0;
      throw e;
    }
    let cleared = 0;
    for (const n of names) {
      if (!/^owner-.*\.lock$/.test(n)) continue;
      if (!(await this.checkLive(join(this.dir, n)))) cleared++;
    }
    return cleared;
  }

  /** Lock files that are not stale (for reporting). */
  async holders(): Promise<LockInfo[]> {
    const ex = await this.liveExclusive();
    return [...(ex ? [ex] : []), ...(await this.liveShared())];
  }

  private async create(name: string, kind: LockInfo["kind"], purpose: string): Promise<LockHandle> {
    const path = join(this.dir, name);
    const info: LockInfo = { kind, token: randomHex(8), pid: process.pid, hostname: hostname(), purpose, createdAt: new Date().toISOString() };
    await writeFileSynced(path, JSON.stringify(info) + "\n", "wx");
    const staleMs = this.staleMs;
    const timer = setInterval(() => {
      const now = new Date();
      utimes(path, now, now).catch(() => undefined);
    }, Math.max(1000, Math.floor(staleMs / 4)));
    timer.unref();
    let released = false;
    return {
      info,
      path,
      release: async () => {
        if (released) return;
        released = true;
        clearInterval(timer);
        // Only remove the file if it is still ours (a stale-lock breaker may have replaced it).
        const current = await readLock(path);
        if (!current || current.token === info.token) await unlinkIfExists(path);
      },
    };
  }

  /** The live exclusive lock, or undefined (removing it when stale). */
  private async liveExclusive(): Promise<LockInfo | undefined> {
    return this.checkLive(join(this.dir, EXCLUSIVE));
  }

  private async liveShared(): Promise<LockInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isErrno(e, "ENOENT")) return [];
      throw e;
    }
    const out: LockInfo[] = [];
    for (const n of names) {
      if (!SHARED_RE.test(n)) continue;
      const live = await this.checkLive(join(this.dir, n));
      if (live) out.push(live);
    }
    return out;
  }

  private async checkLive(path: string): Promise<LockInfo | undefined> {
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(path)).mtimeMs;
    } catch (e) {
      if (isErrno(e, "ENOENT")) return undefined;
      throw e;
    }
    const info = await readLock(path);
    const old = Date.now() - mtimeMs > this.staleMs;
    if (!info) {
      // Unreadable: probably being written this instant; stale only once old.
      if (!old) return { kind: path.endsWith(EXCLUSIVE) ? "exclusive" : /\/owner-[^/]*$/.test(path) ? "owner" : "shared", token: "?", pid: 0, hostname: "?", purpose: "(being written)", createdAt: "" };
    } else if (!old && !(info.hostname === hostname() && !pidAlive(info.pid))) {
      return info;
    }
    await breakLock(path, info);
    return undefined;
  }
}

/** Remove a stale lock without removing a fresh one that replaced it meanwhile. */
async function breakLock(path: string, seen: LockInfo | undefined): Promise<void> {
  const aside = `${path}.stale-${randomHex(4)}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if (isErrno(e, "ENOENT")) return;
    throw e;
  }
  const moved = await readLock(aside);
  if (seen && moved && moved.token !== seen.token) {
    // We moved a newer, live lock: put it back (link, unlike rename, never replaces a file).
    try {
      await link(aside, path);
    } catch {
      /* yet another lock appeared meanwhile */
    }
  }
  await unlinkIfExists(aside);
}

async function readLock(path: string): Promise<LockInfo | undefined> {
  try {
    const v = JSON.parse(await readFile(path, "utf8")) as LockInfo;
    return typeof v?.token === "string" && typeof v.pid === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}

export function describeLock(l: LockInfo): string {
  return `${l.kind} lock "${l.purpose}" held by pid ${l.pid} on ${l.hostname} since ${l.createdAt}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms + Math.floor(Math.random() * ms * 0.5)));
}
