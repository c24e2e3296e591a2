/**
 * The protection record stored on a CloudStack VM as resource tags (pure).
 *
 * CloudStack tag values are limited to 255 characters, so the record's JSON is split over
 * `protected-vm.record.0`, `.1`, ... with `protected-vm.record.parts` giving the count. The
 * marker `protected-vm` = `true` lets the scheduler find protected VMs with one
 * listVirtualMachines call filtered by tags[0].key/value.
 */
import type { ProtectionRecord } from "../../core/policy";

export const TAG_PREFIX = "protected-vm";
export const MARKER_KEY = TAG_PREFIX;
export const MARKER_VALUE = "true";
export const RECORD_PARTS_KEY = `${TAG_PREFIX}.record.parts`;
export const RECORD_PART_KEY = (i: number) => `${TAG_PREFIX}.record.${i}`;
/** Set while a restore is in progress (value: snapshot id) so a re-run knows it owns the VM. */
export const RESTORING_KEY = `${TAG_PREFIX}.restoring`;
/** Set when a restore has finished: which snapshot, which path, when. */
export const RESTORED_FROM_KEY = `${TAG_PREFIX}.restored-from`;
export const RESTORE_PATH_KEY = `${TAG_PREFIX}.restore-path`;
/** The host a restore brings the VM to (so a re-run finishes it there). */
export const RESTORE_TO_KEY = `${TAG_PREFIX}.restore-to`;
/** Why the path was taken (e.g. the warm attempt's failure), at most 255 characters. */
export const RESTORE_REASON_KEY = `${TAG_PREFIX}.restore-reason`;
export const MAX_TAG_VALUE = 255;

export interface Tag {
  key: string;
  value: string;
}

export function protectionToTags(record: ProtectionRecord): Tag[] {
  const json = JSON.stringify(record);
  const parts: string[] = [];
  for (let i = 0; i < json.length; i += MAX_TAG_VALUE) parts.push(json.slice(i, i + MAX_TAG_VALUE));
  return [
    { key: MARKER_KEY, value: MARKER_VALUE },
    { key: RECORD_PARTS_KEY, value: String(parts.length) },
    ...parts.map((value, i) => ({ key: RECORD_PART_KEY(i), value })),
  ];
}

/** Every tag key that protectionToTags could have written (for deleteTags). */
export function isProtectionTagKey(key: string): boolean {
  return key === MARKER_KEY || key === RECORD_PARTS_KEY || /^protected-vm\.record\.\d+$/.test(key);
}

/** Rebuild the record; undefined when the VM carries none or the parts are incomplete/corrupt. */
export function tagsToProtection(tags: Array<{ key: string; value: string }> | undefined): ProtectionRecord | undefined {
  if (!tags) return undefined;
  const map = new Map(tags.map((t) => [t.key, t.value]));
  if (map.get(MARKER_KEY) !== MARKER_VALUE) return undefined;
  const n = Number(map.get(RECORD_PARTS_KEY));
  if (!Number.isInteger(n) || n < 1) return undefined;
  let json = "";
  for (let i = 0; i < n; i++) {
    const part = map.get(RECORD_PART_KEY(i));
    if (part === undefined) return undefined;
    json += part;
  }
  try {
    const rec = JSON.parse(json) as ProtectionRecord;
    return rec && rec.version === 1 ? rec : undefined;
  } catch {
    return undefined;
  }
}

/** createTags/deleteTags parameters: tags[0].key=..., tags[0].value=... */
export function tagParams(tags: Tag[], withValues = true): Record<string, string> {
  const out: Record<string, string> = {};
  tags.forEach((t, i) => {
    out[`tags[${i}].key`] = t.key;
    if (withValues) out[`tags[${i}].value`] = t.value;
  });
  return out;
}
