/**
 * The direction of imports between the layers (README "Layout"), checked by `npm test`
 * (scripts/test.sh) before jest:
 *   npm run check:imports   (depcruise --config .dependency-cruiser.js --output-type err index.ts core lib ... test)
 * Paths are relative to the directory it runs in (the repository root). Type-only imports count:
 * a layer that needs another's types still depends on it.
 */
/** Any module of this repository (not node_modules, not a Node.js built-in). */
const OURS = "^(core|lib|hypervisor|repository|ops|pulumi|cli|provider|lab|examples|bench|test)/|^index\\.ts$";
/** Built-in modules that do I/O: core/ decides, it does not act. */
const IO_BUILTINS = "^(fs|fs/promises|child_process|net|http|https|http2|dgram|dns|tls|worker_threads|cluster)$";

module.exports = {
  forbidden: [
    {
      name: "core-imports-only-core",
      comment: "core/ (model, policy, validation, interval, retention) is pure: it imports nothing of ours outside core/.",
      severity: "error",
      from: { path: "^core/" },
      to: { path: OURS, pathNot: "^core/" },
    },
    {
      name: "core-does-no-io",
      comment: "core/ holds decisions as pure functions; the I/O that acts on them lives in the layers above.",
      severity: "error",
      from: { path: "^core/" },
      to: { dependencyTypes: ["core"], path: IO_BUILTINS },
    },
    {
      name: "lib-imports-nothing-ours",
      comment: "lib/ holds tiny OS helpers every layer may use, so it imports nothing of ours.",
      severity: "error",
      from: { path: "^lib/" },
      to: { path: OURS, pathNot: "^lib/" },
    },
    {
      name: "repository-imports-only-core-lib",
      comment: "The snapshot repository is storage: it knows the model, not hypervisors, operations, Pulumi or the CLI.",
      severity: "error",
      from: { path: "^repository/" },
      to: { path: OURS, pathNot: "^(repository|core|lib)/" },
    },
    {
      name: "hypervisor-imports-only-repository-core-lib",
      comment: "Backends implement the Backend interface; libvirt stores its snapshots in repository/. Nothing above (ops, pulumi, cli).",
      severity: "error",
      from: { path: "^hypervisor/" },
      to: { path: OURS, pathNot: "^(hypervisor|repository|core|lib)/" },
    },
    {
      name: "ops-imports-only-core-lib-backend",
      comment: "Scheduler, recovery, drills and pruning work through the Backend interface only: no virsh, no CloudStack API, no repository internals.",
      severity: "error",
      from: { path: "^ops/" },
      to: { path: OURS, pathNot: "^(ops|core|lib)/|^hypervisor/backend\\.ts$" },
    },
    {
      name: "ops-uses-backend-types-only",
      comment: "ops/ needs the Backend interface's types, never code from hypervisor/: the caller passes a backend in.",
      severity: "error",
      from: { path: "^ops/" },
      to: { path: "^hypervisor/", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "only-pulumi-imports-pulumi-sdk",
      comment: "pulumi/ (component, dynamic providers, policy pack, automation) is the only layer that imports @pulumi/*; examples and tests use it as users do.",
      severity: "error",
      from: { path: OURS, pathNot: "^(pulumi|examples|test|provider/dynamic)/" },
      to: { path: "(^|/)node_modules/@pulumi/" },
    },
    {
      name: "provider-dynamic-are-shims",
      comment: "provider/dynamic/*Impl.ts only re-export pulumi/providers/*Impl (module paths recorded by saved stacks).",
      severity: "error",
      from: { path: "^provider/" },
      to: { path: OURS, pathNot: "^pulumi/providers/" },
    },
    {
      name: "nothing-imports-cli",
      comment: "cli/ is the top: the command line uses the library, never the other way round (its own tests may import it).",
      severity: "error",
      from: { path: OURS, pathNot: "^(cli|test)/" },
      to: { path: "^cli/" },
    },
    {
      name: "bench-does-not-import-test",
      comment: "bench/ ships with npm run bench and must not depend on test helpers; shared lab helpers live in lab/.",
      severity: "error",
      from: { path: "^bench/" },
      to: { path: "^test/" },
    },
    {
      name: "no-circular",
      comment: "No import cycles, type-only ones included: a cycle means two modules are one job or a layer points up.",
      severity: "error",
      from: { path: OURS },
      to: { circular: true },
    },
  ],
  options: {
    // Record imports of packages (so the @pulumi rule sees them) without cruising into them.
    doNotFollow: { path: "(^|/)node_modules/" },
    // Compiled output and caches are not sources.
    exclude: { path: "(^|/)(dist|\\.cache|\\.lab)/" },
    // Count type-only imports (they are dependencies between layers too).
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    moduleSystems: ["cjs", "es6"],
  },
};
