/** Small durable-file helpers shared by the repository modules. */
import { randomBytes } from "crypto";
import { mkdir, open, rename, stat, unlink } from "fs/promises";
import type { Stats } from "fs";
import { dirname } from "path";

export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString("hex");
}

export function isErrno(e: unknown, ...codes: string[]): boolean {
  return typeof e === "object" && e !== null && codes.includes((e as NodeJS.ErrnoException).code ?? "");
}

/** fsync a directory so renames/creates in it are durable. Ignored where unsupported. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch (e) {
    if (!isErrno(e, "EINVAL", "EISDIR", "EPERM", "EBADF", "ENOTSUP")) throw e;
  } finally {
    await fh?.close();
  }
}

/** Write data to path (flags "w" or "wx") and fsync it before closing. */
export async function writeFileSynced(path: string, data: Uint8Array | string, flags = "w"): Promise<void> {
  const fh = await open(path, flags, 0o644);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Write data to the new file tmp (fsynced), then rename it to path; tmp is removed on failure. */
export async function writeThenRename(tmp: string, path: string, data: Uint8Array | string): Promise<void> {
  try {
    await writeFileSynced(tmp, data, "wx");
    await rename(tmp, path);
  } catch (e) {
    await unlinkIfExists(tmp);
    throw e;
  }
}

/** Replace path atomically: write a temp file next to it, fsync, rename, fsync the directory. */
export async function atomicWriteFile(path: string, data: Uint8Array | string): Promise<void> {
  await writeThenRename(`${path}.${randomHex(4)}.partial`, path, data);
  await fsyncDir(dirname(path));
}

export async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if (isErrno(e, "ENOENT")) return false;
    throw e;
  }
}

export async function statIfExists(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (e) {
    if (isErrno(e, "ENOENT", "ENOTDIR")) return undefined;
    throw e;
  }
}

export async function mkdirp(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}
