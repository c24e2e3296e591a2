/**
 * Recovery drill: prove, without touching production, that a protected VM can be brought back.
 * Restores the newest complete snapshot on a recovery host under another name
 * (`<vm>-drill-<id>`) with recover(..., {asName}), checks from outside that the copy runs and
 * that its state is recent (RPO within policy), optionally that the guest continues (console),
 * checks the production VM is exactly as before, reports RPO/RTO, and removes the copy.
 *
 * A drill killed halfway leaves a copy (or restore staging files) behind: `cleanupDrills()`
 * (`protected-vm drill --cleanup VM`) removes every `<vm>-drill-*` domain, its storage and any
 * snapshots taken of it, on every host. Everything goes through the Backend; the only
 * backend-specific parts are the libvirt pool-directory scan (staging files of a restore cut
 * short) and the optional console check, both through LibvirtBackend.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { Backend } from "../hypervisor/backend";
import type { HostRef, VmInfo } from "../core/model";
import { DOMAIN_NAME_PATTERN } from "../core/policy";
import { recover, RecoveryEvent, RecoveryRefused, RecoveryReport, selectSnapshot } from "./recover";
import { pidAlive } from "../lib/pid";
import { RefusedError } from "../core/errors";

export const DRILL_INFIX = "-drill-";

export class DrillRefused extends RecoveryRefused {}

export interface DrillCheck {
  name: "snapshot-recent" | "copy-running" | "guest-progress" | "production-untouched" | "cleanup";
  ok: boolean;
  detail: string;
}

export interface GuestProbe {
  /** Short name of the probe, for the report. */
  name: string;
  /** Resolves ok when the copy's guest shows it continued from the snapshot (not rebooted) and makes progress. */
  check(copy: { name: string; host: HostRef }): Promise<{ ok: boolean; detail: string }>;
}

export interface DrillOptions {
  repository: string;
  /** Primary first, then recovery hosts; the copy goes to the first live one that is not where production runs. */
  hosts: HostRef[];
  /** Restore the copy on this host. */
  to?: HostRef;
  /** Fail the drill when the newest snapshot is older than this (s). Default: policy maxIntervalSeconds x rpoFactor. */
  maxRpoSeconds?: number;
  /** Default 2: a snapshot may be one interval late plus its own duration. */
  rpoFactor?: number;
  /** Suffix of the copy's name; default a fresh base-36 id. */
  id?: string;
  /** recover()'s verify window (ms). */
  verifyMs?: number;
  /** Optional, backend-specific: does the guest of the copy continue? */
  guestProbe?: GuestProbe;
  /** Leave the copy running (debugging); cleanup is then up to `--cleanup`. */
  keep?: boolean;
  /** Where drills in progress are recorded (for cleanup after a crash). Default $TMPDIR/protected-vm-drills. */
  stateDir?: string;
  onEvent?: (e: RecoveryEvent | { step: string; at: string; detail: string }) => void;
}

export interface DrillReport {
  ok: boolean;
  vm: string;
  drillName: string;
  /** Where the copy ran. */
  host: HostRef | null;
  snapshotId: string | null;
  snapshotCreatedAt: string | null;
  /** Age of the restored state when the drill started (s): what a real failure now would lose. */
  rpoSeconds: number | null;
  maxRpoSeconds: number | null;
  /** Time from drill start to a verified running copy (s). */
  rtoSeconds: number | null;
  path: "warm" | "cold" | null;
  production: { host: HostRef; id: string; state: string } | null;
  checks: DrillCheck[];
  /** Set when the drill stopped on an error (the copy is still cleaned up). */
  error?: string;
  cleanedUp: boolean;
  startedAt: string;
  finishedAt: string;
  events: Array<{ step: string; at: string; detail: string }>;
}

export function drillName(vm: string, id: string): string {
  return `${vm}${DRILL_INFIX}${id}`;
}

export function isDrillOf(vm: string, name: string): boolean {
  return name.startsWith(`${vm}${DRILL_INFIX}`) && /^[a-z0-9]+$/.test(name.slice(vm.length + DRILL_INFIX.length));
}

function newId(): string {
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 2).toString(36)}`;
}

// ---------------------------------------------------------------- journal

interface JournalEntry {
  vm: string;
  drillName: string;
  host: HostRef;
  hosts: HostRef[];
  repository: string;
  pid: number;
  machine: string;
  startedAt: string;
}

export function defaultStateDir(): string {
  return path.join(os.tmpdir(), "protected-vm-drills");
}

function journalPath(stateDir: string, name: string): string {
  return path.join(stateDir, `${name}.json`);
}

function writeJournal(stateDir: string, e: JournalEntry): void {
  fs.mkdirSync(stateDir, { recursive: true });
  const f = journalPath(stateDir, e.drillName);
  fs.writeFileSync(`${f}.tmp`, JSON.stringify(e, null, 2));
  fs.renameSync(`${f}.tmp`, f);
}

function readJournal(stateDir: string, vm: string): JournalEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(stateDir);
  } catch {
    return [];
  }
  const out: JournalEntry[] = [];
  for (const n of names) {
    if (!n.endsWith(".json")) continue;
    try {
      const e = JSON.parse(fs.readFileSync(path.join(stateDir, n), "utf8")) as JournalEntry;
      if (e.vm === vm && isDrillOf(vm, e.drillName)) out.push(e);
    } catch {
      /* a torn entry: ignore */
    }
  }
  return out;
}


// ---------------------------------------------------------------- drill

export async function runDrill(backend: Backend, vm: string, opts: DrillOptions): Promise<DrillReport> {
  const started = Date.now();
  const events: DrillReport["events"] = [];
  const log = (step: string, detail: string) => {
    const e = { step, at: new Date().toISOString(), detail };
    events.push(e);
    opts.onEvent?.(e);
  };
  const id = opts.id ?? newId();
  const name = drillName(vm, id);
  if (!DOMAIN_NAME_PATTERN.test(name)) throw new DrillRefused(`drill copy name ${name} is not a valid VM name (too long?): the drill needs ${vm} + "${DRILL_INFIX}${id}" <= 63 characters`);
  if (opts.hosts.length < 2 && !opts.to) throw new DrillRefused("a drill needs a recovery host: give --hosts PRIMARY,RECOVERY[,...]");

  const checks: DrillCheck[] = [];
  const report: DrillReport = {
    ok: false, vm, drillName: name, host: null, snapshotId: null, snapshotCreatedAt: null, rpoSeconds: null, maxRpoSeconds: null,
    rtoSeconds: null, path: null, production: null, checks, cleanedUp: false, startedAt: new Date(started).toISOString(), finishedAt: "", events,
  };

  // Production, before: where, which instance (id), what state. Never touched after this.
  const alive = new Map<HostRef, boolean>();
  for (const h of opts.hosts) alive.set(h, await backend.hostAlive(h));
  const prod: VmInfo | undefined = await backend.findVm(vm, opts.hosts.filter((h) => alive.get(h)));
  if (!prod) throw new DrillRefused(`${vm} was not found on any live host (${opts.hosts.join(", ")}): nothing to drill against`);
  report.production = { host: prod.host, id: prod.id, state: prod.state };
  log("production", `${vm} is ${prod.state} on ${prod.host} (id ${prod.id})`);

  const policy = prod.protection?.policy;
  const maxRpo = opts.maxRpoSeconds ?? (policy ? policy.maxIntervalSeconds * (opts.rpoFactor ?? 2) : undefined);
  if (maxRpo === undefined) throw new DrillRefused(`${vm} carries no protection record: give --max-rpo-seconds`);
  report.maxRpoSeconds = maxRpo;

  const target = opts.to ?? opts.hosts.find((h) => alive.get(h) && h !== prod.host);
  if (!target) throw new DrillRefused(`no live recovery host other than ${prod.host} among ${opts.hosts.join(", ")}`);
  if (target === prod.host) throw new DrillRefused(`the drill copy must run on another host than production (${prod.host})`);
  if (!(await backend.hostAlive(target))) throw new DrillRefused(`target host ${target} does not answer`);
  report.host = target;

  // Refuse early (nothing created yet) when there is nothing to restore.
  const newest = await selectSnapshot(backend, vm, opts.repository, undefined, (s) => log("select-snapshot", s));
  // RPO: what a failure right now would lose - judged before the restore, so it is reported even if the restore fails.
  const rpo = (started - Date.parse(newest.createdAt)) / 1000;
  report.snapshotId = newest.id;
  report.snapshotCreatedAt = newest.createdAt;
  report.rpoSeconds = round(rpo);
  checks.push({ name: "snapshot-recent", ok: rpo <= maxRpo, detail: `newest snapshot ${newest.id} was ${rpo.toFixed(1)} s old at drill start (limit ${maxRpo} s)` });

  const stateDir = opts.stateDir ?? defaultStateDir();
  writeJournal(stateDir, { vm, drillName: name, host: target, hosts: opts.hosts, repository: opts.repository, pid: process.pid, machine: os.hostname(), startedAt: report.startedAt });
  let rec: RecoveryReport | undefined;
  // A refusal from recover() or from the backend itself (CloudStack: target host not usable,
  // a second copy would run...) is a refusal of the drill (exit 3), not a failed restore (4).
  let refused: RefusedError | undefined;
  try {
    rec = await recover(backend, vm, {
      repository: opts.repository,
      hosts: opts.hosts,
      to: target,
      snapshotId: newest.id,
      asName: name,
      verifyMs: opts.verifyMs,
      onEvent: (e) => log(e.step, e.detail),
    });
    report.rtoSeconds = round(rec.restoreSeconds);
    report.path = rec.path;
    const copy = await backend.findVm(name, [target]);
    checks.push({ name: "copy-running", ok: copy?.state === "running", detail: `${name} is ${copy?.state ?? "missing"} on ${target}` });
    if (opts.guestProbe) {
      const g = await opts.guestProbe.check({ name, host: target }).catch((e: Error) => ({ ok: false, detail: `${opts.guestProbe!.name}: ${e.message}` }));
      checks.push({ name: "guest-progress", ok: g.ok, detail: g.detail });
    }
  } catch (e) {
    if (e instanceof RefusedError) refused = e;
    else {
      // The restore itself failed (or the copy did not stay up): exactly what a drill is for.
      report.error = (e as Error).message;
      checks.push({ name: "copy-running", ok: false, detail: report.error });
    }
    log("error", (e as Error).message);
  } finally {
    // Production after: same host, same instance, same state (a drill must not move or restart it).
    const after = await backend.findVm(vm, [prod.host]).catch(() => undefined);
    const untouched = !!after && after.id === prod.id && after.host === prod.host && after.state === prod.state;
    checks.push({
      name: "production-untouched",
      ok: untouched,
      detail: after ? `${vm} is ${after.state} on ${after.host} (id ${after.id}); before: ${prod.state} on ${prod.host} (id ${prod.id})` : `${vm} is gone from ${prod.host}`,
    });
    if (!opts.keep) {
      const removed = await cleanupDrills(backend, vm, { hosts: opts.hosts, repository: opts.repository, stateDir, only: name, onEvent: (e) => log(e.step, e.detail) });
      const left = removed.remaining;
      report.cleanedUp = left.length === 0;
      checks.push({ name: "cleanup", ok: left.length === 0, detail: left.length ? `left behind: ${left.join("; ")}` : `removed ${name} and its storage from every host` });
    } else {
      log("keep", `leaving ${name} on ${target}: remove it with \`protected-vm drill --cleanup ${vm}\``);
    }
  }
  if (refused) throw refused;
  report.ok = !report.error && checks.every((c) => c.ok);
  report.finishedAt = new Date().toISOString();
  log("done", report.ok ? `drill passed: RPO ${report.rpoSeconds} s, RTO ${report.rtoSeconds} s` : `drill FAILED: ${report.error ?? checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join("; ")}`);
  return report;
}

const round = (x: number) => Math.round(x * 10) / 10;

// ---------------------------------------------------------------- cleanup

export interface CleanupOptions {
  hosts: HostRef[];
  /** Also delete snapshots of drill copies (a scheduler may have snapshotted one) from here. */
  repository?: string;
  stateDir?: string;
  /** Only this drill copy (a finished drill cleaning up after itself). */
  only?: string;
  /** Clean up even when the journal says a drill is still running on this machine. */
  force?: boolean;
  onEvent?: (e: { step: string; at: string; detail: string }) => void;
}

export interface CleanupReport {
  vm: string;
  /** Drill copies found and removed (names). */
  removed: string[];
  /** Snapshots of drill copies deleted from the repository. */
  snapshotsDeleted: string[];
  /** Anything still there after cleanup ("name on host", "file"). Empty on success. */
  remaining: string[];
}

/** Files of drill copies in a libvirt host's pool directory (restore staging, disks, console logs). */
async function libvirtPoolLeftovers(backend: Backend, vm: string, host: HostRef): Promise<{ dir: string; files: string[] } | undefined> {
  const lv = backend as Backend & { consoleLogPath?: (vm: { name: string; host: HostRef }, pool?: string) => Promise<string> };
  if (backend.kind !== "libvirt" || typeof lv.consoleLogPath !== "function") return undefined;
  const dir = path.dirname(await lv.consoleLogPath({ name: `${vm}${DRILL_INFIX}x`, host }));
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return { dir, files: [] };
  }
  return { dir, files: names.filter((n) => n.startsWith(`${vm}${DRILL_INFIX}`)) };
}

function nameOfFile(vm: string, file: string): string | undefined {
  const m = new RegExp(`^(${vm.replace(/[.+?^${}()|[\]\\]/g, "\\$&")}${DRILL_INFIX}[a-z0-9]+)\\.`).exec(file);
  return m?.[1];
}

/**
 * Remove every drill copy of `vm` (`<vm>-drill-*`) on every host: the domain (stopped, undefined,
 * its disk and console log), restore staging files, snapshots of the copy, the journal entry.
 * Production (`vm` itself) is never a candidate: only names with the drill infix and an id.
 */
export async function cleanupDrills(backend: Backend, vm: string, opts: CleanupOptions): Promise<CleanupReport> {
  const log = (step: string, detail: string) => opts.onEvent?.({ step: "cleanup", at: new Date().toISOString(), detail: `${step}: ${detail}` });
  const stateDir = opts.stateDir ?? defaultStateDir();
  const want = (n: string) => isDrillOf(vm, n) && (!opts.only || n === opts.only);
  const journal = readJournal(stateDir, vm).filter((e) => want(e.drillName));
  if (!opts.force && !opts.only) {
    const running = journal.filter((e) => e.machine === os.hostname() && e.pid !== process.pid && pidAlive(e.pid));
    if (running.length) {
      throw new DrillRefused(`drill ${running.map((e) => `${e.drillName} (pid ${e.pid})`).join(", ")} is still running on this machine: stop it first, or use --force`);
    }
  }
  const hosts = [...new Set([...opts.hosts, ...journal.flatMap((e) => [e.host, ...e.hosts])])];
  const removed = new Set<string>();
  const snapshotsDeleted: string[] = [];

  const findCandidates = async (): Promise<Map<HostRef, Set<string>>> => {
    const found = new Map<HostRef, Set<string>>();
    const add = (h: HostRef, n: string) => found.set(h, new Set([...(found.get(h) ?? []), n]));
    for (const h of hosts) {
      if (!(await backend.hostAlive(h))) {
        log("skip", `${h} does not answer`);
        continue;
      }
      for (const e of journal) add(h, e.drillName);
      if (opts.only) add(h, opts.only);
      for (const info of await backend.listProtectedVms(h).catch(() => [] as VmInfo[])) if (want(info.name)) add(h, info.name);
      const pool = await libvirtPoolLeftovers(backend, vm, h).catch(() => undefined);
      for (const f of pool?.files ?? []) {
        const n = nameOfFile(vm, f);
        if (n && want(n)) add(h, n);
      }
    }
    return found;
  };

  const remaining: string[] = [];
  // Two passes: a restore cut short may still be finishing in libvirt when the first pass runs.
  for (let pass = 0; pass < 2; pass++) {
    remaining.length = 0;
    const candidates = await findCandidates();
    for (const [h, names] of candidates) {
      for (const n of names) {
        const info = await backend.findVm(n, [h]).catch(() => undefined);
        if (info) log("remove", `${n} (${info.state}) on ${h}`);
        await backend.deleteVm({ name: n, host: h }).catch((e: Error) => log("error", `deleteVm ${n} on ${h}: ${e.message}`));
        if (info) removed.add(n);
      }
      const pool = await libvirtPoolLeftovers(backend, vm, h).catch(() => undefined);
      for (const f of pool?.files ?? []) {
        const n = nameOfFile(vm, f);
        if (!n || !want(n)) continue;
        fs.rmSync(path.join(pool!.dir, f), { recursive: true, force: true });
        log("remove", `${path.join(pool!.dir, f)}`);
        removed.add(n);
      }
    }
    if (opts.repository && backend.listRepositoryVms) {
      const names = await backend.listRepositoryVms(opts.repository).catch(() => [] as string[]);
      for (const n of names.filter(want)) {
        for (const s of await backend.listSnapshots(n, opts.repository)) {
          await backend.deleteSnapshot(s, opts.repository);
          snapshotsDeleted.push(`${n}/${s.id}`);
          log("remove", `snapshot ${s.id} of ${n}`);
        }
      }
    }
    // What is left?
    for (const h of hosts) {
      if (!(await backend.hostAlive(h))) continue;
      for (const n of new Set([...removed, ...journal.map((e) => e.drillName), ...(opts.only ? [opts.only] : [])])) {
        const info = await backend.findVm(n, [h]).catch(() => undefined);
        if (info) remaining.push(`${n} (${info.state}) on ${h}`);
      }
      const pool = await libvirtPoolLeftovers(backend, vm, h).catch(() => undefined);
      for (const f of pool?.files ?? []) if (want(nameOfFile(vm, f) ?? "")) remaining.push(path.join(pool!.dir, f));
    }
    if (remaining.length === 0) break;
    await new Promise((r) => setTimeout(r, 3000));
  }
  if (remaining.length === 0) {
    for (const e of journal) fs.rmSync(journalPath(stateDir, e.drillName), { force: true });
    if (opts.only) fs.rmSync(journalPath(stateDir, opts.only), { force: true });
  }
  return { vm, removed: [...removed], snapshotsDeleted, remaining };
}

// ---------------------------------------------------------------- libvirt console probe

/**
 * libvirt, optional: the copy's serial console (logged in its pool directory) shows a counter
 * that continues from the snapshot - the first value after restore is above `rebootValue`
 * (a reboot would start over) - and keeps increasing during `watchMs`.
 */
export function libvirtConsoleProbe(backend: Backend, opts: { pattern?: RegExp; watchMs?: number; rebootValue?: number } = {}): GuestProbe | undefined {
  const lv = backend as Backend & { consoleLogPath?: (vm: { name: string; host: HostRef }, pool?: string) => Promise<string> };
  if (backend.kind !== "libvirt" || typeof lv.consoleLogPath !== "function") return undefined;
  const pattern = opts.pattern ?? /^PVCOUNT (\d+)/gm;
  const re = new RegExp(pattern.source, pattern.flags.includes("g") ? pattern.flags : pattern.flags + "g");
  const values = (file: string) => {
    let text = "";
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      return [];
    }
    return [...text.matchAll(re)].map((m) => Number(m[1]));
  };
  return {
    name: "console",
    async check(copy) {
      const file = await lv.consoleLogPath!(copy);
      const deadline = Date.now() + (opts.watchMs ?? 15_000);
      let seen: number[] = [];
      while (Date.now() < deadline) {
        seen = values(file);
        if (seen.length >= 2 && seen[seen.length - 1] > seen[0]) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      if (seen.length === 0) return { ok: false, detail: `no counter line matching ${pattern} in ${file}` };
      const first = seen[0];
      const last = seen[seen.length - 1];
      const continued = first > (opts.rebootValue ?? 1);
      const progressing = last > first;
      return {
        ok: continued && progressing,
        detail: `console ${file}: first counter ${first}${continued ? " (continued from the snapshot)" : " (looks like a reboot)"}, last ${last}${progressing ? "" : " (not progressing)"}`,
      };
    },
  };
}

/** A short human-readable report for CI logs. */
export function formatDrillReport(r: DrillReport): string {
  const lines = [
    `drill ${r.ok ? "PASSED" : "FAILED"}: ${r.vm} restored as ${r.drillName} on ${r.host ?? "-"}`,
    `  snapshot ${r.snapshotId ?? "-"} (${r.snapshotCreatedAt ?? "-"}), path ${r.path ?? "-"}`,
    `  RPO ${r.rpoSeconds ?? "-"} s (limit ${r.maxRpoSeconds ?? "-"} s), RTO ${r.rtoSeconds ?? "-"} s`,
    ...r.checks.map((c) => `  [${c.ok ? "ok" : "FAIL"}] ${c.name}: ${c.detail}`),
  ];
  if (r.error) lines.push(`  error: ${r.error}`);
  lines.push(`  copy ${r.cleanedUp ? "removed" : "NOT removed (run: protected-vm drill --cleanup " + r.vm + ")"}`);
  return lines.join("\n") + "\n";
}
