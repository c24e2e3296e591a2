/**
 * The loopback CloudStack (test/support/cloudstackServer.ts) answers as CloudStack's sources say
 * it does, for each rule the backend's survival depends on. The source file behind each rule is
 * cited beside the code that models it in the server.
 */
import { FakeCloudStack } from "../support/cloudstackServer";
import { clientFor, startCloud } from "../support/cloudstack/harness";
import { CloudStackClient } from "../../hypervisor/cloudstack/client";
import { CloudStackError } from "../../hypervisor/cloudstack/errors";

let cs: FakeCloudStack;
let api: CloudStackClient;

beforeEach(async () => {
  cs = await startCloud();
  api = clientFor(cs, undefined, { retry: { retries: 0 } });
});
afterEach(async () => {
  await cs.stop();
});

async function deploy(params: Record<string, unknown>): Promise<string> {
  const r = await api.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, ...params });
  return (r.result.virtualmachine as { id: string }).id;
}
const failure = (p: Promise<unknown>) => p.then(() => undefined, (e) => e as CloudStackError);

describe("the loopback server models CloudStack's rules", () => {
  test("listVirtualMachines name= is the host name, exactly; display names are found only with keyword", async () => {
    await deploy({ name: "web1", displayname: "web1", startvm: false });
    await deploy({ name: "web10", displayname: "web10", startvm: false });
    await deploy({ displayname: "web_1", startvm: false }); // not a host name: CloudStack names it VM-<uuid>
    const names = async (p: Record<string, unknown>) =>
      ((await api.call("listVirtualMachines", { listall: true, ...p })).virtualmachine ?? []).map((v: { displayname: string }) => v.displayname).sort();
    expect(await names({ name: "web1" })).toEqual(["web1"]); // not web10 (no substring match)
    expect(await names({ name: "web_1" })).toEqual([]); // the display name is never matched by name=
    expect(await names({ keyword: "web_1" })).toEqual(["web_1"]);
    expect(await names({ keyword: "web1" })).toEqual(["web1", "web10"]); // keyword is LIKE %...%
  });

  test("a VM name that is not a host name is refused as a host name (431)", async () => {
    const e = await failure(deploy({ name: "web_1", startvm: false }));
    expect(e?.errorCode).toBe(431);
    expect(e?.errorText).toMatch(/Invalid name/);
  });

  test("ROOT volumes are Allocated, on no pool, until the VM's first start", async () => {
    const id = await deploy({ name: "vol1", startvm: false });
    const vol = async () => (await api.call("listVolumes", { virtualmachineid: id, type: "ROOT", listall: true })).volume[0];
    expect(await vol()).toMatchObject({ state: "Allocated" });
    expect((await vol()).storageid).toBeUndefined();
    await api.callAsync("startVirtualMachine", { id });
    expect(await vol()).toMatchObject({ state: "Ready", storageid: cs.poolIds[0] });
  });

  test("starting a Running VM is a parameter error (431)", async () => {
    const id = await deploy({ name: "run1" });
    const e = await failure(api.callAsync("startVirtualMachine", { id }));
    expect(e?.errorCode).toBe(431);
    expect(e?.errorText).toMatch(/is already running/);
  });

  test("starting on a host that is not Up and Enabled fails with 431 '... not in the right state', with no fallback to another host", async () => {
    const [h1, h2] = cs.hostIds;
    const id = await deploy({ name: "place1", startvm: false });
    cs.setHostState(h1, "Disconnected");
    const e = await failure(api.callAsync("startVirtualMachine", { id, hostid: h1 }));
    expect(e?.errorCode).toBe(431);
    expect(e?.errorText).toMatch(/is not in the right state/);
    expect(cs.vms.get(id)).toMatchObject({ state: "Stopped" });
    expect(cs.vms.get(id)!.hostid).toBeUndefined();
    cs.hosts.get(h2)!.resourcestate = "Disabled";
    expect((await failure(api.callAsync("startVirtualMachine", { id, hostid: h2 })))?.errorCode).toBe(431);
  });

  test("an unreachable NFS export leaves the pool Up (no Down in StoragePoolStatus); a start on it fails with 533", async () => {
    const id = await deploy({ name: "nfs1" });
    await api.callAsync("stopVirtualMachine", { id });
    cs.losePrimaryStorage();
    const pools = (await api.call("listStoragePools", {})).storagepool as Array<{ id: string; state: string }>;
    expect(pools.map((p) => p.state)).toEqual(["Up", "Up"]);
    const e = await failure(api.callAsync("startVirtualMachine", { id, hostid: cs.hostIds[1] }));
    expect(e?.errorCode).toBe(533);
    expect(cs.vms.get(id)!.state).toBe("Stopped");
    // A new VM's volume is created on a pool that works (the planner avoids the failed one).
    const other = await deploy({ name: "nfs2" });
    expect(cs.rootVolume(other).storageid).toBe(cs.poolIds[1]);
  });

  test("a tag that is already on the resource is refused with 530 (CloudRuntimeException), not 431", async () => {
    const id = await deploy({ name: "tag1", startvm: false });
    await api.callAsync("createTags", { resourcetype: "UserVm", resourceids: id, "tags[0].key": "k", "tags[0].value": "v" });
    const e = await failure(api.callAsync("createTags", { resourcetype: "UserVm", resourceids: id, "tags[0].key": "k", "tags[0].value": "v" }));
    expect(e?.errorCode).toBe(530);
    expect(e?.errorText).toBe(`tag k already on UserVm with id ${id}`);
  });

  test("a volume snapshot of a running KVM VM without kvm.snapshot.enabled is refused with 530", async () => {
    const id = await deploy({ name: "snap1" });
    const e = await failure(api.callAsync("createSnapshot", { volumeid: cs.rootVolume(id).id }));
    expect(e?.errorCode).toBe(530);
    expect(e?.errorText).toMatch(/kvm.snapshot.enabled/);
  });

  test("a host that fails goes Disconnected before Down or Alert", () => {
    const [h1, h2] = cs.hostIds;
    cs.setHostState(h1, "Down");
    expect(cs.hosts.get(h1)!.history).toEqual(["Up", "Disconnected", "Down"]);
    cs.setHostState(h2, "Alert");
    expect(cs.hosts.get(h2)!.history).toEqual(["Up", "Disconnected", "Alert"]);
  });

  test("a bare HTTP 500 (no CloudStack body) reaches the client as HTTP 500", async () => {
    cs.failNextHttp({ command: "listZones", status: 500 });
    const e = await failure(api.call("listZones"));
    expect(e).toMatchObject({ errorCode: "HTTP", httpStatus: 500 });
  });
});
