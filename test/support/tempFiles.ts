/** Scratch files for repository tests: a fresh temp directory per test and reproducible bytes. */
import { createCipheriv, createHash } from "crypto";
import { mkdtempSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import { join } from "path";

/** Deterministic pseudo-random bytes (AES-256-CTR keystream), so dedupe ratios are reproducible. */
export function pseudoRandom(size: number, seed: string): Buffer {
  const key = createHash("sha256").update(seed).digest();
  return createCipheriv("aes-256-ctr", key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/**
 * A new empty directory for each test of the calling file, removed after it; `dir()` names the
 * current one and `write(name, data)` puts a file in it.
 */
export function tempDirPerTest(prefix: string): { dir: () => string; write: (name: string, data: Buffer) => string } {
  let current = "";
  beforeEach(() => {
    current = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    rmSync(current, { recursive: true, force: true });
  });
  return {
    dir: () => current,
    write: (name, data) => {
      const p = join(current, name);
      writeFileSync(p, data);
      return p;
    },
  };
}
