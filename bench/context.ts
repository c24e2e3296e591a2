/** What every bench section gets: the lab, the backend, a recorder, a scratch repository, a log. */
import * as fs from "fs";
import * as path from "path";
import { LibvirtBackend } from "../hypervisor/libvirt/backend";
import type { SnapshotOptions, SnapshotRecord, VmRef } from "../core/model";
import type { LabState } from "../lab/lab";
import { removeFiles } from "../lab/lab";
import { nowMs } from "./console";
import type { Recorder } from "./results";
import type { Machine } from "./machine";

export interface TakeEvent {
  vm: string;
  /** Host ms when takeSnapshot was called / returned (committed). */
  calledAt: number;
  returnedAt: number;
  record: SnapshotRecord;
}

export interface BenchContext {
  lab: LabState;
  backend: LibvirtBackend;
  rec: Recorder;
  machine: Machine;
  runId: string;
  log: (msg: string) => void;
  /** A fresh snapshot repository directory on the lab's shared storage (removed by dropRepo). */
  newRepo(label: string): string;
  dropRepo(dir: string): void;
}

export function makeRepoFns(lab: LabState, runId: string): Pick<BenchContext, "newRepo" | "dropRepo"> {
  return {
    newRepo(label: string) {
      const dir = path.join(lab.repository, `pvbench-${runId}-${label}`);
      fs.mkdirSync(dir, { recursive: true, mode: 0o1777 });
      fs.chmodSync(dir, 0o1777);
      return dir;
    },
    dropRepo(dir: string) {
      if (path.basename(dir).startsWith("pvbench-")) removeFiles(dir);
    },
  };
}

/**
 * A backend whose takeSnapshot also notes when it was called and when it returned, so the
 * guest-observed pause can be looked up in the console ticks (the scheduler calls it inside).
 */
export function timedBackend(backend: LibvirtBackend, onTake: (e: TakeEvent) => void): LibvirtBackend {
  const wrapped = Object.create(backend) as LibvirtBackend;
  wrapped.takeSnapshot = async (vm: VmRef, opts: SnapshotOptions) => {
    const calledAt = nowMs();
    const record = await backend.takeSnapshot(vm, opts);
    onTake({ vm: vm.name, calledAt, returnedAt: nowMs(), record });
    return record;
  };
  return wrapped;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
