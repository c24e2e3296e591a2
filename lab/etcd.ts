/**
 * etcd for the lab and tests (Debian's etcd-server): members bound to 127.0.0.1 on free ports,
 * data under the checkout's .lab/etcd/, stopped (SIGTERM, then SIGKILL) by the caller.
 * startEtcd() starts one member; startEtcdCluster(3) a 3-member cluster for member-loss tests.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { repoRoot } from "./lab";

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  process: ChildProcess;
  logFile: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: string[];
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the kernel picks it; a tiny race with other binders remains). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function etcdBinary(): string {
  for (const p of ["/usr/bin/etcd", "/usr/local/bin/etcd"]) if (fs.existsSync(p)) return p;
  throw new Error("etcd not installed: apt-get install -y etcd-server etcd-client");
}

export function etcdAvailable(): boolean {
  try {
    etcdBinary();
    return true;
  } catch {
    return false;
  }
}

async function waitHealthy(clientUrl: string, member: ChildProcess, logFile: string, timeoutMs = 20_000): Promise<void> {
  const { port } = new URL(clientUrl);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (member.exitCode !== null) throw new Error(`etcd exited (${member.exitCode}); log ${logFile}:\n${fs.readFileSync(logFile, "utf8").slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(Number(port), "127.0.0.1", () => {
        s.end();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`etcd at ${clientUrl} did not come up in ${timeoutMs} ms; log ${logFile}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface MemberPlan {
  name: string;
  clientUrl: string;
  peerUrl: string;
}

function spawnMember(plan: MemberPlan, initialCluster: string, root: string): EtcdMember {
  const dataDir = path.join(root, plan.name);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const logFile = path.join(root, `${plan.name}.log`);
  const out = fs.openSync(logFile, "a");
  const child = spawn(
    etcdBinary(),
    [
      "--name", plan.name, "--data-dir", dataDir,
      "--listen-client-urls", plan.clientUrl, "--advertise-client-urls", plan.clientUrl,
      "--listen-peer-urls", plan.peerUrl, "--initial-advertise-peer-urls", plan.peerUrl,
      "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", path.basename(root),
      // Short heartbeat/election so member loss and lease expiry show within test time.
      "--heartbeat-interval", "100", "--election-timeout", "1000",
    ],
    { stdio: ["ignore", out, out], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? "" } },
  );
  fs.closeSync(out);
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
  return { ...plan, dataDir, process: child, logFile, stop };
}

/** Start an n-member etcd cluster (n = 1 for the lab) under .lab/etcd/<id>/. */
export async function startEtcdCluster(n = 1, id = `etcd-${process.pid}-${Date.now()}`): Promise<EtcdCluster> {
  const root = path.join(repoRoot(), ".lab", "etcd", id);
  fs.mkdirSync(root, { recursive: true });
  const plans: MemberPlan[] = [];
  for (let i = 0; i < n; i++) plans.push({ name: `m${i}`, clientUrl: `http://127.0.0.1:${await freePort()}`, peerUrl: `http://127.0.0.1:${await freePort()}` });
  const initialCluster = plans.map((p) => `${p.name}=${p.peerUrl}`).join(",");
  const members = plans.map((p) => spawnMember(p, initialCluster, root));
  try {
    await Promise.all(members.map((m) => waitHealthy(m.clientUrl, m.process, m.logFile)));
  } catch (e) {
    await Promise.all(members.map((m) => m.stop("SIGKILL")));
    throw e;
  }
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    stop: async () => {
      await Promise.all(members.map((m) => m.stop()));
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

export const startEtcd = () => startEtcdCluster(1);
