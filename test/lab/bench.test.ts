/**
 * The benchmark's reduced form (`--smoke`: one size, one repetition, short windows) on the lab,
 * so `npm run bench` cannot rot: every section must produce its rows with positive numbers,
 * and the report and charts must be written.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { labAvailable } from "../../lab/lab";
import { main } from "../../bench/main";
import { parseCsv, Row } from "../../bench/results";

const describeLab = labAvailable() ? describe : describe.skip;

describeLab("lab: npm run bench --smoke", () => {
  let dir: string;
  let rows: Row[];

  beforeAll(async () => {
    dir = await main(["--smoke", "--out", fs.mkdtempSync(path.join(os.tmpdir(), "pvbench-smoke-"))]);
    rows = parseCsv(fs.readFileSync(path.join(dir, "results.csv"), "utf8"));
  }, 900_000);

  afterAll(() => {
    process.exitCode = undefined;
  });

  const values = (q: Partial<Row>) =>
    rows.filter((r) => (Object.keys(q) as Array<keyof Row>).every((k) => r[k] === q[k])).map((r) => r.value);
  const positive = (q: Partial<Row>, n = 1) => {
    const v = values(q);
    expect(v.length).toBeGreaterThanOrEqual(n);
    for (const x of v) expect(x).toBeGreaterThan(0);
  };

  test("no section failed", () => {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, "run.json"), "utf8"));
    expect(meta.errors).toEqual([]);
  });

  test("machine description with measured disk bandwidth", () => {
    positive({ section: "machine", metric: "cores" });
    positive({ section: "machine", metric: "disk_seq_write" });
    positive({ section: "machine", metric: "disk_seq_read_direct" });
  });

  test("take/restore rows: ours, raw libvirt and the disk floor, per load", () => {
    for (const loadPct of [0, 90]) {
      for (const variant of ["ours", "raw-libvirt", "disk-floor"]) {
        positive({ section: "take-restore", variant, memMiB: 256, loadPct, metric: "take" });
        positive({ section: "take-restore", variant, memMiB: 256, loadPct, metric: "restore" });
      }
      positive({ section: "take-restore", variant: "ours", memMiB: 256, loadPct, metric: "state_bytes" });
      positive({ section: "take-restore", variant: "ours", memMiB: 256, loadPct, metric: "guest_pause" });
    }
  });

  test("recovery rows: recover() and cold boot, with state lost", () => {
    positive({ section: "recovery", variant: "recover", metric: "time_to_work" });
    positive({ section: "recovery", variant: "recover", metric: "rpo_snapshot_age" });
    positive({ section: "recovery", variant: "cold-boot", metric: "time_to_work" });
    positive({ section: "recovery", variant: "cold-boot", metric: "work_lost" });
    // the guest continued rather than rebooted: it lost less than a cold boot does
    expect(values({ section: "recovery", variant: "recover", metric: "work_lost" })[0]).toBeLessThan(
      values({ section: "recovery", variant: "cold-boot", metric: "work_lost" })[0],
    );
  });

  test("overhead rows: throughput per mode, RPO for the protected ones", () => {
    for (const variant of ["none", "fixed-5s", "adaptive-5-20s"]) positive({ section: "overhead", variant, metric: "throughput" });
    for (const variant of ["fixed-5s", "adaptive-5-20s"]) positive({ section: "overhead", variant, metric: "rpo_sample" }, 10);
  });

  test("pause rows: host-observed pauses and the guest-clock check", () => {
    positive({ section: "pause", variant: "ours", metric: "guest_pause" }, 3);
    positive({ section: "pause", variant: "suspend-check", metric: "host_seen_gap" });
    positive({ section: "pause", variant: "slow-writer-never", metric: "guest_pause" });
    positive({ section: "pause", variant: "slow-writer-auto", metric: "guest_pause" });
  });

  test("report and charts exist", () => {
    const report = fs.readFileSync(path.join(dir, "report.md"), "utf8");
    expect(report).toMatch(/## Machine/);
    expect(report).toMatch(/48\.29/); // the paper's failover table, labelled as published
    for (const svg of ["fig4-take.svg", "fig5-restore.svg", "recovery.svg", "overhead.svg", "pause.svg"]) {
      const text = fs.readFileSync(path.join(dir, svg), "utf8");
      expect(text.startsWith("<svg")).toBe(true);
    }
  });
});
