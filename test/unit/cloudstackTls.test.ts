import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import * as https from "https";
import { AddressInfo } from "net";
import { tmpdir } from "os";
import { join } from "path";
import { CloudStackClient } from "../../hypervisor/cloudstack/client";
import { CloudStackError } from "../../hypervisor/cloudstack/errors";
import { CloudStackBackend } from "../../hypervisor/cloudstack/backend";
import { startCloud } from "../support/cloudstack/harness";

describe("TLS", () => {
  let dir: string;
  let server: https.Server;
  let url: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "pvm-tls-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1"], { stdio: "ignore" });
    server = https.createServer({ key: readFileSync(join(dir, "key.pem")), cert: readFileSync(join(dir, "cert.pem")) }, (_req, res) => {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ listzonesresponse: { count: 1, zone: [{ id: "z", name: "zone" }] } }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/client/api`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test("a self-signed certificate is refused by default, with a clear message and no retry storm", async () => {
    const c = new CloudStackClient({ endpoint: url, apiKey: "k", secretKey: "s", retry: { retries: 1, minTimeoutMs: 5 } });
    const e = (await c.call("listZones").catch((x) => x)) as CloudStackError;
    expect(e).toBeInstanceOf(CloudStackError);
    expect(e.errorCode).toBe("TLS");
    expect(e.attempts).toBe(1);
    expect(e.message).toMatch(/self[- ]signed|certificate/i);
    expect(e.message).toMatch(/NODE_EXTRA_CA_CERTS/);
    expect(e.message).not.toContain("signature=");
  });

  test("verifyTls: false accepts it (lab only)", async () => {
    const c = new CloudStackClient({ endpoint: url, apiKey: "k", secretKey: "s", verifyTls: false });
    expect((await c.call("listZones")).zone[0].id).toBe("z");
  });
});

describe("probe", () => {
  test("proves endpoint, keys and zone; a bad zone or key says so", async () => {
    const cs = await startCloud();
    try {
      const base = { endpoint: cs.url, apiKey: cs.apiKey, secretKey: cs.secretKey, pollIntervalMs: 5 };
      expect(await new CloudStackBackend({ ...base, zone: cs.zoneId }).probe()).toMatchObject({ zoneId: cs.zoneId, zoneName: "zone1" });
      expect(await new CloudStackBackend({ ...base, zone: "zone1" }).probe()).toMatchObject({ zoneId: cs.zoneId });
      await expect(new CloudStackBackend({ ...base, zone: "nowhere" }).probe()).rejects.toThrow(/zone "nowhere" not found; zones visible to this key: zone1/);
      await expect(new CloudStackBackend({ ...base, secretKey: "bad" }).probe()).rejects.toThrow(/errorcode 401/);
    } finally {
      await cs.stop();
    }
  });
});
