/** The raw data of a bench run: one long-format CSV row per measured value, appended as it is measured. */
import * as fs from "fs";

export interface Row {
  /** machine | take-restore | recovery | overhead | pause */
  section: string;
  /** What was measured: ours, raw-libvirt, disk-floor, recover, cold-boot, fixed-5s, adaptive, ... */
  variant: string;
  memMiB?: number;
  loadPct?: number;
  rep?: number;
  metric: string;
  value: number;
  unit: string;
  note?: string;
}

export const CSV_HEADER = "section,variant,mem_mib,load_pct,rep,metric,value,unit,note";

function cell(v: unknown): string {
  if (v === undefined || v === null) return "";
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function rowToCsv(r: Row): string {
  return [r.section, r.variant, r.memMiB, r.loadPct, r.rep, r.metric, r.value, r.unit, r.note].map(cell).join(",");
}

/** Parse our own CSV back (quoted fields supported). */
export function parseCsv(text: string): Row[] {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const out: Row[] = [];
  for (const line of lines.slice(1)) {
    const f: string[] = [];
    let cur = "";
    let q = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (q) {
        if (c === '"' && line[i + 1] === '"') {
          cur += '"';
          i++;
        } else if (c === '"') q = false;
        else cur += c;
      } else if (c === '"') q = true;
      else if (c === ",") {
        f.push(cur);
        cur = "";
      } else cur += c;
    }
    f.push(cur);
    const num = (s: string) => (s === "" ? undefined : Number(s));
    out.push({ section: f[0], variant: f[1], memMiB: num(f[2]), loadPct: num(f[3]), rep: num(f[4]), metric: f[5], value: Number(f[6]), unit: f[7], note: f[8] || undefined });
  }
  return out;
}

export class Recorder {
  readonly rows: Row[] = [];
  constructor(readonly file: string) {
    fs.writeFileSync(file, CSV_HEADER + "\n");
  }
  add(r: Row): void {
    if (!Number.isFinite(r.value)) return; // never write NaN/Infinity as a figure
    this.rows.push(r);
    fs.appendFileSync(this.file, rowToCsv(r) + "\n");
  }
  /** Add several metrics sharing the same keys. */
  addAll(keys: Omit<Row, "metric" | "value" | "unit">, metrics: Array<[metric: string, value: number, unit: string]>): void {
    for (const [metric, value, unit] of metrics) this.add({ ...keys, metric, value, unit });
  }
}
