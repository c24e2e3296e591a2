/**
 * Content-defined chunking (FastCDC-style, gear rolling hash, normalized chunking).
 *
 * A cut point depends only on the ~32 bytes before it, so an edit (or an insertion that shifts
 * every later offset, as in a QEMU migration stream) only changes the chunks around it; the
 * rest of the file cuts at the same content positions and dedupes against earlier snapshots.
 *
 * Files are streamed: at most one read block plus one unfinished chunk is held in memory.
 *
 * The gear table and masks are part of the repository format: changing them does not break
 * correctness (manifests list every chunk explicitly) but stops new snapshots from deduping
 * against old ones. `GEAR_ID` is recorded in manifests so a change is visible.
 */
import { createHash } from "crypto";
import { open } from "fs/promises";

export interface ChunkerParams {
  /** No cut before this many bytes (except the final chunk of a file). */
  minSize: number;
  /** Target average; the cut condition is stricter before it and looser after it. Power of two. */
  avgSize: number;
  /** Always cut here. */
  maxSize: number;
}

export const KiB = 1024;
export const MiB = 1024 * 1024;

export const DEFAULT_CHUNKER: Readonly<ChunkerParams> = Object.freeze({
  minSize: 256 * KiB,
  avgSize: 1 * MiB,
  maxSize: 4 * MiB,
});

/** Identifies the gear table + mask scheme below. */
export const GEAR_ID = "gear32-sha256-v1";

/** 256 pseudo-random 32-bit values, derived deterministically so every host cuts identically. */
const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    t[i] = createHash("sha256").update(`protected-vm/${GEAR_ID}/${i}`).digest().readInt32LE(0);
  }
  return t;
})();

/**
 * A mask of the `bits` highest bits of a 32-bit word. With h = (h << 1) + gear[b], the high bits
 * depend on the last 32 bytes (the low bits only on the last few), so they make the better test.
 */
function highMask(bits: number): number {
  return (~0 << (32 - bits)) | 0;
}

interface Masks {
  /** Stricter mask used before avgSize (log2(avg) + 2 bits). */
  small: number;
  /** Looser mask used after avgSize (log2(avg) - 2 bits). */
  large: number;
}

const maskCache = new Map<number, Masks>();
function masksFor(avgSize: number): Masks {
  let m = maskCache.get(avgSize);
  if (!m) {
    const bits = Math.round(Math.log2(avgSize));
    m = { small: highMask(Math.min(31, bits + 2)), large: highMask(Math.max(1, bits - 2)) };
    maskCache.set(avgSize, m);
  }
  return m;
}

export function validateParams(p: ChunkerParams): void {
  const ok =
    Number.isInteger(p.minSize) && Number.isInteger(p.avgSize) && Number.isInteger(p.maxSize) &&
    p.minSize >= 64 && p.minSize < p.avgSize && p.avgSize < p.maxSize &&
    (p.avgSize & (p.avgSize - 1)) === 0 && p.maxSize <= 1024 * MiB;
  if (!ok) throw new Error(`invalid chunker parameters ${JSON.stringify(p)} (need 64 <= min < avg < max, avg a power of two)`);
}

/**
 * Length of the chunk that starts at `start`, looking at buf[start, end). The caller must
 * supply at least `maxSize` bytes unless these are the last bytes of the input.
 */
export function findCut(buf: Uint8Array, start: number, end: number, p: ChunkerParams = DEFAULT_CHUNKER): number {
  const n = end - start;
  if (n <= p.minSize) return n;
  const limit = n < p.maxSize ? n : p.maxSize;
  const normal = limit < p.avgSize ? limit : p.avgSize;
  const { small, large } = masksFor(p.avgSize);
  const g = GEAR;
  let h = 0;
  let i = start + p.minSize;
  const normalEnd = start + normal;
  const limitEnd = start + limit;
  for (; i < normalEnd; i++) {
    h = ((h << 1) + g[buf[i]]) | 0;
    if ((h & small) === 0) return i - start + 1;
  }
  for (; i < limitEnd; i++) {
    h = ((h << 1) + g[buf[i]]) | 0;
    if ((h & large) === 0) return i - start + 1;
  }
  return limit;
}

export interface Chunk {
  /** Offset of the chunk in the file. */
  offset: number;
  length: number;
  /** The chunk's bytes. Not reused by the chunker: safe to keep after the next iteration. */
  data: Buffer;
}

/** Chunk boundaries of an in-memory buffer (tests, small files). */
export function chunkBuffer(buf: Uint8Array, p: ChunkerParams = DEFAULT_CHUNKER): Array<{ offset: number; length: number }> {
  validateParams(p);
  const out: Array<{ offset: number; length: number }> = [];
  let pos = 0;
  while (pos < buf.length) {
    const len = findCut(buf, pos, buf.length, p);
    out.push({ offset: pos, length: len });
    pos += len;
  }
  return out;
}

export interface ChunkFileOptions {
  params?: ChunkerParams;
  /** Bytes read per read() call batch; at least maxSize. Default 16 MiB. */
  readSize?: number;
}

/**
 * Stream a file's chunks. Holds at most readSize + maxSize bytes (plus chunks the consumer keeps).
 * Cut points are identical to chunkBuffer() on the whole file, whatever readSize is.
 */
export async function* chunkFile(path: string, opts: ChunkFileOptions = {}): AsyncGenerator<Chunk> {
  const p = opts.params ?? DEFAULT_CHUNKER;
  validateParams(p);
  const readSize = Math.max(opts.readSize ?? 16 * MiB, p.maxSize);
  const fh = await open(path, "r");
  try {
    let buf: Buffer = Buffer.alloc(0);
    let pos = 0; // start of unconsumed data in buf
    let fileOffset = 0; // file offset of buf[pos]
    let readOffset = 0; // next file offset to read
    let eof = false;
    for (;;) {
      if (!eof && buf.length - pos < p.maxSize) {
        // Refill into a fresh buffer (chunks already yielded keep referencing the old one).
        const leftover = buf.length - pos;
        const next = Buffer.allocUnsafe(leftover + readSize);
        buf.copy(next, 0, pos);
        let filled = leftover;
        while (filled < next.length) {
          const { bytesRead } = await fh.read(next, filled, next.length - filled, readOffset);
          if (bytesRead === 0) {
            eof = true;
            break;
          }
          filled += bytesRead;
          readOffset += bytesRead;
        }
        buf = next.subarray(0, filled);
        pos = 0;
      }
      if (pos >= buf.length) break;
      const len = findCut(buf, pos, buf.length, p);
      yield { offset: fileOffset, length: len, data: buf.subarray(pos, pos + len) };
      pos += len;
      fileOffset += len;
    }
  } finally {
    await fh.close();
  }
}
