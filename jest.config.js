/** Three layers, selected by folder: test/unit (mocks, scripted virsh), test/integration (real
 * `pulumi up` on the local file backend), test/lab (real libvirt daemons and a real guest). */
module.exports = {
  preset: "ts-jest",
  testEnvironment: "node",
  roots: ["<rootDir>/test"],
  testMatch: ["**/*.test.ts"],
  transform: { "^.+\\.ts$": ["ts-jest", { diagnostics: { warnOnly: false } }] },
  testTimeout: 600000,
  // Lab and integration tests share two daemons and one Pulumi state folder: run files one at a time.
  maxWorkers: 1,
};
