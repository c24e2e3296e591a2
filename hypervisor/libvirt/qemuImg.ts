/**
 * qemu-img on this machine (the new snapshot path reads disks in place, so it needs the pool's
 * files locally): the backing chain of an image and which of its ranges each layer holds.
 * `-U` (force-share) because the running guest's QEMU holds the images' locks (lab-notes).
 */
import { execFile } from "child_process";

export function runQemuImg(args: string[], timeoutMs = 600_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("qemu-img", args, { timeout: timeoutMs, maxBuffer: 512 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`qemu-img ${args.join(" ")} failed: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}

export interface ChainImage {
  filename: string;
  format: string;
  virtualSize: number;
  backing?: string;
  encrypted: boolean;
}

/** The image and its backing files, top first. */
export async function backingChain(file: string): Promise<ChainImage[]> {
  const out = JSON.parse(await runQemuImg(["info", "-U", "--backing-chain", "--output=json", file])) as Array<Record<string, unknown>>;
  return out.map((i) => ({
    filename: String(i["filename"]),
    format: String(i["format"]),
    virtualSize: Number(i["virtual-size"]),
    backing: (i["full-backing-filename"] as string | undefined) ?? (i["backing-filename"] as string | undefined),
    encrypted: i["encrypted"] === true,
  }));
}

/** One range of `qemu-img map --output=json`: which layer (depth) holds it, and where. */
export interface MapExtent {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  compressed?: boolean;
  /** Host offset in the file of layer `depth` (absent when the data cannot be read in place). */
  offset?: number;
}

export async function mapImage(file: string): Promise<MapExtent[]> {
  const out = JSON.parse(await runQemuImg(["map", "-U", "--output=json", file])) as MapExtent[];
  return out.map((e) => ({ ...e, present: e.present !== false }));
}
