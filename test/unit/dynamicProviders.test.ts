/**
 * What Pulumi stores for each dynamic provider is the serialized closure: it must stay tiny and
 * capture no backend, repository or client object - only a module path to require at run time.
 */
import * as pulumi from "@pulumi/pulumi";
import { domainProvider } from "../../pulumi/providers/domain";
import { snapshotProvider } from "../../pulumi/providers/snapshot";
import { retentionProvider } from "../../pulumi/providers/retention";
import { LEGACY_MODULE_PATHS, runtimeModulePath } from "../../pulumi/providers/runtimeModule";

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
    expect(text).toContain(`dist/pulumi/providers/${impl}.js`);
    for (const heavy of ["LibvirtBackend", "SnapshotRepository", "CloudStackClient", "execFile", "axios"]) expect(text).not.toContain(heavy);
  });
});

describe("module paths recorded by saved stacks", () => {
  // Stacks created by protected-vm 0.1 recorded dist/provider/dynamic/*Impl.js: after the move to
  // pulumi/providers/ they must still load, and offer the same provider methods (needs the build).
  test.each(Object.entries(LEGACY_MODULE_PATHS))("%s still resolves to %s", (legacy, current) => {
    const old = require(runtimeModulePath(legacy));
    const now = require(runtimeModulePath(current));
    const methods = ["check", "diff", "create", "read", "update", "remove"].filter((m) => typeof now[m] === "function");
    expect(methods.length).toBeGreaterThanOrEqual(3);
    for (const m of methods) expect(old[m]).toBe(now[m]);
  });
});
