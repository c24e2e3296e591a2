/**
 * Dynamic providers are serialized into the Pulumi state and run in a separate process. To keep
 * the serialized closures tiny, each provider method only captures the absolute path of a
 * compiled module (and its own name) and requires that module at run time; all logic lives there.
 *
 * Saved stacks keep the path they were created with. Paths recorded by earlier layouts stay
 * requirable: `provider/dynamic/*Impl.ts` re-export the modules that live here now (see
 * LEGACY_MODULE_PATHS and the test that loads every one of them).
 */
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { PACKAGE_ROOT } from "../../lib/packageRoot";

/**
 * How the provider process should require the compiled module for `relPath` (from the package
 * root, no extension; an absolute path is taken as it is), e.g. "pulumi/providers/domainImpl". Installed as a dependency, that is
 * the package name (so the state does not pin an absolute path); in a checkout, the absolute path.
 */
export function runtimeModulePath(relPath: string): string {
  if (path.isAbsolute(relPath)) return relPath;
  if (PACKAGE_ROOT.split(path.sep).includes("node_modules")) {
    const { name } = require(path.join(PACKAGE_ROOT, "package.json")) as { name: string };
    return `${name}/dist/${relPath}`;
  }
  return path.join(PACKAGE_ROOT, "dist", `${relPath}.js`);
}

type Method = "check" | "diff" | "create" | "read" | "update" | "delete";

/**
 * A ResourceProvider whose methods call the same-named exports of the module at `relPath`
 * (`delete` calls `remove`, a reserved word as an export name).
 */
export function delegatingProvider(relPath: string, methods: Method[]): pulumi.dynamic.ResourceProvider {
  const modulePath = runtimeModulePath(relPath);
  const provider: Record<string, unknown> = {};
  for (const method of methods) {
    const exportName = method === "delete" ? "remove" : method;
    provider[method] = (...args: unknown[]) => require(modulePath)[exportName](...args);
  }
  return provider as unknown as pulumi.dynamic.ResourceProvider;
}

/**
 * Module paths (from the package root, no extension) that stacks created by earlier versions
 * recorded in their state, with the module each now resolves to. Never remove an entry: a stack
 * saved with it could no longer be refreshed or destroyed.
 */
export const LEGACY_MODULE_PATHS: Record<string, string> = {
  "provider/dynamic/domainImpl": "pulumi/providers/domainImpl",
  "provider/dynamic/retentionImpl": "pulumi/providers/retentionImpl",
  "provider/dynamic/snapshotImpl": "pulumi/providers/snapshotImpl",
  "provider/dynamic/schedulerProcessImpl": "pulumi/providers/schedulerProcessImpl",
};
