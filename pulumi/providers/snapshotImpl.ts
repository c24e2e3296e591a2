/**
 * The logic of the `Snapshot` dynamic resource: one snapshot declared in code (e.g. the baseline
 * right after the VM starts). Creating it takes the snapshot; deleting it removes it unless
 * `keepOnDelete`. Any input change means a new snapshot (replace).
 */
import type * as pulumi from "@pulumi/pulumi";
import type { SnapshotRecord } from "../../core/model";
import { BackendConnection, createBackend } from "../../hypervisor/createBackend";

export interface SnapshotInputs {
  connection: BackendConnection;
  vmName: string;
  /** Hosts where the VM may run (primary first). */
  hosts: string[];
  repository: string;
  includeMemory: boolean;
  keepOnDelete: boolean;
  /** Change it to take a new snapshot. */
  trigger?: string;
}

export interface SnapshotOutputs extends SnapshotInputs {
  snapshot: SnapshotRecord;
}

export async function create(inputs: SnapshotInputs): Promise<pulumi.dynamic.CreateResult> {
  const backend = createBackend(inputs.connection);
  const vm = await backend.findVm(inputs.vmName, inputs.hosts);
  if (!vm) throw new Error(`vmName: no VM named ${inputs.vmName} on ${inputs.hosts.join(", ")}`);
  const snapshot = await backend.takeSnapshot({ name: vm.name, host: vm.host }, { includeMemory: inputs.includeMemory, repository: inputs.repository });
  return { id: `${inputs.vmName}/${snapshot.id}`, outs: { ...inputs, snapshot } };
}

export async function read(id: string, props: SnapshotOutputs): Promise<pulumi.dynamic.ReadResult> {
  const backend = createBackend(props.connection);
  const all = await backend.listSnapshots(props.vmName, props.repository);
  const found = all.find((s) => s.id === props.snapshot.id);
  // A snapshot that retention later pruned was still taken: keep the resource (no re-take on
  // the next `up`), but say it is gone from the repository.
  if (!found) return { id, props: { ...props, snapshot: { ...props.snapshot, complete: false }, pruned: true } };
  return { id, props: { ...props, snapshot: found, pruned: false } };
}

export async function diff(_id: string, olds: SnapshotOutputs, news: SnapshotInputs): Promise<pulumi.dynamic.DiffResult> {
  const keys = ["vmName", "repository", "includeMemory", "trigger"] as const;
  const replaces = keys.filter((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
  const other = olds.keepOnDelete !== news.keepOnDelete || JSON.stringify(olds.hosts) !== JSON.stringify(news.hosts);
  return { changes: replaces.length > 0 || other, replaces };
}

export async function update(_id: string, olds: SnapshotOutputs, news: SnapshotInputs): Promise<pulumi.dynamic.UpdateResult> {
  return { outs: { ...news, snapshot: olds.snapshot } };
}

export async function remove(_id: string, props: SnapshotOutputs): Promise<void> {
  if (props.keepOnDelete) return;
  const backend = createBackend(props.connection);
  const all = await backend.listSnapshots(props.vmName, props.repository);
  const found = all.find((s) => s.id === props.snapshot.id);
  if (found) await backend.deleteSnapshot(found, props.repository);
}
