#!/usr/bin/env bash
# Makes the Pulumi CLI and the Node.js plugin launchers available, without downloading any
# prebuilt binary: use a `pulumi` already on PATH when it is new enough, else build the pinned
# release from Go modules (scripts/pulumi-build) into .cache/pulumi/<version>/bin.
# Prints the bin directory to put first on PATH as its last line.
#
# Bump: edit scripts/pulumi-version, then in scripts/pulumi-build run
#   go get github.com/pulumi/pulumi/pkg/v3@vX github.com/pulumi/pulumi/sdk/v3@vX && go mod tidy
# and copy any new `replace` lines from pulumi's own pkg/go.mod (a dependency's replaces are ignored).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="$(tr -d ' \n' < "$root/scripts/pulumi-version")"
cache="${PROTECTED_VM_CACHE:-$root/.cache}/pulumi/$version"
bin="$cache/bin"
mkdir -p "$bin"
log() { echo "[bootstrap-pulumi] $*" >&2; }

version_ge() { # $1 >= $2, both x.y.z
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

start=$(date +%s)
if [ -x "$bin/pulumi" ] && [ "$("$bin/pulumi" version 2>/dev/null)" = "v$version" ]; then
  : # cached build, nothing to do
elif existing="$(command -v pulumi 2>/dev/null)" && [ -n "$existing" ] && [ "$existing" != "$bin/pulumi" ] \
     && have="$("$existing" version 2>/dev/null | sed 's/^v//')" && version_ge "${have%%-*}" "$version"; then
  log "using pulumi $have already on PATH ($existing)"
  ln -sf "$existing" "$bin/pulumi"
else
  command -v go >/dev/null || { log "Go is not installed: install Go (https://go.dev/doc/install) or put a pulumi >= $version on PATH"; exit 1; }
  log "building pulumi v$version from Go modules (first run only; a few minutes on 2 cores)"
  ( cd "$root/scripts/pulumi-build" && \
    GOFLAGS=-buildvcs=false go build -trimpath -mod=mod \
      -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
      -o "$bin/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi ) \
    || { log "FAILED: go build of github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@v$version (see the Go errors above; check the Go module proxy is reachable: go env GOPROXY)"; exit 1; }
  mv "$bin/pulumi.tmp" "$bin/pulumi"
  log "built pulumi $("$bin/pulumi" version) in $(( $(date +%s) - start ))s"
fi

# pulumi-language-nodejs: the Go module proxy here serves no version of
# github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3 (403 for every tag and
# commit), so it cannot be built. Our stacks run as Automation API inline programs: the Node.js
# SDK then serves the language runtime itself and the CLI connects to it (--client), so no
# language host binary is needed. A pulumi-language-nodejs already on PATH is used if present.
if lang="$(command -v pulumi-language-nodejs 2>/dev/null)" && [ -n "$lang" ] && [ "$lang" != "$bin/pulumi-language-nodejs" ]; then
  ln -sf "$lang" "$bin/pulumi-language-nodejs"
fi

# Launchers that a Pulumi release ships beside its binaries. They find @pulumi/pulumi from the
# directory the engine starts them in (the program's or the policy pack's), falling back to ours.
cat > "$bin/pulumi-resource-pulumi-nodejs" <<SH
#!/bin/sh
# Dynamic-provider plugin: runs @pulumi/pulumi's dynamic provider host.
dir=\$(node -e 'try{process.stdout.write(require("path").dirname(require.resolve("@pulumi/pulumi/package.json",{paths:[process.cwd()]})))}catch(e){}')
[ -n "\$dir" ] || dir="$root/node_modules/@pulumi/pulumi"
exec node "\$dir/cmd/dynamic-provider" "\$@"
SH
cat > "$bin/pulumi-analyzer-policy-nodejs" <<SH
#!/bin/sh
# Policy-pack analyzer plugin: runs @pulumi/pulumi's policy pack host from the pack's directory.
dir=\$(node -e 'try{process.stdout.write(require("path").dirname(require.resolve("@pulumi/pulumi/package.json",{paths:[process.cwd()]})))}catch(e){}')
[ -n "\$dir" ] || dir="$root/node_modules/@pulumi/pulumi"
exec node "\$dir/cmd/run-policy-pack" "\$@"
SH
cp "$bin/pulumi-analyzer-policy-nodejs" "$bin/pulumi-analyzer-policy"
chmod +x "$bin/pulumi-resource-pulumi-nodejs" "$bin/pulumi-analyzer-policy-nodejs" "$bin/pulumi-analyzer-policy"
echo "$bin"
