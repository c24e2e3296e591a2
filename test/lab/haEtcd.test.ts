/**
 * The etcd coordination store against real etcd (Debian etcd-server, started here on loopback):
 * leases expire and take their keys with them, compare-and-swap on revisions, a cut link makes
 * renewal fail within the call deadline, and a 3-member cluster keeps working with one member lost.
 */
import { EtcdCoordination } from "../../ops/coordination/etcd";
import { etcdAvailable, EtcdCluster, startEtcdCluster } from "../../lab/etcd";
import { startTcpProxy } from "../../lab/tcpProxy";

const maybe = etcdAvailable() ? describe : describe.skip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

maybe("etcd coordination", () => {
  let etcd: EtcdCluster;
  let c: EtcdCoordination;
  beforeAll(async () => {
    etcd = await startEtcdCluster(1);
    c = new EtcdCoordination({ endpoints: etcd.endpoints });
  }, 60_000);
  afterAll(async () => {
    await c?.close();
    await etcd?.stop();
  });

  test("a key attached to a lease vanishes when the lease is not renewed", async () => {
    const lease = await c.grantLease(2000);
    expect(await c.compareAndSwap("/t/host-a", null, "alive", lease)).not.toBeNull();
    expect(await c.renewLease(lease)).toBe(true);
    const t0 = Date.now();
    while ((await c.get("/t/host-a")) && Date.now() - t0 < 10_000) await sleep(100);
    const goneAfter = Date.now() - t0;
    console.log(`lease TTL 2 s: key gone ${goneAfter} ms after the last renewal`);
    expect(await c.get("/t/host-a")).toBeNull();
    expect(goneAfter).toBeGreaterThanOrEqual(1900);
    expect(await c.renewLease(lease)).toBe(false);
  });

  test("compare-and-swap: create only when absent, change only at the expected revision", async () => {
    const r1 = await c.compareAndSwap("/t/owner", null, "a");
    expect(r1).not.toBeNull();
    expect(await c.compareAndSwap("/t/owner", null, "b")).toBeNull();
    const r2 = await c.compareAndSwap("/t/owner", r1, "b");
    expect(r2).not.toBeNull();
    expect(await c.compareAndSwap("/t/owner", r1, "c")).toBeNull(); // stale token
    expect((await c.get("/t/owner"))?.value).toBe("b");
    expect((await c.list("/t/")).map((kv) => kv.key)).toContain("/t/owner");
  });

  test("through a cut link, renewal fails within the call deadline", async () => {
    const proxy = await startTcpProxy(etcd.endpoints[0]);
    const viaProxy = new EtcdCoordination({ endpoints: [proxy.url], callTimeoutMs: 500 });
    try {
      const lease = await viaProxy.grantLease(5000);
      expect(await viaProxy.renewLease(lease)).toBe(true);
      proxy.cut();
      const t0 = Date.now();
      await expect(viaProxy.renewLease(lease)).rejects.toThrow();
      console.log(`renewal over a cut link failed after ${Date.now() - t0} ms`);
    } finally {
      await viaProxy.close();
      await proxy.close();
    }
  });
});

maybe("etcd 3-member cluster", () => {
  test("losing one member keeps compare-and-swap working; losing two stops it", async () => {
    const cluster = await startEtcdCluster(3);
    const c = new EtcdCoordination({ endpoints: cluster.endpoints, callTimeoutMs: 1000 });
    try {
      const r1 = await c.compareAndSwap("/t/x", null, "1");
      expect(r1).not.toBeNull();
      await cluster.members[0].stop("SIGKILL");
      let r2: string | null = null;
      for (let i = 0; i < 20 && !r2; i++) r2 = await c.compareAndSwap("/t/x", r1, "2").catch(() => null);
      expect(r2).not.toBeNull();
      await cluster.members[1].stop("SIGKILL");
      let wrote = false;
      for (let i = 0; i < 3; i++) wrote = wrote || (await c.compareAndSwap("/t/x", r2, "3").then((r) => r !== null).catch(() => false));
      expect(wrote).toBe(false);
    } finally {
      await c.close();
      await cluster.stop();
    }
  }, 120_000);
});
