/**
 * Snapshot manifests and ids: the on-disk JSON format, its validation, and conversion to the
 * SnapshotRecord that the rest of the product uses.
 *
 * Files under `vms/<vm>/`:
 *   <id>.pending.json        begun, not committed (written by begin())
 *   <id>.manifest.json.tmp   written and fsync'd by commit(), being verified
 *   <id>.manifest.json       complete: verified, then renamed into place
 *   <id>.manifest.json.quarantined  was complete; a chunk it needs is damaged (not restorable)
 */
import { randomBytes } from "crypto";
import type { SnapshotRecord } from "../core/model";
import type { ChunkerParams } from "./chunker";
import { isChunkHash } from "./chunks";

export const MANIFEST_FORMAT = "protected-vm.snapshot-manifest";
export const PENDING_FORMAT = "protected-vm.snapshot-pending";
export const MANIFEST_VERSION = 1;

export const MANIFEST_SUFFIX = ".manifest.json";
export const TMP_MANIFEST_SUFFIX = ".manifest.json.tmp";
export const PENDING_SUFFIX = ".pending.json";
/** A committed manifest set aside by `repository check --repair` because a chunk it needs is damaged. */
export const QUARANTINED_SUFFIX = ".manifest.json.quarantined";

export interface ChunkRef {
  sha256: string;
  size: number;
}

export interface ManifestFile {
  /** What the file is: "memory", "disk:vda", "domain.xml", ... */
  role: string;
  /** File name used by materialize() (derived from role). */
  name: string;
  size: number;
  /** SHA-256 of the whole file. */
  sha256: string;
  /** Bytes of this file's chunks that this snapshot newly wrote. */
  storedBytes: number;
  chunks: ChunkRef[];
}

export interface SnapshotHeader {
  id: string;
  vm: string;
  host: string;
  /** The consistent moment captured (ISO 8601). */
  createdAt: string;
  includesMemory: boolean;
  pauseMs?: number;
}

export interface Manifest extends SnapshotHeader {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  committedAt: string;
  durationMs?: number;
  chunker: ChunkerParams & { gear: string };
  files: ManifestFile[];
  /** Logical bytes of all files. */
  bytes: number;
  /** Bytes of chunks newly written by this snapshot. */
  storedBytes: number;
}

export interface PendingMarker extends SnapshotHeader {
  format: typeof PENDING_FORMAT;
  version: typeof MANIFEST_VERSION;
  startedAt: string;
  pid: number;
  hostname: string;
}

const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z-[0-9a-f]{8}$/;
const VM_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ROLE_RE = /^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$/;

/** `20261126T010203.123Z-1a2b3c4d`: sorts by time as a string. */
export function newSnapshotId(at: Date = new Date()): string {
  const iso = at.toISOString(); // 2026-11-26T01:02:03.123Z
  return `${iso.replace(/[-:]/g, "")}-${randomBytes(4).toString("hex")}`;
}

export function isSnapshotId(id: string): boolean {
  return ID_RE.test(id);
}

export function snapshotIdTime(id: string): Date {
  const m = ID_RE.exec(id);
  if (!m) throw new Error(`not a snapshot id: ${JSON.stringify(id)}`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${m[7]}Z`);
}

export function assertVmName(vm: string): void {
  if (!VM_RE.test(vm) || vm.includes("..")) throw new Error(`invalid VM name for the repository: ${JSON.stringify(vm)}`);
}

export function assertSnapshotId(id: string): void {
  if (!isSnapshotId(id)) throw new Error(`invalid snapshot id: ${JSON.stringify(id)}`);
}

export function assertRole(role: string): void {
  if (!ROLE_RE.test(role) || role.includes("..")) throw new Error(`invalid file role: ${JSON.stringify(role)} (letters, digits, ":._-")`);
}

/** File name for a role; ":" is replaced because qemu reads "proto:..." paths as protocols. */
export function fileNameForRole(role: string): string {
  return role.replace(/:/g, "-");
}

/** Strict structural check of a parsed manifest; returns problems (empty when valid). */
export function manifestProblems(m: unknown): string[] {
  const p: string[] = [];
  const o = m as Partial<Manifest> | null;
  if (!o || typeof o !== "object") return ["manifest is not a JSON object"];
  if (o.format !== MANIFEST_FORMAT) p.push(`format is ${JSON.stringify(o.format)}, expected ${MANIFEST_FORMAT}`);
  if (o.version !== MANIFEST_VERSION) p.push(`unsupported manifest version ${JSON.stringify(o.version)}`);
  if (typeof o.id !== "string" || !isSnapshotId(o.id)) p.push("bad id");
  if (typeof o.vm !== "string" || !VM_RE.test(o.vm)) p.push("bad vm");
  if (typeof o.host !== "string") p.push("bad host");
  if (typeof o.createdAt !== "string" || Number.isNaN(Date.parse(o.createdAt))) p.push("bad createdAt");
  if (typeof o.includesMemory !== "boolean") p.push("bad includesMemory");
  if (!Array.isArray(o.files) || o.files.length === 0) return [...p, "no files"];
  let total = 0;
  const roles = new Set<string>();
  o.files.forEach((f, i) => {
    const where = `file ${i} (${JSON.stringify(f?.role)})`;
    if (!f || typeof f.role !== "string" || !ROLE_RE.test(f.role)) return void p.push(`${where}: bad role`);
    if (roles.has(f.role)) p.push(`${where}: duplicate role`);
    roles.add(f.role);
    if (f.name !== fileNameForRole(f.role)) p.push(`${where}: bad name`);
    if (typeof f.sha256 !== "string" || !isChunkHash(f.sha256)) p.push(`${where}: bad sha256`);
    if (!Number.isSafeInteger(f.size) || f.size < 0) return void p.push(`${where}: bad size`);
    if (!Array.isArray(f.chunks)) return void p.push(`${where}: no chunk list`);
    let sum = 0;
    for (const c of f.chunks) {
      if (!c || !isChunkHash(c.sha256) || !Number.isSafeInteger(c.size) || c.size <= 0) {
        p.push(`${where}: bad chunk entry ${JSON.stringify(c)}`);
        return;
      }
      sum += c.size;
    }
    if (sum !== f.size) p.push(`${where}: chunk sizes add up to ${sum}, file size is ${f.size}`);
    total += f.size;
  });
  if (o.bytes !== total) p.push(`bytes is ${o.bytes}, files add up to ${total}`);
  if (!Number.isSafeInteger(o.storedBytes)) p.push("bad storedBytes");
  return p;
}

export function parseManifest(text: string, source = "manifest"): Manifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not valid JSON (${(e as Error).message})`);
  }
  const problems = manifestProblems(v);
  if (problems.length) throw new Error(`${source}: ${problems.join("; ")}`);
  return v as Manifest;
}

export function parsePending(text: string): PendingMarker | undefined {
  try {
    const v = JSON.parse(text) as PendingMarker;
    return v && v.format === PENDING_FORMAT && typeof v.id === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

export function manifestToRecord(m: Manifest, location: string, complete: boolean): SnapshotRecord {
  const r: SnapshotRecord = {
    id: m.id,
    vm: m.vm,
    backend: "libvirt",
    host: m.host,
    createdAt: m.createdAt,
    includesMemory: m.includesMemory,
    bytes: m.bytes,
    storedBytes: m.storedBytes,
    complete,
    location,
  };
  if (m.pauseMs !== undefined) r.pauseMs = m.pauseMs;
  if (m.durationMs !== undefined) r.durationMs = m.durationMs;
  return r;
}

/** Record for a snapshot whose manifest is missing or unreadable (only the id and path are known). */
export function incompleteRecord(vm: string, id: string, location: string, header?: Partial<SnapshotHeader>): SnapshotRecord {
  return {
    id,
    vm,
    backend: "libvirt",
    host: typeof header?.host === "string" ? header.host : "",
    createdAt: typeof header?.createdAt === "string" ? header.createdAt : snapshotIdTime(id).toISOString(),
    includesMemory: header?.includesMemory === true,
    bytes: 0,
    storedBytes: 0,
    complete: false,
    location,
  };
}
