/**
 * What Pulumi stores for each dynamic provider is the serialized closure: it must stay tiny and
 * capture no backend, repository or client object - only a module path to require at run time.
 */
import * as pulumi from "@pulumi/pulumi";
import { domainProvider } from "../../provider/dynamic/domain";
import { snapshotProvider } from "../../provider/dynamic/snapshot";
import { retentionProvider } from "../../provider/dynamic/retention";

describe("serialized dynamic providers", () => {
  const providers = { Domain: domainProvider, Snapshot: snapshotProvider, Retention: retentionProvider };
  test.each([
    ["Domain", "domainImpl"],
    ["Snapshot", "snapshotImpl"],
    ["Retention", "retentionImpl"],
  ] as const)("%s provider serializes to a small closure that requires %s at run time", async (_name, impl) => {
    const provider = providers[_name];
    const { text } = await pulumi.runtime.serializeFunction(() => provider);
    console.log(`${_name}: ${text.length} bytes serialized`);
    expect(text.length).toBeLessThan(4000);
    expect(text).toContain(`dist/provider/dynamic/${impl}.js`);
    for (const heavy of ["LibvirtBackend", "SnapshotRepository", "CloudStackClient", "execFile", "axios"]) expect(text).not.toContain(heavy);
  });
});
