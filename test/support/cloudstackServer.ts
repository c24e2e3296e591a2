/**
 * A loopback CloudStack API server for tests, written from CloudStack's published API
 * documentation and its rules (see test/support/cloudstack/verify.ts for request signing).
 *
 * - Node http on 127.0.0.1, random port; GET query strings and POST form bodies.
 * - Verifies signatures (version 3 with expiry) and answers 401 like CloudStack.
 * - Answers CloudStack-shaped JSON: {"<command>response": {...}}, errors as
 *   {"<command>response": {"uuidList":[],"errorcode":431,"cserrorcode":4350,"errortext":"..."}}
 *   with the HTTP status equal to errorcode; empty lists as {"<command>response": {}}.
 * - Keeps state: zones, hosts, primary storage pools, offerings, templates, VMs, ROOT volumes,
 *   VM snapshots, volume snapshots (secondary storage), tags, snapshot policies, async jobs.
 * - Async commands return {jobid[, id]} at once and finish after `jobDurationMs`.
 * - CloudStack's rules that matter here: memory snapshots need a Running VM; KVM refuses a
 *   disk-only VM snapshot of a running VM; a running VM reverts only to a DiskAndMemory
 *   snapshot and a stopped one only to a Disk snapshot; one VM-snapshot task per VM at a time
 *   ("please try again later"); at most vmsnapshot.max (10) VM snapshots; a volume snapshot of
 *   a running KVM VM is refused unless kvm.snapshot.enabled; hostid needs a root admin.
 *   Each rule that decides whether a VM survives cites the CloudStack source (apache/cloudstack)
 *   it was read from, beside the code that models it.
 * - Fault hooks: drop the next connection (before or after the command ran), answer the next
 *   request with an error code (530...) or a bare HTTP status, fail the next async job, take a
 *   host through Disconnected to Down, make a primary pool's NFS export unreachable (the pool
 *   stays Up, as in CloudStack), slow jobs down.
 * - A guest model: each VM has `memory` and `disk` contents; snapshots capture them, revert
 *   restores both, a (re)start boots with empty memory. Tests read them to check what a user
 *   would see after recovery.
 */
import * as http from "http";
import { AddressInfo } from "net";
import { randomUUID } from "crypto";
import { verifyRequest } from "./cloudstack/verify";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export class ApiError extends Error {
  constructor(readonly code: number, readonly text: string, readonly csErrorCode = code === 431 ? 4350 : code === 530 ? 4250 : 9999) {
    super(text);
  }
}

export interface Host {
  id: string;
  name: string;
  state: "Up" | "Down" | "Disconnected" | "Alert" | "Connecting";
  /** Every state the host has been in, oldest first (tests check the path a failure took). */
  history: string[];
  resourcestate: "Enabled" | "Disabled" | "Maintenance" | "PrepareForMaintenance";
  zoneid: string;
}
export interface Pool {
  id: string;
  name: string;
  /**
   * api/src/main/java/com/cloud/storage/StoragePoolStatus.java has no Down: a pool whose NFS
   * export cannot be reached stays Up in the API; only `reachable` (below) says so.
   */
  state: "Up" | "PrepareForMaintenance" | "Maintenance" | "Disabled";
  /** Whether the NFS export answers (not visible through the API). */
  reachable: boolean;
  zoneid: string;
}
export interface Offering {
  id: string;
  name: string;
  cpunumber: number;
  memory: number;
}
export interface Template {
  id: string;
  name: string;
  displaytext: string;
  ostypeid: string;
  zoneid: string;
  disk: string;
  isready: boolean;
  fromSnapshot?: string;
  created: string;
  status: string;
}
export interface Vm {
  id: string;
  name: string;
  displayname: string;
  state: string;
  hostid?: string;
  lasthostid?: string;
  zoneid: string;
  serviceofferingid: string;
  templateid: string;
  guestosid: string;
  cpunumber: number;
  memory: number;
  created: string;
  networkids: string[];
  userdata?: string;
  cpuUsedPercent: number;
  /** Guest model: what is in RAM (lost on a cold boot). */
  guestMemory: string;
  /** Boot count: every start/deploy increments it; a revert to a memory snapshot restores it. */
  boots: number;
}
export interface Volume {
  id: string;
  name: string;
  type: "ROOT";
  virtualmachineid?: string;
  /** Unset while Allocated: the pool is chosen at the VM's first start. */
  storageid?: string;
  size: number;
  state: string;
  disk: string;
  created: string;
}
export interface VmSnapshot {
  id: string;
  name: string;
  displayname: string;
  description?: string;
  state: "Allocated" | "Creating" | "Ready" | "Reverting" | "Expunging" | "Error";
  type: "Disk" | "DiskAndMemory";
  current: boolean;
  parent?: string;
  created: string;
  virtualmachineid: string;
  zoneid: string;
  memory?: string;
  boots?: number;
  disk: string;
  poolid: string;
}
export interface VolumeSnapshot {
  id: string;
  name: string;
  volumeid: string;
  vmsnapshotid?: string;
  state: "Allocated" | "Creating" | "BackingUp" | "BackedUp" | "Error" | "CreatedOnPrimary";
  snapshottype: "MANUAL" | "RECURRING";
  created: string;
  physicalsize: number;
  virtualsize: number;
  zoneid: string;
  ostypeid: string;
  disk: string;
}
export interface Tag {
  key: string;
  value: string;
  resourcetype: string;
  resourceid: string;
}
export interface Job {
  jobid: string;
  cmd: string;
  jobstatus: 0 | 1 | 2;
  jobresultcode: number;
  jobresult?: Json;
  jobinstanceid?: string;
  created: string;
  completed?: string;
}
export interface SnapshotPolicyRec {
  id: string;
  volumeid: string;
  intervaltype: string;
  schedule: string;
  maxsnaps: number;
  timezone: string;
}

export interface RequestRecord {
  command: string;
  method: string;
  /** Parameter names only (values may be secret). */
  paramNames: string[];
  status: number;
  at: number;
}

export interface FakeCloudStackOptions {
  /** How long an async job runs. Default 30 ms. */
  jobDurationMs?: number;
  /** CloudStack's vmsnapshot.max. Default 10. */
  vmSnapshotMax?: number;
  /** CloudStack's kvm.snapshot.enabled (volume snapshots of running KVM VMs). Default false. */
  kvmSnapshotEnabled?: boolean;
  /** When a host goes Down, mark its VMs Stopped (as HA investigation eventually does). Default false: they stay "Running". */
  stopVmsOnHostDown?: boolean;
  /** Require signature version 3 with expires on every request. Default true. */
  requireExpires?: boolean;
}

const ASYNC_CMD_CLASS: Record<string, string> = {
  deployvirtualmachine: "org.apache.cloudstack.api.command.admin.vm.DeployVMCmdByAdmin",
  startvirtualmachine: "org.apache.cloudstack.api.command.admin.vm.StartVMCmdByAdmin",
  stopvirtualmachine: "org.apache.cloudstack.api.command.admin.vm.StopVMCmdByAdmin",
  destroyvirtualmachine: "org.apache.cloudstack.api.command.admin.vm.DestroyVMCmdByAdmin",
  createvmsnapshot: "org.apache.cloudstack.api.command.user.vmsnapshot.CreateVMSnapshotCmd",
  deletevmsnapshot: "org.apache.cloudstack.api.command.user.vmsnapshot.DeleteVMSnapshotCmd",
  reverttovmsnapshot: "org.apache.cloudstack.api.command.user.vmsnapshot.RevertToVMSnapshotCmd",
  createsnapshotfromvmsnapshot: "org.apache.cloudstack.api.command.user.snapshot.CreateSnapshotFromVMSnapshotCmd",
  createsnapshot: "org.apache.cloudstack.api.command.user.snapshot.CreateSnapshotCmd",
  deletesnapshot: "org.apache.cloudstack.api.command.user.snapshot.DeleteSnapshotCmd",
  createtemplate: "org.apache.cloudstack.api.command.admin.template.CreateTemplateCmdByAdmin",
  deletetemplate: "org.apache.cloudstack.api.command.user.template.DeleteTemplateCmd",
  createtags: "org.apache.cloudstack.api.command.user.tag.CreateTagsCmd",
  deletetags: "org.apache.cloudstack.api.command.user.tag.DeleteTagsCmd",
};

const ADMIN_ONLY = new Set(["listhosts", "liststoragepools"]);

function ts(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}+0000`;
}

function invalidId(cmd: string, param: string, value: string): ApiError {
  return new ApiError(
    431,
    `Unable to execute API command ${cmd} due to invalid value. Invalid parameter ${param} value=${value} due to incorrect long value format, or entity does not exist or due to incorrect parameter annotation for the field in api cmd class.`,
  );
}

interface PendingFault {
  command?: string;
}

export class FakeCloudStack {
  readonly apiKey = "pvm-test-api-key-" + randomUUID();
  readonly secretKey = "pvm-test-secret-" + randomUUID();
  /** A key pair with the User role (no root-admin commands). */
  readonly userApiKey = "pvm-test-user-key-" + randomUUID();
  readonly userSecretKey = "pvm-test-user-secret-" + randomUUID();

  jobDurationMs: number;
  vmSnapshotMax: number;
  kvmSnapshotEnabled: boolean;
  stopVmsOnHostDown: boolean;
  requireExpires: boolean;

  readonly zones = new Map<string, Json>();
  readonly hosts = new Map<string, Host>();
  readonly pools = new Map<string, Pool>();
  readonly offerings = new Map<string, Offering>();
  readonly templates = new Map<string, Template>();
  readonly vms = new Map<string, Vm>();
  readonly volumes = new Map<string, Volume>();
  readonly vmSnapshots = new Map<string, VmSnapshot>();
  readonly snapshots = new Map<string, VolumeSnapshot>();
  readonly snapshotPolicies = new Map<string, SnapshotPolicyRec>();
  tags: Tag[] = [];
  readonly jobs = new Map<string, Job>();
  readonly requests: RequestRecord[] = [];

  private readonly keys = new Map<string, { secret: string; admin: boolean }>();
  private server?: http.Server;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly drops: (PendingFault & { afterProcessing: boolean })[] = [];
  private readonly errors: (PendingFault & { code: number; text: string })[] = [];
  private readonly jobFailures: (PendingFault & { code: number; text: string })[] = [];
  private readonly httpFailures: (PendingFault & { status: number })[] = [];
  private seq = 0;
  url = "";

  // Fixed ids for tests.
  readonly zoneId = "z1-" + randomUUID().slice(0, 8);
  readonly hostIds: [string, string, string];
  readonly poolIds: [string, string];
  readonly offeringId: string;
  readonly templateId: string;

  constructor(opts: FakeCloudStackOptions = {}) {
    this.jobDurationMs = opts.jobDurationMs ?? 30;
    this.vmSnapshotMax = opts.vmSnapshotMax ?? 10;
    this.kvmSnapshotEnabled = opts.kvmSnapshotEnabled ?? false;
    this.stopVmsOnHostDown = opts.stopVmsOnHostDown ?? false;
    this.requireExpires = opts.requireExpires ?? true;
    this.keys.set(this.apiKey, { secret: this.secretKey, admin: true });
    this.keys.set(this.userApiKey, { secret: this.userSecretKey, admin: false });
    this.zones.set(this.zoneId, { id: this.zoneId, name: "zone1", allocationstate: "Enabled", networktype: "Advanced" });
    this.hostIds = ["kvm1", "kvm2", "kvm3"].map((n) => {
      const id = this.newId();
      this.hosts.set(id, { id, name: n, state: "Up", history: ["Up"], resourcestate: "Enabled", zoneid: this.zoneId });
      return id;
    }) as [string, string, string];
    this.poolIds = ["nfs-primary-1", "nfs-primary-2"].map((n) => {
      const id = this.newId();
      this.pools.set(id, { id, name: n, state: "Up", reachable: true, zoneid: this.zoneId });
      return id;
    }) as [string, string];
    this.offeringId = this.newId();
    this.offerings.set(this.offeringId, { id: this.offeringId, name: "Small Instance", cpunumber: 1, memory: 1024 });
    this.templateId = this.newId();
    this.templates.set(this.templateId, {
      id: this.templateId,
      name: "ubuntu-22.04",
      displaytext: "Ubuntu 22.04",
      ostypeid: "os-ubuntu",
      zoneid: this.zoneId,
      disk: "template:ubuntu-22.04",
      isready: true,
      created: ts(),
      status: "Download Complete",
    });
  }

  private newId(): string {
    return randomUUID();
  }

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}/client/api`;
    return this.url;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (this.server) {
      this.server.closeAllConnections?.();
      await new Promise<void>((resolve) => this.server!.close(() => resolve()));
    }
  }

  // ---------------------------------------------------------------- fault hooks

  /** Drop the next matching request's connection; afterProcessing: the command runs first, then its answer is lost. */
  dropNextConnection(opts: { command?: string; afterProcessing?: boolean } = {}): void {
    this.drops.push({ command: opts.command?.toLowerCase(), afterProcessing: opts.afterProcessing ?? false });
  }

  /** Answer the next matching request with this error code (default 530) without running it. */
  failNextRequest(opts: { command?: string; code?: number; text?: string } = {}): void {
    this.errors.push({
      command: opts.command?.toLowerCase(),
      code: opts.code ?? 530,
      text: opts.text ?? "Internal error executing command, please contact your system administrator",
    });
  }

  /** Make the next matching async job fail (jobstatus 2) with this code and text. */
  failNextJob(opts: { command?: string; code?: number; text?: string } = {}): void {
    this.jobFailures.push({ command: opts.command?.toLowerCase(), code: opts.code ?? 530, text: opts.text ?? "Job failed: injected failure" });
  }

  /** Answer the next matching request with a bare HTTP status and no CloudStack body (a proxy's 500). */
  failNextHttp(opts: { command?: string; status?: number } = {}): void {
    this.httpFailures.push({ command: opts.command?.toLowerCase(), status: opts.status ?? 500 });
  }

  /**
   * Move a host to `state` along the transitions CloudStack allows
   * (api/src/main/java/com/cloud/host/Status.java, the s_fsm table): a host that stops answering
   * goes Up -> Disconnected (agent lost) and only then Down, once the HA investigators
   * (HighAvailabilityManagerImpl, AgentManagerImpl.handleDisconnectWithInvestigation) confirm it
   * - or Alert when they cannot tell. So setHostState(h, "Down") on an Up host passes through
   * Disconnected, which `history` records.
   */
  setHostState(hostId: string, state: Host["state"]): void {
    const h = this.mustHost(hostId);
    if (h.state === "Up" && (state === "Down" || state === "Alert")) h.history.push("Disconnected");
    h.state = state;
    h.history.push(state);
    if (state === "Down" && this.stopVmsOnHostDown) {
      for (const vm of this.vms.values()) {
        if (vm.hostid === hostId && vm.state === "Running") {
          vm.state = "Stopped";
          vm.lasthostid = vm.hostid;
          vm.hostid = undefined;
          vm.guestMemory = "";
        }
      }
    }
  }

  /**
   * The NFS export behind a primary pool stops answering (default: the first pool, where new VMs
   * land). CloudStack keeps the pool Up (StoragePoolStatus has no Down); what fails is every
   * operation that touches its volumes: starts (533), VM snapshots, reverts and backups (530).
   */
  losePrimaryStorage(poolId: string = this.poolIds[0]): void {
    const p = this.pools.get(poolId);
    if (!p) throw new Error(`no pool ${poolId}`);
    p.reachable = false;
  }

  restorePrimaryStorage(poolId: string = this.poolIds[0]): void {
    const p = this.pools.get(poolId);
    if (!p) throw new Error(`no pool ${poolId}`);
    p.reachable = true;
  }

  // ---------------------------------------------------------------- guest model helpers

  vmByName(name: string): Vm | undefined {
    return [...this.vms.values()].find((v) => (v.name === name || v.displayname === name) && v.state !== "Expunging" && v.state !== "Destroyed");
  }
  /** Every live VM with this display name or host name (a test counts copies). */
  vmsByName(name: string): Vm[] {
    return [...this.vms.values()].filter((v) => (v.name === name || v.displayname === name) && v.state !== "Expunging" && v.state !== "Destroyed");
  }
  writeGuestMemory(vmId: string, text: string): void {
    this.mustVm(vmId).guestMemory = text;
  }
  writeGuestDisk(vmId: string, text: string): void {
    this.rootVolume(vmId).disk = text;
  }
  guestDisk(vmId: string): string {
    return this.rootVolume(vmId).disk;
  }
  setCpu(vmId: string, percent: number): void {
    this.mustVm(vmId).cpuUsedPercent = percent;
  }
  tagsOf(resourceId: string): Record<string, string> {
    return Object.fromEntries(this.tags.filter((t) => t.resourceid === resourceId).map((t) => [t.key, t.value]));
  }
  commandCount(command: string): number {
    return this.requests.filter((r) => r.command === command.toLowerCase()).length;
  }

  private mustHost(id: string): Host {
    const h = this.hosts.get(id);
    if (!h) throw new Error(`no host ${id}`);
    return h;
  }
  private mustVm(id: string): Vm {
    const v = this.vms.get(id);
    if (!v) throw new Error(`no vm ${id}`);
    return v;
  }
  rootVolume(vmId: string): Volume {
    const v = [...this.volumes.values()].find((x) => x.virtualmachineid === vmId && x.type === "ROOT");
    if (!v) throw new Error(`no root volume for ${vmId}`);
    return v;
  }

  // ---------------------------------------------------------------- HTTP

  private async readParams(req: http.IncomingMessage): Promise<Map<string, string>> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const params = new Map<string, string>();
    for (const [k, v] of url.searchParams) params.set(k, v);
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks).toString("utf8");
      for (const [k, v] of new URLSearchParams(body)) params.set(k, v);
    }
    return params;
  }

  private send(res: http.ServerResponse, status: number, body: Json): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), Connection: "close" });
    res.end(text);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (url.pathname !== "/client/api") {
      res.writeHead(404, { "Content-Type": "text/html" });
      res.end("<html><body>Not Found</body></html>");
      return;
    }
    const params = await this.readParams(req);
    let command = "";
    for (const [k, v] of params) if (k.toLowerCase() === "command") command = v;
    const lc = command.toLowerCase();
    const responseKey = `${lc}response`;
    const record: RequestRecord = { command: lc, method: req.method ?? "GET", paramNames: [...params.keys()], status: 200, at: Date.now() };
    this.requests.push(record);

    const dropIdx = this.drops.findIndex((d) => !d.command || d.command === lc);
    const drop = dropIdx >= 0 ? this.drops.splice(dropIdx, 1)[0] : undefined;
    if (drop && !drop.afterProcessing) {
      record.status = -1;
      req.socket.destroy();
      return;
    }

    const fail = (status: number, text: string, cs?: number) => {
      record.status = status;
      if (drop) {
        req.socket.destroy();
        return;
      }
      this.send(res, status, { [responseKey]: { uuidList: [], errorcode: status, cserrorcode: cs ?? (status === 431 ? 4350 : status === 530 ? 4250 : 9999), errortext: text } });
    };

    const v = verifyRequest(params, (k) => this.keys.get(k)?.secret);
    const hasV3 = [...params.entries()].some(([k, val]) => k.toLowerCase() === "signatureversion" && val === "3");
    if (!v.ok || (this.requireExpires && !hasV3)) {
      fail(401, "unable to verify user credentials and/or request signature");
      return;
    }
    const admin = this.keys.get(v.apiKey)!.admin;

    const httpIdx = this.httpFailures.findIndex((e) => !e.command || e.command === lc);
    if (httpIdx >= 0) {
      const f = this.httpFailures.splice(httpIdx, 1)[0];
      record.status = f.status;
      res.writeHead(f.status, { "Content-Type": "text/html", Connection: "close" });
      res.end(`<html><body><h1>${f.status}</h1></body></html>`);
      return;
    }

    const errIdx = this.errors.findIndex((e) => !e.command || e.command === lc);
    if (errIdx >= 0) {
      const e = this.errors.splice(errIdx, 1)[0];
      fail(e.code, e.text);
      return;
    }

    const p: Record<string, string> = {};
    for (const [k, val] of params) p[k.toLowerCase()] = val;
    try {
      if (ADMIN_ONLY.has(lc) && !admin) {
        throw new ApiError(432, `The given command '${command}' either does not exist, is not available for user.`);
      }
      if (p.hostid && !admin && (lc === "deployvirtualmachine" || lc === "startvirtualmachine")) {
        throw new ApiError(531, "Parameter hostid can only be specified by a Root Admin, permission denied");
      }
      if (lc === "deployvirtualmachine" && p.userdata && req.method !== "POST" && p.userdata.length > 4096) {
        throw new ApiError(431, "User data is too long for an http GET request");
      }
      const body = this.dispatch(lc, command, p);
      record.status = 200;
      if (drop) {
        req.socket.destroy();
        return;
      }
      this.send(res, 200, { [responseKey]: body });
    } catch (e) {
      if (e instanceof ApiError) fail(e.code, e.text, e.csErrorCode);
      else fail(530, `Internal error executing command: ${(e as Error).message}`);
    }
  }

  // ---------------------------------------------------------------- jobs

  private startJob(lc: string, instanceId: string | undefined, work: () => Json, onFail?: () => void): string {
    const jobid = this.newId();
    const job: Job = { jobid, cmd: ASYNC_CMD_CLASS[lc] ?? lc, jobstatus: 0, jobresultcode: 0, jobinstanceid: instanceId, created: ts() };
    this.jobs.set(jobid, job);
    const fIdx = this.jobFailures.findIndex((f) => !f.command || f.command === lc);
    const injected = fIdx >= 0 ? this.jobFailures.splice(fIdx, 1)[0] : undefined;
    const t = setTimeout(() => {
      this.timers.delete(t);
      try {
        if (injected) throw new ApiError(injected.code, injected.text);
        job.jobresult = work();
        job.jobstatus = 1;
      } catch (e) {
        const err = e instanceof ApiError ? e : new ApiError(530, (e as Error).message);
        try {
          onFail?.();
        } catch {
          /* debris stays as it is */
        }
        job.jobstatus = 2;
        job.jobresultcode = err.code;
        job.jobresult = { errorcode: err.code, errortext: err.text };
      }
      job.completed = ts();
    }, this.jobDurationMs);
    this.timers.add(t);
    return jobid;
  }

  // ---------------------------------------------------------------- responses

  private vmJson(vm: Vm): Json {
    const off = this.offerings.get(vm.serviceofferingid);
    const host = vm.hostid ? this.hosts.get(vm.hostid) : undefined;
    return {
      id: vm.id,
      name: vm.name,
      displayname: vm.displayname,
      state: vm.state,
      ...(host ? { hostid: host.id, hostname: host.name } : {}),
      zoneid: vm.zoneid,
      zonename: this.zones.get(vm.zoneid)?.name,
      serviceofferingid: vm.serviceofferingid,
      serviceofferingname: off?.name,
      templateid: vm.templateid,
      guestosid: vm.guestosid,
      cpunumber: vm.cpunumber,
      memory: vm.memory,
      cpuused: vm.state === "Running" ? `${vm.cpuUsedPercent.toFixed(2)}%` : undefined,
      created: vm.created,
      hypervisor: "KVM",
      haenable: false,
      nic: vm.networkids.map((n, i) => ({ id: `${vm.id}-nic${i}`, networkid: n, isdefault: i === 0 })),
      tags: this.tags.filter((t) => t.resourceid === vm.id && t.resourcetype === "UserVm").map((t) => ({ ...t, resourceid: vm.id })),
    };
  }

  private vmSnapJson(s: VmSnapshot): Json {
    return {
      id: s.id,
      name: s.name,
      displayname: s.displayname,
      description: s.description,
      state: s.state,
      type: s.type,
      current: s.current,
      parent: s.parent,
      created: s.created,
      virtualmachineid: s.virtualmachineid,
      zoneid: s.zoneid,
      hypervisor: "KVM",
    };
  }

  private snapJson(s: VolumeSnapshot): Json {
    const vol = this.volumes.get(s.volumeid);
    return {
      id: s.id,
      name: s.name,
      volumeid: s.volumeid,
      volumename: vol?.name,
      volumetype: "ROOT",
      state: s.state,
      snapshottype: s.snapshottype,
      intervaltype: "MANUAL",
      created: s.created,
      physicalsize: s.physicalsize,
      virtualsize: s.virtualsize,
      zoneid: s.zoneid,
      ostypeid: s.ostypeid,
      locationtype: "SECONDARY",
      tags: this.tags.filter((t) => t.resourceid === s.id).map((t) => ({ ...t })),
    };
  }

  private templateJson(t: Template): Json {
    return { id: t.id, name: t.name, displaytext: t.displaytext, ostypeid: t.ostypeid, zoneid: t.zoneid, isready: t.isready, status: t.status, created: t.created, hypervisor: "KVM", templatetype: "USER" };
  }

  private list(items: Json[], key: string, p: Record<string, string>): Json {
    if (items.length === 0) return {};
    const page = Number(p.page ?? 1);
    const size = Number(p.pagesize ?? 500);
    const slice = p.page ? items.slice((page - 1) * size, page * size) : items;
    return slice.length ? { count: items.length, [key]: slice } : { count: items.length };
  }

  private tagFilter(p: Record<string, string>): Array<{ key: string; value?: string }> {
    const out: Array<{ key: string; value?: string }> = [];
    for (let i = 0; p[`tags[${i}].key`] !== undefined; i++) out.push({ key: p[`tags[${i}].key`], value: p[`tags[${i}].value`] });
    return out;
  }

  // ---------------------------------------------------------------- commands

  private need(cmd: string, p: Record<string, string>, ...names: string[]): void {
    for (const n of names) if (p[n] === undefined || p[n] === "") throw new ApiError(431, `Unable to execute API command ${cmd} due to missing parameter ${n}`);
  }

  private vmFor(cmd: string, id: string, param = "id"): Vm {
    const vm = this.vms.get(id);
    if (!vm || vm.state === "Expunging") throw invalidId(cmd, param, id);
    return vm;
  }

  /**
   * A pool the planner may put a new volume on: Up in the API. The first start on a pool whose
   * export does not answer fails on the host, and VirtualMachineManagerImpl.orchestrateStart
   * (engine/orchestration/.../VirtualMachineManagerImpl.java) plans again with that pool in the
   * avoid set, so a new volume ends up on a pool that works when there is one.
   */
  private poolForNewVolume(): Pool | undefined {
    return [...this.pools.values()].find((x) => x.state === "Up" && x.reachable);
  }

  /**
   * server/src/main/java/com/cloud/vm/UserVmManagerImpl.java (startVirtualMachine): a host
   * given with hostid must be Up and Enabled, else InvalidParameterValueException (431) "...
   * host is not in the right state" - CloudStack does not fall back to another host.
   */
  private checkDestinationHost(hostid: string): Host {
    const h = this.hosts.get(hostid);
    if (!h) throw invalidId("startVirtualMachine", "hostid", hostid);
    if (h.state !== "Up" || h.resourcestate !== "Enabled") {
      throw new ApiError(431, `Cannot deploy the VM to specified host ${h.id}, host ${h.name} is not in the right state (${h.state}/${h.resourcestate})`);
    }
    return h;
  }

  /**
   * Start `vm`: pick the host (the requested one, else the first usable), create its ROOT
   * volume on a pool at the first start, and fail as CloudStack does when the volume's pool does
   * not answer: the agent cannot start the guest, every host fails the same way, and
   * orchestrateStart ends with InsufficientServerCapacityException - errorcode 533.
   */
  private bootOn(cmd: string, vm: Vm, hostid?: string): void {
    const usable = (h: Host) => h.state === "Up" && h.resourcestate === "Enabled";
    const h = hostid ? this.checkDestinationHost(hostid) : [...this.hosts.values()].find(usable);
    if (!h) throw new ApiError(533, `Unable to create a deployment for VM instance {"id":"${vm.id}","name":"${vm.name}"}: no host available`);
    const root = [...this.volumes.values()].find((x) => x.virtualmachineid === vm.id);
    if (root && !root.storageid) {
      const pool = this.poolForNewVolume();
      if (!pool) throw new ApiError(533, `Unable to create a deployment for VM instance {"id":"${vm.id}","name":"${vm.name}"}: no suitable storage pool`);
      root.storageid = pool.id;
      root.state = "Ready";
    }
    const pool = root?.storageid ? this.pools.get(root.storageid) : undefined;
    if (root && (!pool || !pool.reachable)) {
      throw new ApiError(533, `Unable to create a deployment for VM instance {"id":"${vm.id}","name":"${vm.name}"}: the host could not start it (its ROOT volume's primary storage ${pool?.name ?? "?"} does not answer)`);
    }
    vm.hostid = h.id;
    vm.state = "Running";
    vm.guestMemory = "";
    vm.boots += 1;
    void cmd;
  }

  /** The pool of a volume that exists on storage, answering; else the failure CloudStack reports (530). */
  private liveVolumePool(vol: Volume, what: string): Pool {
    const pool = vol.storageid ? this.pools.get(vol.storageid) : undefined;
    if (!pool) throw new ApiError(530, `${what}: volume ${vol.name} is not on any primary storage yet (Allocated)`);
    if (!pool.reachable) throw new ApiError(530, `${what}: primary storage ${pool.name} is not accessible (libvirt: cannot access storage file on the NFS mount)`);
    return pool;
  }

  private dispatch(lc: string, cmd: string, p: Record<string, string>): Json {
    switch (lc) {
      case "listcapabilities":
        return { capability: { cloudstackversion: "4.20.0.0-fake", kvmsnapshotenabled: this.kvmSnapshotEnabled, apilimitmax: 0 } };
      case "listzones": {
        const z = [...this.zones.values()].filter((x) => !p.id || x.id === p.id);
        return this.list(z, "zone", p);
      }
      case "listhosts": {
        const hs = [...this.hosts.values()].filter((h) => (!p.id || h.id === p.id) && (!p.zoneid || h.zoneid === p.zoneid) && (!p.type || p.type === "Routing"));
        return this.list(hs.map(({ history: _h, ...h }) => ({ ...h, type: "Routing", hypervisor: "KVM", zonename: "zone1" })), "host", p);
      }
      case "liststoragepools": {
        const ps = [...this.pools.values()].filter((x) => !p.id || x.id === p.id);
        return this.list(ps.map(({ reachable: _hidden, ...x }) => ({ ...x, type: "NetworkFilesystem", scope: "ZONE" })), "storagepool", p);
      }
      case "listserviceofferings": {
        const os = [...this.offerings.values()].filter((x) => !p.id || x.id === p.id);
        return this.list(os.map((o) => ({ ...o, iscustomized: false })), "serviceoffering", p);
      }
      case "listtemplates": {
        this.need(cmd, p, "templatefilter");
        const ts_ = [...this.templates.values()].filter((t) => (!p.id || t.id === p.id) && (!p.name || t.name === p.name));
        return this.list(ts_.map((t) => this.templateJson(t)), "template", p);
      }
      case "listvirtualmachines":
      case "listvirtualmachinesmetrics":
        return this.listVms(p);
      case "listvolumes": {
        const vs = [...this.volumes.values()].filter(
          (x) => (!p.id || x.id === p.id) && (!p.virtualmachineid || x.virtualmachineid === p.virtualmachineid) && (!p.type || x.type === p.type),
        );
        return this.list(
          vs.map((x) => ({ id: x.id, name: x.name, type: x.type, virtualmachineid: x.virtualmachineid, ...(x.storageid ? { storageid: x.storageid, storage: this.pools.get(x.storageid)?.name } : {}), size: x.size, state: x.state, created: x.created })),
          "volume",
          p,
        );
      }
      case "deployvirtualmachine":
        return this.deploy(lc, cmd, p);
      case "startvirtualmachine": {
        this.need(cmd, p, "id");
        const vm = this.vmFor(cmd, p.id);
        // UserVmManagerImpl.startVirtualMachine: starting a Running VM is a parameter error (431).
        if (vm.state === "Running") throw new ApiError(431, `The virtual machine ${vm.id} (${vm.displayname}) is already running`);
        if (vm.state !== "Stopped") throw new ApiError(431, `Unable to start VM ${vm.name}: it is in state ${vm.state}`);
        if (p.hostid) this.checkDestinationHost(p.hostid);
        vm.state = "Starting";
        return {
          jobid: this.startJob(
            lc,
            vm.id,
            () => {
              vm.state = "Stopped";
              this.bootOn(cmd, vm, p.hostid);
              return { virtualmachine: this.vmJson(vm) };
            },
            () => {
              vm.state = "Stopped";
            },
          ),
        };
      }
      case "stopvirtualmachine": {
        this.need(cmd, p, "id");
        const vm = this.vmFor(cmd, p.id);
        const forced = p.forced === "true";
        return {
          jobid: this.startJob(lc, vm.id, () => {
            if (vm.state === "Stopped") return { virtualmachine: this.vmJson(vm) };
            const h = vm.hostid ? this.hosts.get(vm.hostid) : undefined;
            if (h && h.state !== "Up" && !forced) {
              throw new ApiError(530, `Unable to stop VM ${vm.name}: the host ${h.name} is ${h.state}; use forced=true to mark it stopped`);
            }
            vm.state = "Stopped";
            vm.lasthostid = vm.hostid;
            vm.hostid = undefined;
            vm.guestMemory = "";
            return { virtualmachine: this.vmJson(vm) };
          }),
        };
      }
      case "destroyvirtualmachine": {
        this.need(cmd, p, "id");
        const vm = this.vmFor(cmd, p.id);
        return {
          jobid: this.startJob(lc, vm.id, () => {
            vm.state = p.expunge === "true" ? "Expunging" : "Destroyed";
            vm.hostid = undefined;
            const json = this.vmJson(vm);
            if (p.expunge === "true") this.expunge(vm);
            return { virtualmachine: json };
          }),
        };
      }
      case "updatevirtualmachine": {
        this.need(cmd, p, "id");
        const vm = this.vmFor(cmd, p.id);
        if (p.name !== undefined && p.name !== vm.name) {
          if (vm.state !== "Stopped") throw new ApiError(431, "Host name of the VM can only be changed when the VM is stopped");
          this.checkHostname(cmd, p.name);
          vm.name = p.name;
        }
        if (p.displayname !== undefined) vm.displayname = p.displayname;
        return { virtualmachine: this.vmJson(vm) };
      }
      case "createvmsnapshot":
        return this.createVmSnapshot(lc, cmd, p);
      case "listvmsnapshot": {
        const ss = [...this.vmSnapshots.values()].filter(
          (s) =>
            (!p.vmsnapshotid || s.id === p.vmsnapshotid) &&
            (!p.virtualmachineid || s.virtualmachineid === p.virtualmachineid) &&
            (!p.name || s.displayname === p.name || s.name === p.name) &&
            (!p.state || s.state === p.state),
        );
        return this.list(ss.map((s) => this.vmSnapJson(s)), "vmSnapshot", p);
      }
      case "deletevmsnapshot": {
        this.need(cmd, p, "vmsnapshotid");
        const s = this.vmSnapshots.get(p.vmsnapshotid);
        if (!s) throw new ApiError(431, `Unable to find the Instance Snapshot with id ${p.vmsnapshotid}`);
        if (!["Ready", "Expunging", "Error"].includes(s.state)) {
          throw new ApiError(431, `Can't delete the Instance Snapshot ${s.id} due to it is not in Created or Error, or Expunging State`);
        }
        s.state = "Expunging";
        return {
          jobid: this.startJob(lc, s.id, () => {
            this.vmSnapshots.delete(s.id);
            return { success: true };
          }),
        };
      }
      case "reverttovmsnapshot":
        return this.revert(lc, cmd, p);
      case "createsnapshotfromvmsnapshot":
        return this.snapshotFromVmSnapshot(lc, cmd, p);
      case "createsnapshot": {
        this.need(cmd, p, "volumeid");
        const vol = this.volumes.get(p.volumeid);
        if (!vol) throw invalidId(cmd, "volumeid", p.volumeid);
        const vm = vol.virtualmachineid ? this.vms.get(vol.virtualmachineid) : undefined;
        // server/src/main/java/com/cloud/storage/snapshot/SnapshotManagerImpl.java (supportedByHypervisor,
        // from allocSnapshot): a CloudRuntimeException, so errorcode 530, not 431.
        if (vm && vm.state === "Running" && !this.kvmSnapshotEnabled) {
          throw new ApiError(
            530,
            "KVM Snapshot is not supported for Running VMs. It is disabled by default due to a possible volume corruption in certain cases. To enable it set global settings kvm.snapshot.enabled to True. See the documentation for more details.",
          );
        }
        const s = this.newVolumeSnapshot(vol, p.name ?? `${vol.name}_${Date.now()}`, vol.disk);
        return {
          jobid: this.startJob(lc, s.id, () => {
            this.liveVolumePool(vol, "Failed to create snapshot");
            s.state = "BackedUp";
            return { snapshot: this.snapJson(s) };
          }, () => (s.state = "Error")),
          id: s.id,
        };
      }
      case "listsnapshots": {
        const ss = [...this.snapshots.values()].filter(
          (s) => (!p.id || s.id === p.id) && (!p.volumeid || s.volumeid === p.volumeid) && (!p.name || s.name === p.name),
        );
        return this.list(ss.map((s) => this.snapJson(s)), "snapshot", p);
      }
      case "deletesnapshot": {
        this.need(cmd, p, "id");
        const s = this.snapshots.get(p.id);
        if (!s) throw invalidId(cmd, "id", p.id);
        return {
          jobid: this.startJob(lc, s.id, () => {
            this.snapshots.delete(s.id);
            this.tags = this.tags.filter((t) => t.resourceid !== s.id);
            return { success: true };
          }),
        };
      }
      case "createtemplate":
        return this.createTemplate(lc, cmd, p);
      case "deletetemplate": {
        this.need(cmd, p, "id");
        const t = this.templates.get(p.id);
        if (!t) throw invalidId(cmd, "id", p.id);
        return {
          jobid: this.startJob(lc, t.id, () => {
            this.templates.delete(t.id);
            return { success: true };
          }),
        };
      }
      case "createtags":
        return this.createTags(lc, cmd, p);
      case "deletetags": {
        this.need(cmd, p, "resourceids", "resourcetype");
        const ids = p.resourceids.split(",");
        const keys = this.tagFilter(p);
        return {
          jobid: this.startJob(lc, undefined, () => {
            this.tags = this.tags.filter(
              (t) =>
                !(ids.includes(t.resourceid) && t.resourcetype.toLowerCase() === p.resourcetype.toLowerCase() &&
                  (keys.length === 0 || keys.some((k) => k.key === t.key && (k.value === undefined || k.value === t.value)))),
            );
            return { success: true };
          }),
        };
      }
      case "listtags": {
        const ts_ = this.tags.filter((t) => (!p.resourceid || t.resourceid === p.resourceid) && (!p.key || t.key === p.key) && (!p.resourcetype || t.resourcetype === p.resourcetype));
        return this.list(ts_.map((t) => ({ ...t })), "tag", p);
      }
      case "createsnapshotpolicy": {
        this.need(cmd, p, "volumeid", "intervaltype", "schedule", "maxsnaps", "timezone");
        if (!this.volumes.has(p.volumeid)) throw invalidId(cmd, "volumeid", p.volumeid);
        const it = p.intervaltype.toUpperCase();
        const shapes: Record<string, RegExp> = { HOURLY: /^\d{1,2}$/, DAILY: /^\d{1,2}:\d{1,2}$/, WEEKLY: /^\d{1,2}:\d{1,2}:[1-7]$/, MONTHLY: /^\d{1,2}:\d{1,2}:\d{1,2}$/ };
        if (!shapes[it]) throw new ApiError(431, `Unsupported interval type ${p.intervaltype}`);
        if (!shapes[it].test(p.schedule)) throw new ApiError(431, `Invalid schedule: ${p.schedule} for interval type: ${it}`);
        const maxsnaps = Number(p.maxsnaps);
        if (!(maxsnaps > 0)) throw new ApiError(431, "maxSnaps should be greater than 0");
        const existing = [...this.snapshotPolicies.values()].find((x) => x.volumeid === p.volumeid && x.intervaltype === it);
        const rec: SnapshotPolicyRec = { id: existing?.id ?? this.newId(), volumeid: p.volumeid, intervaltype: it, schedule: p.schedule, maxsnaps, timezone: p.timezone };
        this.snapshotPolicies.set(rec.id, rec);
        return { snapshotpolicy: { ...rec, fordisplay: true } };
      }
      case "listsnapshotpolicies": {
        const ps = [...this.snapshotPolicies.values()].filter((x) => (!p.volumeid || x.volumeid === p.volumeid) && (!p.id || x.id === p.id));
        return this.list(ps.map((x) => ({ ...x })), "snapshotpolicy", p);
      }
      case "deletesnapshotpolicies": {
        for (const id of (p.ids ?? p.id ?? "").split(",").filter(Boolean)) this.snapshotPolicies.delete(id);
        return { success: true };
      }
      case "queryasyncjobresult": {
        this.need(cmd, p, "jobid");
        const j = this.jobs.get(p.jobid);
        if (!j) throw invalidId(cmd, "jobid", p.jobid);
        return {
          accountid: "acct-1",
          userid: "user-1",
          cmd: j.cmd,
          jobstatus: j.jobstatus,
          jobprocstatus: 0,
          jobresultcode: j.jobresultcode,
          ...(j.jobstatus !== 0 ? { jobresulttype: "object", jobresult: j.jobresult } : {}),
          jobinstancetype: "None",
          jobinstanceid: j.jobinstanceid,
          created: j.created,
          ...(j.completed ? { completed: j.completed } : {}),
          jobid: j.jobid,
        };
      }
      default:
        throw new ApiError(432, `The given command '${cmd}' either does not exist, is not available for user.`);
    }
  }

  private listVms(p: Record<string, string>): Json {
    const want = this.tagFilter(p);
    const vms = [...this.vms.values()].filter((vm) => {
      if (vm.state === "Expunging") return false;
      if (p.id && vm.id !== p.id) return false;
      if (!p.id && vm.state === "Destroyed" && p.state !== "Destroyed") return false;
      // server/src/main/java/com/cloud/api/query/QueryManagerImpl.java, searchForUserVMIdsAndCount:
      // `name` is compared with the VM's host name (getHostName(), Op.EQ) - exactly, and never
      // with the display name. `keyword` is a LIKE %keyword% on the display name or the host
      // name (or the state).
      if (p.name && vm.name !== p.name) return false;
      if (p.keyword) {
        const k = p.keyword.toLowerCase();
        if (!(vm.displayname.toLowerCase().includes(k) || vm.name.toLowerCase().includes(k) || vm.state.toLowerCase() === k)) return false;
      }
      if (p.hostid && vm.hostid !== p.hostid) return false;
      if (p.state && vm.state.toLowerCase() !== p.state.toLowerCase()) return false;
      if (p.zoneid && vm.zoneid !== p.zoneid) return false;
      for (const t of want) {
        if (!this.tags.some((x) => x.resourceid === vm.id && x.key === t.key && (t.value === undefined || x.value === t.value))) return false;
      }
      return true;
    });
    return this.list(vms.map((vm) => this.vmJson(vm)), "virtualmachine", p);
  }

  private checkHostname(cmd: string, name: string): void {
    if (!/^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(name)) {
      throw new ApiError(
        431,
        `Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits '0' through '9', and the hyphen ('-'), must be between 1 and 63 characters long, and can't start or end with "-" and can't start with digit`,
      );
    }
    if ([...this.vms.values()].some((v) => v.name === name && v.state !== "Expunging" && v.state !== "Destroyed")) {
      throw new ApiError(431, `The vm with hostName ${name} already exists in the network domain: cs1cloud.internal; network=default`);
    }
    void cmd;
  }

  private deploy(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "zoneid", "serviceofferingid", "templateid");
    if (!this.zones.has(p.zoneid)) throw invalidId(cmd, "zoneid", p.zoneid);
    const off = this.offerings.get(p.serviceofferingid);
    if (!off) throw invalidId(cmd, "serviceofferingid", p.serviceofferingid);
    const tpl = this.templates.get(p.templateid);
    if (!tpl) throw invalidId(cmd, "templateid", p.templateid);
    if (!tpl.isready) throw new ApiError(431, `Template ${tpl.id} has not been completely downloaded to zone ${p.zoneid}`);
    if (p.hostid && !this.hosts.has(p.hostid)) throw invalidId(cmd, "hostid", p.hostid);
    if (p.hostid && p.startvm !== "false") this.checkDestinationHost(p.hostid);
    if (p.userdata !== undefined && !/^[A-Za-z0-9+/=]*$/.test(p.userdata)) throw new ApiError(431, "User data is not base64 encoded");
    const id = this.newId();
    const name = p.name ?? `VM-${id}`;
    this.checkHostname(cmd, name);
    const vm: Vm = {
      id,
      name,
      displayname: p.displayname ?? name,
      state: "Starting",
      zoneid: p.zoneid,
      serviceofferingid: off.id,
      templateid: tpl.id,
      guestosid: tpl.ostypeid,
      cpunumber: off.cpunumber,
      memory: off.memory,
      created: ts(),
      networkids: (p.networkids ?? "").split(",").filter(Boolean),
      userdata: p.userdata,
      cpuUsedPercent: 0,
      guestMemory: "",
      boots: 0,
    };
    this.vms.set(id, vm);
    const startvm = p.startvm !== "false";
    const jobid = this.startJob(
      lc,
      id,
      () => {
        // engine/orchestration/src/main/java/org/apache/cloudstack/engine/orchestration/VolumeOrchestrator.java
        // (allocateTemplatedVolume): the ROOT volume is only a record (Allocated, no pool) until
        // the VM's first start creates it on a pool the deployment planner picked.
        const volId = this.newId();
        this.volumes.set(volId, { id: volId, name: `ROOT-${++this.seq}`, type: "ROOT", virtualmachineid: id, size: 8 * 1024 ** 3, state: "Allocated", disk: tpl.disk, created: ts() });
        if (startvm) {
          this.bootOn(cmd, vm, p.hostid);
        } else {
          vm.state = "Stopped";
        }
        return { virtualmachine: this.vmJson(vm) };
      },
      () => {
        vm.state = "Error";
        vm.hostid = undefined;
      },
    );
    return { id, jobid };
  }

  private expunge(vm: Vm): void {
    this.vms.delete(vm.id);
    for (const [id, vol] of this.volumes) if (vol.virtualmachineid === vm.id) this.volumes.delete(id);
    for (const [id, s] of this.vmSnapshots) if (s.virtualmachineid === vm.id) this.vmSnapshots.delete(id);
    this.tags = this.tags.filter((t) => t.resourceid !== vm.id);
  }

  private createVmSnapshot(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "virtualmachineid");
    const vm = this.vms.get(p.virtualmachineid);
    if (!vm) throw new ApiError(431, `Creating Instance Snapshot failed because Instance:${p.virtualmachineid} is a System VM or does not exist`);
    const memory = p.snapshotmemory === "true";
    const display = p.name ?? `${vm.name}_VS_${Date.now()}`;
    if ([...this.vmSnapshots.values()].some((s) => s.virtualmachineid === vm.id && s.displayname === display)) {
      throw new ApiError(431, `Creating Instance Snapshot failed because Instance Snapshot with name${display}  already exists`);
    }
    if (vm.state !== "Running" && vm.state !== "Stopped") {
      throw new ApiError(431, `Creating Instance Snapshot failed because Instance:${vm.id} is not in Running or Stopped state`);
    }
    if (memory && vm.state !== "Running") throw new ApiError(431, "Can not Snapshot memory when the Instance is not in Running state");
    if (vm.state === "Running" && !memory) throw new ApiError(530, "Creating a snapshot of a running KVM Instance without memory is not supported");
    const mine = [...this.vmSnapshots.values()].filter((s) => s.virtualmachineid === vm.id);
    if (mine.length >= this.vmSnapshotMax) {
      throw new ApiError(530, `Creating Instance Snapshot failed due to a Instance can just have : ${this.vmSnapshotMax} Instance Snapshots. Please delete old ones`);
    }
    if (mine.some((s) => ["Creating", "Expunging", "Reverting", "Allocated"].includes(s.state))) {
      throw new ApiError(530, "There are other active Instance Snapshot tasks on the Instance, please try again later");
    }
    const root = this.rootVolume(vm.id);
    const current = mine.find((s) => s.current);
    const s: VmSnapshot = {
      id: this.newId(),
      name: `i-${vm.id.slice(0, 4)}_VS_${Date.now()}`,
      displayname: display,
      description: p.description,
      state: "Allocated",
      type: memory ? "DiskAndMemory" : "Disk",
      current: false,
      parent: current?.id,
      created: ts(),
      virtualmachineid: vm.id,
      zoneid: vm.zoneid,
      disk: "",
      poolid: root.storageid ?? "",
    };
    this.vmSnapshots.set(s.id, s);
    const jobid = this.startJob(
      lc,
      s.id,
      () => {
        const host = vm.hostid ? this.hosts.get(vm.hostid) : undefined;
        if (vm.state === "Running" && (!host || host.state !== "Up")) throw new ApiError(530, `Failed to create Instance Snapshot: host is ${host?.state ?? "unknown"}`);
        this.liveVolumePool(root, "Failed to create Instance Snapshot");
        s.disk = root.disk;
        if (memory) {
          s.memory = vm.guestMemory;
          s.boots = vm.boots;
        }
        for (const o of this.vmSnapshots.values()) if (o.virtualmachineid === vm.id) o.current = false;
        s.current = true;
        s.state = "Ready";
        return { vmsnapshot: this.vmSnapJson(s) };
      },
      () => {
        s.state = "Error";
      },
    );
    s.state = "Creating";
    return { id: s.id, jobid };
  }

  private revert(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "vmsnapshotid");
    const s = this.vmSnapshots.get(p.vmsnapshotid);
    if (!s) throw invalidId(cmd, "vmsnapshotid", p.vmsnapshotid);
    const vm = this.vms.get(s.virtualmachineid);
    if (!vm) throw new ApiError(431, "Revert Instance to Snapshot failed due to Instance is not found");
    if (vm.state !== "Running" && vm.state !== "Stopped") {
      throw new ApiError(431, "VM Snapshot reverting failed due to vm is not in the state of Running or Stopped.");
    }
    if ((vm.state === "Running" && s.type === "Disk") || (vm.state === "Stopped" && s.type === "DiskAndMemory")) {
      throw new ApiError(
        431,
        "VM Snapshot revert not allowed. This will result in VM state change. You can revert running VM to disk and memory type snapshot and stopped VM to disk type snapshot",
      );
    }
    if (s.state !== "Ready") throw new ApiError(431, "VM Snapshot reverting failed due to vm snapshot is not in the state of Created.");
    s.state = "Reverting";
    return {
      jobid: this.startJob(
        lc,
        vm.id,
        () => {
          s.state = "Ready";
          this.liveVolumePool(this.rootVolume(vm.id), `Failed to revert Instance ${vm.name} to Snapshot ${s.displayname}`);
          this.rootVolume(vm.id).disk = s.disk;
          if (s.type === "DiskAndMemory") {
            vm.guestMemory = s.memory ?? "";
            vm.boots = s.boots ?? vm.boots;
          }
          for (const o of this.vmSnapshots.values()) if (o.virtualmachineid === vm.id) o.current = o.id === s.id;
          return { virtualmachine: this.vmJson(vm) };
        },
        () => {
          s.state = "Ready";
        },
      ),
    };
  }

  private newVolumeSnapshot(vol: Volume, name: string, disk: string, vmsnapshotid?: string): VolumeSnapshot {
    const vm = vol.virtualmachineid ? this.vms.get(vol.virtualmachineid) : undefined;
    const s: VolumeSnapshot = {
      id: this.newId(),
      name,
      volumeid: vol.id,
      vmsnapshotid,
      state: "BackingUp",
      snapshottype: "MANUAL",
      created: ts(),
      physicalsize: 2 * 1024 ** 3,
      virtualsize: vol.size,
      zoneid: this.zoneId,
      ostypeid: vm?.guestosid ?? "os-unknown",
      disk,
    };
    this.snapshots.set(s.id, s);
    return s;
  }

  private snapshotFromVmSnapshot(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "volumeid", "vmsnapshotid");
    const vol = this.volumes.get(p.volumeid);
    if (!vol) throw invalidId(cmd, "volumeid", p.volumeid);
    const vs = this.vmSnapshots.get(p.vmsnapshotid);
    if (!vs) throw invalidId(cmd, "vmsnapshotid", p.vmsnapshotid);
    if (vs.virtualmachineid !== vol.virtualmachineid) throw new ApiError(431, "Creating snapshot failed due to volume does not belong to the Instance of the Instance Snapshot");
    if (vs.state !== "Ready") throw new ApiError(431, `Creating snapshot failed due to Instance Snapshot ${vs.id} is not in Ready state`);
    const s = this.newVolumeSnapshot(vol, p.name ?? `${vs.displayname}-${vol.name}`, vs.disk, vs.id);
    return {
      id: s.id,
      jobid: this.startJob(
        lc,
        s.id,
        () => {
          this.liveVolumePool(vol, "Failed to create snapshot from Instance Snapshot");
          s.state = "BackedUp";
          return { snapshot: this.snapJson(s) };
        },
        () => {
          s.state = "Error";
        },
      ),
    };
  }

  private createTemplate(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "name", "ostypeid");
    if (!p.snapshotid && !p.volumeid) throw new ApiError(431, "Failed to create private template record, need to specify snapshotId or volumeId");
    let disk: string;
    if (p.snapshotid) {
      const s = this.snapshots.get(p.snapshotid);
      if (!s) throw invalidId(cmd, "snapshotid", p.snapshotid);
      if (s.state !== "BackedUp") throw new ApiError(431, `Snapshot id=${s.id} is not in BackedUp state yet and can't be used for template creation`);
      disk = s.disk;
    } else {
      const vol = this.volumes.get(p.volumeid);
      if (!vol) throw invalidId(cmd, "volumeid", p.volumeid);
      disk = vol.disk;
    }
    const t: Template = {
      id: this.newId(),
      name: p.name,
      displaytext: p.displaytext ?? p.name,
      ostypeid: p.ostypeid,
      zoneid: this.zoneId,
      disk,
      isready: false,
      fromSnapshot: p.snapshotid,
      created: ts(),
      status: "Creating",
    };
    this.templates.set(t.id, t);
    return {
      id: t.id,
      jobid: this.startJob(
        lc,
        t.id,
        () => {
          t.isready = true;
          t.status = "Download Complete";
          return { template: this.templateJson(t) };
        },
        () => {
          t.status = "Error";
        },
      ),
    };
  }

  private createTags(lc: string, cmd: string, p: Record<string, string>): Json {
    this.need(cmd, p, "resourceids", "resourcetype", "tags[0].key");
    const ids = p.resourceids.split(",");
    const rt = p.resourcetype;
    for (const id of ids) {
      const exists = rt === "UserVm" ? this.vms.has(id) : rt === "Snapshot" ? this.snapshots.has(id) : rt === "VMSnapshot" ? this.vmSnapshots.has(id) : false;
      if (!exists) throw new ApiError(431, `Unable to find resource by id ${id} and type ${rt}`);
    }
    const newTags = this.tagFilter(p);
    return {
      jobid: this.startJob(lc, undefined, () => {
        for (const id of ids) {
          for (const t of newTags) {
            if (t.value !== undefined && t.value.length > 255) throw new ApiError(431, `Value length for tag ${t.key} exceeds 255 characters`);
            // server/src/main/java/com/cloud/tags/TaggedResourceManagerImpl.java (createTags): the
            // unique key is caught as EntityExistsException and rethrown as CloudRuntimeException
            // "tag %s already on %s with id %s" - errorcode 530, not 431.
            if (this.tags.some((x) => x.resourceid === id && x.resourcetype === rt && x.key === t.key)) {
              throw new ApiError(530, `tag ${t.key} already on ${rt} with id ${id}`);
            }
          }
        }
        for (const id of ids) for (const t of newTags) this.tags.push({ key: t.key, value: t.value ?? "", resourcetype: rt, resourceid: id });
        return { success: true };
      }),
    };
  }
}
