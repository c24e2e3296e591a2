import axios from "axios";
import { inspect } from "util";
import { FakeCloudStack } from "../support/cloudstackServer";
import { captureLog, clientFor, startCloud } from "../support/cloudstack/harness";
import { CloudStackClient } from "../../hypervisor/cloudstack/client";
import { CloudStackError } from "../../hypervisor/cloudstack/errors";
import { commandKind, isAmbiguous, isRetryable } from "../../hypervisor/cloudstack/retry";
import { encodeQuery, signRequest } from "../../hypervisor/cloudstack/signing";

let cs: FakeCloudStack;
beforeEach(async () => {
  cs = await startCloud();
});
afterEach(async () => {
  await cs.stop();
});

async function failure(p: Promise<unknown>): Promise<CloudStackError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CloudStackError);
    return e as CloudStackError;
  }
  throw new Error("expected a CloudStackError");
}

describe("CloudStackClient against the loopback CloudStack", () => {
  test("a signed call returns the body under <command>response", async () => {
    const c = clientFor(cs);
    const r = await c.call("listZones");
    expect(r.zone[0].id).toBe(cs.zoneId);
    const hosts = await c.listAll("listHosts", "host", { type: "Routing" });
    expect(hosts.map((h) => h.state)).toEqual(["Up", "Up", "Up"]);
  });

  test("an empty list comes back as {} and listAll returns []", async () => {
    const c = clientFor(cs);
    expect(await c.call("listVirtualMachines", { listall: true })).toEqual({});
    expect(await c.listAll("listVirtualMachines", "virtualmachine")).toEqual([]);
  });

  test("401: a wrong secret is rejected; the message says what to check and never contains the secret", async () => {
    const log = captureLog();
    const wrongSecret = "WRONG-secret-" + Math.random().toString(36).slice(2);
    const c = new CloudStackClient({ endpoint: cs.url, apiKey: cs.apiKey, secretKey: wrongSecret, pollIntervalMs: 5, logger: log.logger, retry: { retries: 3, minTimeoutMs: 5 } });
    const e = await failure(c.call("listZones"));
    expect(e.errorCode).toBe(401);
    expect(e.httpStatus).toBe(401);
    expect(e.message).toContain("unable to verify user credentials and/or request signature");
    expect(e.message).toMatch(/API key and secret key/);
    expect(cs.commandCount("listZones")).toBe(1); // 401 is not retried
    const everything = [e.message, e.stack ?? "", JSON.stringify(e), inspect(e), JSON.stringify(c), inspect(c), ...log.lines].join("\n");
    expect(everything).not.toContain(wrongSecret);
    expect(everything).not.toContain(cs.apiKey);
    expect(everything).not.toMatch(/signature=[A-Za-z0-9%]/);
  });

  test("401: an expired request (signature version 3) is rejected like CloudStack does", async () => {
    const signed = signRequest("listZones", {}, { apiKey: cs.apiKey, secretKey: cs.secretKey, now: new Date(Date.now() - 3600_000), ttlSeconds: 60 });
    const res = await axios.get(`${cs.url}?${encodeQuery(signed)}`, { validateStatus: () => true });
    expect(res.status).toBe(401);
    expect(res.data).toEqual({ listzonesresponse: { uuidList: [], errorcode: 401, cserrorcode: 9999, errortext: "unable to verify user credentials and/or request signature" } });
    // the same request, still valid, passes
    const fresh = signRequest("listZones", {}, { apiKey: cs.apiKey, secretKey: cs.secretKey });
    expect((await axios.get(`${cs.url}?${encodeQuery(fresh)}`)).status).toBe(200);
  });

  test("431: a bad parameter surfaces with code, errortext and advice", async () => {
    const c = clientFor(cs);
    const e = await failure(c.call("startVirtualMachine", { id: "no-such-vm" }));
    expect(e.errorCode).toBe(431);
    expect(e.command).toBe("startVirtualMachine");
    expect(e.message).toContain("errorcode 431");
    expect(e.message).toContain("Invalid parameter id value=no-such-vm");
    expect(e.message).toMatch(/check the ids passed/);
    expect(e.notFound).toBe(true);
    expect(e.csErrorCode).toBe(4350);
  });

  test("432: a command the key's role may not use names the cause", async () => {
    const c = new CloudStackClient({ endpoint: cs.url, apiKey: cs.userApiKey, secretKey: cs.userSecretKey, pollIntervalMs: 5 });
    const e = await failure(c.call("listHosts"));
    expect(e.errorCode).toBe(432);
    expect(e.message).toContain("either does not exist, is not available for user");
    expect(e.message).toMatch(/root-admin key/);
    const unknown = await failure(clientFor(cs).call("noSuchCommand"));
    expect(unknown.errorCode).toBe(432);
  });

  test.each([
    [530, /internal error.*management server log/i],
    [533, /no host or storage with enough free capacity/],
    [534, /host and primary storage state/],
  ])("%i: a server-side error surfaces with its errortext and advice", async (code, advice) => {
    const c = clientFor(cs, undefined, { retry: { retries: 0 } });
    cs.failNextRequest({ code, text: `injected ${code} text` });
    const e = await failure(c.call("listZones"));
    expect(e.errorCode).toBe(code);
    expect(e.message).toContain(`errorcode ${code}`);
    expect(e.message).toContain(`injected ${code} text`);
    expect(e.message).toMatch(advice);
  });

  test("a 530 on a read is retried and succeeds", async () => {
    const log = captureLog();
    const c = clientFor(cs, log);
    cs.failNextRequest({ command: "listZones", code: 530 });
    const r = await c.call("listZones");
    expect(r.zone).toHaveLength(1);
    expect(cs.commandCount("listZones")).toBe(2);
    expect(log.lines.some((l) => /listZones attempt 1 failed \(530\); retrying/.test(l))).toBe(true);
  });

  test("a dropped connection is retried and succeeds", async () => {
    const c = clientFor(cs);
    cs.dropNextConnection({ command: "listHosts" });
    const r = await c.call("listHosts", { id: cs.hostIds[1] });
    expect(r.host[0].id).toBe(cs.hostIds[1]);
    expect(cs.commandCount("listHosts")).toBe(2);
  });

  test("a create is not repeated blindly after a dropped connection: the lookup finds it", async () => {
    const c = clientFor(cs);
    cs.dropNextConnection({ command: "deployVirtualMachine", afterProcessing: true });
    let lookups = 0;
    const vm = await c.create(
      async () => (await c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "web1" })).result.virtualmachine,
      async () => {
        lookups++;
        const r = await c.call("listVirtualMachines", { name: "web1" });
        return r.virtualmachine?.[0];
      },
      "deployVirtualMachine",
    );
    expect(vm.name).toBe("web1");
    expect(lookups).toBe(1);
    expect(cs.commandCount("deployVirtualMachine")).toBe(1);
    expect([...cs.vms.values()].filter((v) => v.name === "web1")).toHaveLength(1);
  });

  test("a create dropped before CloudStack saw it is sent again after the lookup finds nothing", async () => {
    const c = clientFor(cs);
    cs.dropNextConnection({ command: "deployVirtualMachine" });
    const r = await c.create(
      () => c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "web2" }),
      async () => undefined,
      "deployVirtualMachine",
    );
    expect(r.result.virtualmachine.state).toBe("Running");
    expect(cs.commandCount("deployVirtualMachine")).toBe(2);
  });

  test("async: polls queryAsyncJobResult until the job ends; a failed job reports its errortext", async () => {
    cs.jobDurationMs = 80;
    const c = clientFor(cs);
    const ok = await c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "web3" });
    expect(ok.result.virtualmachine.state).toBe("Running");
    expect(cs.commandCount("queryAsyncJobResult")).toBeGreaterThan(1);
    cs.failNextJob({ command: "stopVirtualMachine", code: 530, text: "Unable to stop VM: agent went away" });
    const e = await failure(c.callAsync("stopVirtualMachine", { id: ok.id }));
    expect(e.jobId).toBeDefined();
    expect(e.errorCode).toBe(530);
    expect(e.message).toContain("Unable to stop VM: agent went away");
    expect(e.message).toContain(`async job ${e.jobId}`);
    expect(cs.commandCount("stopVirtualMachine")).toBe(1); // a failed job is not retried
  });

  test("async: gives up after asyncTimeoutMs with a JOB_TIMEOUT that says the job may still finish", async () => {
    cs.jobDurationMs = 2000;
    const c = clientFor(cs, undefined, { asyncTimeoutMs: 100 });
    const e = await failure(c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId }));
    expect(e.errorCode).toBe("JOB_TIMEOUT");
    expect(e.message).toMatch(/may still finish/);
  });

  test("large requests (deployVirtualMachine userdata) go as POST; CloudStack refuses them as GET", async () => {
    const c = clientFor(cs);
    const userdata = Buffer.from("#cloud-config\n" + "x".repeat(6000)).toString("base64");
    const r = await c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "web4", userdata });
    expect(r.result.virtualmachine.state).toBe("Running");
    expect(cs.requests.find((q) => q.command === "deployvirtualmachine")?.method).toBe("POST");
    expect(cs.vms.get(r.id!)?.userdata).toBe(userdata);
    const get = new CloudStackClient({ endpoint: cs.url, apiKey: cs.apiKey, secretKey: cs.secretKey, postThresholdBytes: 1e9, retry: { retries: 0 } });
    const e = await failure(get.call("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, userdata }));
    expect(e.errorCode).toBe(431);
    expect(e.errorText).toBe("User data is too long for an http GET request");
  });

  test("the job queue being busy is retried even for a create", async () => {
    const c = clientFor(cs);
    cs.failNextRequest({ command: "createVMSnapshot", code: 530, text: "There are other active Instance Snapshot tasks on the Instance, please try again later" });
    const vm = await c.callAsync("deployVirtualMachine", { zoneid: cs.zoneId, serviceofferingid: cs.offeringId, templateid: cs.templateId, name: "busy1" });
    const r = await c.callAsync("createVMSnapshot", { virtualmachineid: vm.id, snapshotmemory: true, name: "s1" });
    expect(r.result.vmsnapshot.state).toBe("Ready");
    expect(cs.commandCount("createVMSnapshot")).toBe(2);
  });

  test("TLS verification is on by default", () => {
    const c = new CloudStackClient({ endpoint: "https://cloud.example/client/api", apiKey: "a", secretKey: "b" });
    expect(c.verifyTls).toBe(true);
  });
});

describe("retry policy", () => {
  const err = (errorCode: CloudStackError["errorCode"], extra: Partial<ConstructorParameters<typeof CloudStackError>[0]> = {}) =>
    new CloudStackError({ command: "x", errorCode, errorText: "t", ...extra });

  test("command kinds", () => {
    expect(commandKind("listVirtualMachines")).toBe("read");
    expect(commandKind("queryAsyncJobResult")).toBe("read");
    expect(commandKind("stopVirtualMachine")).toBe("converge");
    expect(commandKind("revertToVMSnapshot")).toBe("converge");
    expect(commandKind("deployVirtualMachine")).toBe("create");
    expect(commandKind("createVMSnapshot")).toBe("create");
  });

  test("reads retry on network errors, 5xx and 530; never on 401/431/432", () => {
    expect(isRetryable(err("NETWORK", { networkCode: "ECONNRESET" }), "listHosts")).toBe(true);
    expect(isRetryable(err("HTTP", { httpStatus: 503 }), "listHosts")).toBe(true);
    expect(isRetryable(err(530), "listHosts")).toBe(true);
    for (const c of [401, 431, 432, 531, 532, 533]) expect(isRetryable(err(c), "listHosts")).toBe(false);
  });

  test("creates retry only when CloudStack certainly did not act", () => {
    expect(isRetryable(err("NETWORK", { networkCode: "ECONNRESET" }), "deployVirtualMachine")).toBe(false);
    expect(isRetryable(err(530), "deployVirtualMachine")).toBe(false);
    expect(isRetryable(err("NETWORK", { networkCode: "ECONNREFUSED" }), "deployVirtualMachine")).toBe(true);
    expect(isRetryable(new CloudStackError({ command: "x", errorCode: 530, errorText: "please try again later" }), "createVMSnapshot")).toBe(true);
    expect(isRetryable(err(530, { jobId: "j" }), "stopVirtualMachine")).toBe(false);
  });

  test("only what can succeed on retry: a bare HTTP 500 for reads only; a CloudStack 530 answer to a create or a converging command is final", () => {
    expect(isRetryable(err("HTTP", { httpStatus: 500 }), "listVirtualMachines")).toBe(true);
    expect(isRetryable(err("HTTP", { httpStatus: 500 }), "createVMSnapshot")).toBe(false);
    expect(isRetryable(err("HTTP", { httpStatus: 500 }), "startVirtualMachine")).toBe(false);
    expect(isRetryable(new CloudStackError({ command: "x", errorCode: 530, errorText: "a Instance can just have : 10 Instance Snapshots. Please delete old ones" }), "createVMSnapshot")).toBe(false);
    expect(isRetryable(err(530), "startVirtualMachine")).toBe(false);
    expect(isRetryable(err("TIMEOUT"), "startVirtualMachine")).toBe(true);
    expect(isAmbiguous(err("TIMEOUT"))).toBe(true); // a create's answer lost: look it up first
    expect(isAmbiguous(err(530))).toBe(false);
    expect(isAmbiguous(err("NETWORK", { networkCode: "ECONNREFUSED" }))).toBe(false); // never arrived: just send again
  });
});
