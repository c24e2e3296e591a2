/**
 * Chunker / repository micro-benchmark. Prints figures only (no pass/fail).
 *
 *   npx tsc -p . --outDir /tmp/pvm-build && node /tmp/pvm-build/bench/chunkerBench.js [sizeMiB]
 *
 * Measures: gear-hash cut finding alone (in memory), chunking + SHA-256 streaming from disk,
 * a full repository commit (chunk, hash, write, fsync, verify), and the dedupe ratio of a second
 * snapshot after scattered 4 KiB page writes and after inserting bytes at the front.
 */
import { createHash, randomBytes } from "crypto";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";
import { chunkBuffer, chunkFile, DEFAULT_CHUNKER, MiB } from "../repository/chunker";
import { SnapshotRepository } from "../repository/repository";

function mbps(bytes: number, ms: number): string {
  return `${((bytes / 1e6) / (ms / 1000)).toFixed(0)} MB/s`;
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 256);
  const size = sizeMiB * MiB;
  const dir = mkdtempSync(join(tmpdir(), "pvm-chunker-bench-"));
  try {
    console.log(`chunker params: min ${DEFAULT_CHUNKER.minSize / 1024} KiB, avg ${DEFAULT_CHUNKER.avgSize / 1024} KiB, max ${DEFAULT_CHUNKER.maxSize / 1024} KiB; file ${sizeMiB} MiB random`);
    const data = randomBytes(size);
    const file = join(dir, "memory.img");
    writeFileSync(file, data);

    // 1. Cut finding alone (in memory).
    let t = performance.now();
    const cuts = chunkBuffer(data);
    let ms = performance.now() - t;
    const sizes = cuts.map((c) => c.length);
    const avg = size / cuts.length;
    console.log(`gear cut-finding (in memory):      ${mbps(size, ms)}  (${cuts.length} chunks, avg ${(avg / 1024).toFixed(0)} KiB, min ${(Math.min(...sizes) / 1024).toFixed(0)} KiB, max ${(Math.max(...sizes) / 1024).toFixed(0)} KiB)`);

    // 2. SHA-256 alone, for reference.
    t = performance.now();
    createHash("sha256").update(data).digest();
    ms = performance.now() - t;
    console.log(`sha256 alone (in memory):          ${mbps(size, ms)}`);

    // 3. Streaming chunking + per-chunk SHA-256 + whole-file SHA-256 from disk (page cache warm).
    t = performance.now();
    const whole = createHash("sha256");
    let n = 0;
    for await (const c of chunkFile(file)) {
      createHash("sha256").update(c.data).digest("hex");
      whole.update(c.data);
      n++;
    }
    whole.digest();
    ms = performance.now() - t;
    console.log(`chunkFile + chunk & file sha256:   ${mbps(size, ms)}  (${n} chunks)`);

    // 4. Full commits into a repository, then a differential one.
    const repo = new SnapshotRepository(join(dir, "repo"));
    const commit = async (path: string) => {
      const t0 = performance.now();
      const p = await repo.begin("bench-vm", { host: "bench", includesMemory: true });
      await p.addFile("memory", path);
      const r = await p.commit();
      return { r, ms: performance.now() - t0 };
    };
    const first = await commit(file);
    console.log(`commit #1 (write+fsync+verify):    ${mbps(size, first.ms)}  stored ${(first.r.storedBytes / MiB).toFixed(1)} MiB of ${(first.r.bytes / MiB).toFixed(1)} MiB`);

    const pages = 16;
    for (let i = 0; i < pages; i++) {
      const off = Math.floor(((i + 0.5) * size) / pages / 4096) * 4096;
      randomBytes(4096).copy(data, off);
    }
    writeFileSync(file, data);
    const second = await commit(file);
    console.log(`commit #2 after ${pages} scattered 4 KiB page writes: ${mbps(size, second.ms)}  stored ${(second.r.storedBytes / MiB).toFixed(1)} MiB of ${(second.r.bytes / MiB).toFixed(1)} MiB -> ratio ${(second.r.storedBytes / second.r.bytes).toFixed(4)}`);

    writeFileSync(file, Buffer.concat([randomBytes(1000), data]));
    const third = await commit(file);
    console.log(`commit #3 after inserting 1000 bytes at the front: stored ${(third.r.storedBytes / MiB).toFixed(1)} MiB of ${(third.r.bytes / MiB).toFixed(1)} MiB -> ratio ${(third.r.storedBytes / third.r.bytes).toFixed(4)}`);

    t = performance.now();
    await repo.materialize("bench-vm", third.r.id, join(dir, "restore"));
    ms = performance.now() - t;
    console.log(`materialize #3 (verify+write+fsync): ${mbps(third.r.bytes, ms)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
