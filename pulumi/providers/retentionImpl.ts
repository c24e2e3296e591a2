/**
 * The logic of the `Retention` dynamic resource: applies the policy's retention to a VM's
 * snapshots on every `pulumi up`, reports the newest complete snapshot on `pulumi refresh`, and
 * on destroy keeps or deletes the snapshots as the policy's `onDestroy` says.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { SnapshotRecord } from "../../core/model";
import { BackendConnection, createBackend } from "../../hypervisor/createBackend";
import { pruneSnapshots } from "../../ops/prune";

export interface RetentionInputs {
  connection: BackendConnection;
  vmName: string;
  repository: string;
  keepLast: number;
  maxAgeSeconds?: number;
  onDestroy: "keep" | "delete";
}

export interface RetentionOutputs extends RetentionInputs {
  snapshotCount: number;
  newestSnapshotId: string | null;
  newestSnapshotTime: string | null;
  deletedSnapshotIds: string[];
}

function summarize(inputs: RetentionInputs, kept: SnapshotRecord[], deleted: SnapshotRecord[]): RetentionOutputs {
  const newest = kept.find((s) => s.complete);
  return {
    ...inputs,
    snapshotCount: kept.filter((s) => s.complete).length,
    newestSnapshotId: newest?.id ?? null,
    newestSnapshotTime: newest?.createdAt ?? null,
    deletedSnapshotIds: deleted.map((s) => s.id),
  };
}

export async function create(inputs: RetentionInputs): Promise<pulumi.dynamic.CreateResult> {
  const { kept, deleted } = await pruneSnapshots(createBackend(inputs.connection), inputs.vmName, inputs.repository, inputs);
  return { id: `${inputs.vmName}/retention`, outs: summarize(inputs, kept, deleted) };
}

export async function update(_id: string, _olds: RetentionOutputs, news: RetentionInputs): Promise<pulumi.dynamic.UpdateResult> {
  const { kept, deleted } = await pruneSnapshots(createBackend(news.connection), news.vmName, news.repository, news);
  return { outs: summarize(news, kept, deleted) };
}

export async function read(id: string, props: RetentionOutputs): Promise<pulumi.dynamic.ReadResult> {
  const backend = createBackend(props.connection);
  const all = await backend.listSnapshots(props.vmName, props.repository).catch(() => undefined);
  if (!all) return { id, props };
  return { id, props: { ...summarize(props, all, []), deletedSnapshotIds: props.deletedSnapshotIds } };
}

export async function diff(_id: string, olds: RetentionOutputs, news: RetentionInputs): Promise<pulumi.dynamic.DiffResult> {
  const keys = ["connection", "vmName", "repository", "keepLast", "maxAgeSeconds", "onDestroy"] as const;
  const changed = keys.filter((k) => JSON.stringify(olds[k] ?? null) !== JSON.stringify(news[k] ?? null));
  return { changes: changed.length > 0, replaces: changed.filter((k) => k === "vmName" || k === "repository") };
}

export async function remove(_id: string, props: RetentionOutputs): Promise<void> {
  if (props.onDestroy !== "delete") return;
  const backend = createBackend(props.connection);
  for (const s of await backend.listSnapshots(props.vmName, props.repository)) await backend.deleteSnapshot(s, props.repository);
}
