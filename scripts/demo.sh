#!/usr/bin/env bash
# The README's main job on the local lab: install what is missing, build, then run
# examples/protected-vm/demo.ts (lab up -> pulumi up -> snapshots -> host a dies -> recover on b).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/bootstrap-pulumi.sh >/dev/null
npx tsc -p tsconfig.json
exec node dist/examples/protected-vm/demo.js "$@"
