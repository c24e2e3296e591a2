/**
 * The HaProcess resource's logic (what `pulumi up` / `refresh` / `destroy` call): it starts a
 * real `protected-vm manager` against real etcd, reads it back while it runs, stops it on
 * delete, and reads nothing once it is gone. Needs the build (dist/cli/main.js) and etcd.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { check, create, read, remove, HaProcessOutputs } from "../../pulumi/providers/haProcessImpl";
import { etcdAvailable, EtcdCluster, startEtcdCluster } from "../../lab/etcd";
import { pidAlive } from "../../lib/pid";
import { PACKAGE_ROOT } from "../../lib/packageRoot";

const maybe = etcdAvailable() && fs.existsSync(path.join(PACKAGE_ROOT, "dist", "cli", "main.js")) ? describe : describe.skip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

maybe("HaProcess", () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcdCluster(1);
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  test("check names the bad field", async () => {
    const r = await check({}, { role: "boss" as never, args: ["--x"], logFile: "" });
    expect(r.failures?.map((f) => f.property).sort()).toEqual(["logFile", "role"]);
  });

  test("create starts a manager that leads, read finds it, delete stops it", async () => {
    const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "pv-haproc-")), "manager.log");
    const inputs = { role: "manager" as const, args: ["--id", "lab-m1", "--etcd", etcd.endpoints[0], "--prefix", "/pvproc/"], logFile };
    const created = await create(inputs);
    const outs = created.outs as HaProcessOutputs;
    try {
      expect(pidAlive(outs.pid)).toBe(true);
      const deadline = Date.now() + 60_000;
      while (!/"event":"elected"/.test(fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : "") && Date.now() < deadline) await sleep(200);
      expect(fs.readFileSync(logFile, "utf8")).toMatch(/"event":"elected"/);
      expect((await read(created.id, outs)).id).toBe(created.id);
    } finally {
      await remove(created.id, outs);
    }
    expect(pidAlive(outs.pid)).toBe(false);
    expect((await read(created.id, outs)).id).toBe("");
  }, 120_000);
});
