/**
 * Runs virsh with an argv array (never a shell string) against one libvirt URI.
 * Everything that talks to libvirt goes through a VirshRunner so unit tests can script it.
 */
import { execFile } from "child_process";

export interface VirshResult {
  stdout: string;
  stderr: string;
}

export interface VirshRunner {
  run(uri: string, args: string[], opts?: { timeoutMs?: number }): Promise<VirshResult>;
}

export class VirshError extends Error {
  constructor(
    readonly uri: string,
    readonly args: string[],
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(`virsh -c ${uri} ${args.join(" ")} failed (exit ${exitCode}): ${stderr.trim() || "no error text"}`);
    this.name = "VirshError";
  }
  /** libvirt's "Domain not found" / "failed to get domain". */
  get notFound(): boolean {
    return /failed to get domain|Domain not found|no domain with matching|domain .* not found/i.test(this.stderr);
  }
}

/** The real runner: execFile("virsh", ["-c", uri, ...args]). PROTECTED_VM_VIRSH overrides the binary. */
export class ExecVirsh implements VirshRunner {
  constructor(private readonly binary: string = process.env.PROTECTED_VM_VIRSH || "virsh") {}

  run(uri: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<VirshResult> {
    const argv = ["-c", uri, ...args];
    return new Promise((resolve, reject) => {
      execFile(
        this.binary,
        argv,
        { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: "C" } },
        (err, stdout, stderr) => {
          if (err) {
            const code = typeof (err as NodeJS.ErrnoException).code === "number" ? ((err as unknown as { code: number }).code) : null;
            reject(new VirshError(uri, args, String(stderr || err.message), code));
          } else {
            resolve({ stdout: String(stdout), stderr: String(stderr) });
          }
        },
      );
    });
  }
}
