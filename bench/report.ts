import * as fs from "fs";
import * as path from "path";
import type { Row } from "./results";
import type { Machine } from "./machine";
import type { BenchConfig } from "./config";
export interface RunMeta {
  mode: string;
  sections: string[];
  startedAt: string;
  wallSeconds: number;
  sectionSeconds: Record<string, number>;
  machine: Machine;
  config: BenchConfig;
  tickMs: number;
  errors: string[];
}
export function writeReport(dir: string, rows: Row[], meta: RunMeta): void {
  fs.writeFileSync(path.join(dir, "report.md"), `# stub ${rows.length} ${meta.mode}\n`);
}
