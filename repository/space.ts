/**
 * A full repository filesystem: the error names the path and the free space, so an operator knows
 * what to clean (issue 14: "ENOSPC" alone named nothing).
 */
import { statfs } from "fs/promises";
import { isErrno } from "./fsutil";

export class RepositoryFullError extends Error {
  readonly code = "ENOSPC";
  constructor(
    readonly path: string,
    readonly freeBytes: number | undefined,
    readonly neededBytes: number,
    what: string,
  ) {
    super(
      `repository ${path} is full: ${freeBytes === undefined ? "unknown" : freeBytes} bytes free, needed ~${neededBytes}` +
        (what ? ` (writing ${what})` : ""),
    );
    this.name = "RepositoryFullError";
  }
}

/** Bytes available to an unprivileged writer on the filesystem holding path. */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

/** ENOSPC/EDQUOT become RepositoryFullError; anything else is returned unchanged. */
export async function asRepositoryFull(e: unknown, root: string, neededBytes: number, what: string): Promise<unknown> {
  if (e instanceof RepositoryFullError || !isErrno(e, "ENOSPC", "EDQUOT")) return e;
  return new RepositoryFullError(root, await freeBytes(root), neededBytes, what);
}
