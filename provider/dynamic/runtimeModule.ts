/**
 * Dynamic providers are serialized into the Pulumi state and run in a separate process. To keep
 * the serialized closures tiny, each provider method only captures the absolute path of a
 * compiled module and requires it at run time; all logic lives in that plain module.
 */
import * as path from "path";
import { PACKAGE_ROOT } from "../packageRoot";

/** Absolute path of the compiled module for `relPath` (from the package root, no extension), e.g. "provider/dynamic/domainImpl". */
export function runtimeModulePath(relPath: string): string {
  return path.join(PACKAGE_ROOT, "dist", `${relPath}.js`);
}
