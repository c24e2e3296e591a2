/**
 * The machine the figures come from: CPU, cores, memory, virtualisation mode, and the disk's
 * sequential bandwidth measured now, on the filesystem that holds the snapshot repository.
 * Write: random data in 4 MiB blocks, then fsync (the time includes the fsync). Read: the same
 * file with O_DIRECT (`dd iflag=direct`), so the page cache does not answer.
 */
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { run } from "../lab/lab";
import type { Recorder } from "./results";

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryMiB: number;
  kernel: string;
  kvm: boolean;
  libvirt: string;
  qemu: string;
  diskDir: string;
  diskTestMiB: number;
  /** MB/s = 10^6 bytes per second. */
  diskWriteMBs: number;
  diskReadMBs: number;
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1].trim();
  } catch {
    /* not Linux */
  }
  return os.cpus()[0]?.model ?? "unknown";
}

async function version(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, 20_000)).split("\n")[0].trim();
  } catch {
    return "unknown";
  }
}

export async function measureMachine(diskDir: string, testMiB: number, rec: Recorder): Promise<Machine> {
  const file = path.join(diskDir, `pvbench-disktest-${process.pid}.bin`);
  const block = randomBytes(4 * 1024 * 1024);
  const blocks = Math.max(1, Math.round(testMiB / 4));
  const bytes = blocks * block.length;
  let writeMBs = NaN;
  let readMBs = NaN;
  try {
    const fd = fs.openSync(file, "w");
    const t0 = process.hrtime.bigint();
    try {
      for (let i = 0; i < blocks; i++) {
        block.writeUInt32LE(i, 0); // every block distinct
        fs.writeSync(fd, block);
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    writeMBs = bytes / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
    const t1 = process.hrtime.bigint();
    await run("dd", [`if=${file}`, "of=/dev/null", "bs=4M", "iflag=direct", "status=none"], 600_000);
    readMBs = bytes / 1e6 / (Number(process.hrtime.bigint() - t1) / 1e9);
  } finally {
    fs.rmSync(file, { force: true });
  }
  const m: Machine = {
    cpuModel: cpuModel(),
    cores: os.cpus().length,
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    kernel: `${os.type()} ${os.release()}`,
    kvm: fs.existsSync("/dev/kvm"),
    libvirt: await version("virsh", ["--version"]),
    qemu: await version("qemu-system-x86_64", ["--version"]),
    diskDir,
    diskTestMiB: bytes / 2 ** 20,
    diskWriteMBs: writeMBs,
    diskReadMBs: readMBs,
  };
  const k = { section: "machine", variant: "host" };
  rec.addAll(k, [
    ["cores", m.cores, "count"],
    ["memory", m.memoryMiB, "MiB"],
    ["disk_seq_write", m.diskWriteMBs, "MB/s"],
    ["disk_seq_read_direct", m.diskReadMBs, "MB/s"],
    ["disk_test_size", m.diskTestMiB, "MiB"],
  ]);
  return m;
}
