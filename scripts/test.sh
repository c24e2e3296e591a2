#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what is missing, builds, then runs all three
# layers - unit (mocks, scripted virsh), integration (real `pulumi up` on the local file
# backend) and lab (two real libvirt daemons, a real guest). Prints the time of each slow step.
# Extra arguments go to jest (e.g. `npm test -- test/unit`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { # name, command...; prints how long it took and returns its status
  local name="$1"; shift
  local t0 rc=0
  t0=$(date +%s)
  echo "==> $name"
  "$@" || rc=$?
  echo "==> $name: $(( $(date +%s) - t0 ))s$([ "$rc" = 0 ] || echo " (exit $rc)")"
  return "$rc"
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci" npm ci --no-audit --no-fund
fi
# The direction of imports between the layers (.dependency-cruiser.js): fails before anything slow.
step "import rules (dependency-cruiser)" npm run --silent check:imports
step "pulumi toolchain (built from Go modules on first run, cached after)" bash scripts/bootstrap-pulumi.sh
step "lab: two libvirt hosts and the test guest" bash lab/lab.sh up
# Leave no lab process behind, whatever happens below.
trap 'bash lab/lab.sh down >/dev/null 2>&1 || true' EXIT
step "tsc build" npx tsc -p tsconfig.json
step "tsc build (test programs)" npx tsc -p tsconfig.test.json
results="$root/.cache/jest-results.json"
mkdir -p "$(dirname "$results")"
rm -f "$results"
rc=0
step "jest (unit, integration, lab)" npx jest --ci --json --outputFile="$results" "$@" || rc=$?
# One plain closing line CI can read: "jest: N passed, N failed, N skipped".
node -e '
  const r = require(process.argv[1]);
  console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);
' "$results" 2>/dev/null || echo "jest: 0 passed, 1 failed"
exit "$rc"
