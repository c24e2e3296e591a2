/**
 * Dynamic providers are serialized into the Pulumi state and run in a separate process. To keep
 * the serialized closures tiny, each provider method only captures the absolute path of a
 * compiled module (and its own name) and requires that module at run time; all logic lives there.
 */
import * as path from "path";
import type * as pulumi from "@pulumi/pulumi";
import { PACKAGE_ROOT } from "../packageRoot";

/**
 * How the provider process should require the compiled module for `relPath` (from the package
 * root, no extension), e.g. "provider/dynamic/domainImpl". Installed as a dependency, that is
 * the package name (so the state does not pin an absolute path); in a checkout, the absolute path.
 */
export function runtimeModulePath(relPath: string): string {
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
