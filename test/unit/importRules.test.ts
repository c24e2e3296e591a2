/**
 * The import rules (.dependency-cruiser.js) hold for this repository, and they do fire: a small
 * tree laid out like ours, with one import breaking each rule, is cruised with the same config.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..", "..");
const CONFIG = path.join(ROOT, ".dependency-cruiser.js");
const DEPCRUISE = path.join(ROOT, "node_modules", "dependency-cruiser", "bin", "dependency-cruise.mjs");

test("this repository passes its import rules (npm run check:imports, as npm test runs it)", () => {
  const r = spawnSync("npm", ["run", "--silent", "check:imports"], { cwd: ROOT, encoding: "utf8" });
  expect(r.stdout + r.stderr).toContain("no dependency violations found");
  expect(r.status).toBe(0);
});

describe("a tree that breaks every rule", () => {
  // Inside the checkout, so `@pulumi/pulumi` resolves to our node_modules as it would in the real tree.
  const probe = path.join(ROOT, ".cache", `import-rules-probe-${process.pid}`);
  const files: Record<string, string> = {
    "tsconfig.json": JSON.stringify({ compilerOptions: { module: "commonjs", moduleResolution: "node", strict: true } }),
    "core/model.ts": `export type VmName = string;\n`,
    // Breaks core-imports-only-core and core-does-no-io.
    "core/policy.ts": `import type { Backend } from "../hypervisor/backend";\nimport * as fs from "fs";\nexport type P = Backend | typeof fs;\n`,
    "lib/pid.ts": `import type { VmName } from "../core/model";\nexport type L = VmName;\n`,
    "hypervisor/backend.ts": `import type { VmName } from "../core/model";\nexport interface Backend { name: VmName }\n`,
    // Allowed: hypervisor -> repository.
    "hypervisor/libvirt.ts": `import { Store } from "../repository/store";\nexport const store = new Store();\n`,
    "repository/store.ts": `import type { Backend } from "../hypervisor/backend";\nexport class Store { b?: Backend }\n`,
    // Allowed: a type-only import of the Backend interface. Not allowed: hypervisor code, repository.
    "ops/recover.ts": `import type { Backend } from "../hypervisor/backend";\nimport { store } from "../hypervisor/libvirt";\nimport { Store } from "../repository/store";\nexport const r = (b: Backend) => [b, store, Store];\n`,
    "ops/prune.ts": `import { cmd } from "../cli/main";\nexport const p = cmd;\n`,
    "cli/main.ts": `import * as pulumi from "@pulumi/pulumi";\nexport const cmd = pulumi.getStack;\n`,
    "bench/main.ts": `import { helper } from "../test/support/helper";\nexport const b = helper;\n`,
    "test/support/helper.ts": `export const helper = 1;\n`,
    "provider/dynamic/domainImpl.ts": `export * from "../../ops/prune";\n`,
    "lab/a.ts": `import { b } from "./b";\nexport const a = () => b;\n`,
    "lab/b.ts": `import { a } from "./a";\nexport const b = () => a;\n`,
  };

  beforeAll(() => {
    for (const [rel, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(probe, rel)), { recursive: true });
      fs.writeFileSync(path.join(probe, rel), text);
    }
  });
  afterAll(() => fs.rmSync(probe, { recursive: true, force: true }));

  function cruise(outputType: string) {
    return spawnSync(process.execPath, [DEPCRUISE, "--config", CONFIG, "--output-type", outputType, "core", "lib", "hypervisor", "repository", "ops", "cli", "bench", "test", "provider", "lab"], {
      cwd: probe,
      encoding: "utf8",
    });
  }

  test("each rule reports the import that breaks it, exit status non-zero, and allowed imports pass", () => {
    // The reporter npm test uses: one "error <rule>: <from> → <to>" line per violation.
    const r = cruise("err");
    expect(r.status).not.toBe(0);
    const violations = [...r.stdout.matchAll(/^\s*error (\S+): (\S+) →\s*(\S+)/gm)].map(([, rule, from, to]) => `${rule}: ${from} -> ${to.replace(/^.*node_modules\//, "node_modules/")}`);
    expect(violations.sort()).toEqual(
      [
        "core-imports-only-core: core/policy.ts -> hypervisor/backend.ts",
        "core-does-no-io: core/policy.ts -> fs",
        "lib-imports-nothing-ours: lib/pid.ts -> core/model.ts",
        "repository-imports-only-core-lib: repository/store.ts -> hypervisor/backend.ts",
        "ops-imports-only-core-lib-backend: ops/recover.ts -> hypervisor/libvirt.ts",
        "ops-imports-only-core-lib-backend: ops/recover.ts -> repository/store.ts",
        "ops-imports-only-core-lib-backend: ops/prune.ts -> cli/main.ts",
        "ops-uses-backend-types-only: ops/recover.ts -> hypervisor/libvirt.ts",
        "only-pulumi-imports-pulumi-sdk: cli/main.ts -> node_modules/@pulumi/pulumi/index.js",
        "nothing-imports-cli: ops/prune.ts -> cli/main.ts",
        "bench-does-not-import-test: bench/main.ts -> test/support/helper.ts",
        "provider-dynamic-are-shims: provider/dynamic/domainImpl.ts -> ops/prune.ts",
        "no-circular: lab/a.ts -> lab/b.ts",
      ].sort(),
    );
  });
});
