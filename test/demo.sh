#!/usr/bin/env bash
# make demo: a dev key, the example cells packed, signed and registered with
# a fresh tccd, a real call, and its audit record. Everything lives in
# build/demo; the daemon is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
demo=$top/build/demo
T=$top/bin/tccctl

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo needs root: tccd creates namespaces, cgroups and seccomp filters" >&2
  exit 1
fi

rm -rf "$demo"
mkdir -p "$demo"
cd "$demo"
export TCC_SOCKET=$demo/tcc.sock

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "a development signing key"
$T key generate dev

say "start tccd (state in $demo/state, log in $demo/tccd.log)"
"$top/bin/tccd" --state-dir "$demo/state" --socket "$TCC_SOCKET" --trust dev.pub --ledger-key dev.key >tccd.log 2>&1 &
tccd=$!
trap 'kill -TERM $tccd 2>/dev/null; wait $tccd 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$TCC_SOCKET" ] && break; sleep 0.1; done
$T status

for cell in sha256 json-query config-audit; do
  say "pack, sign and register $cell"
  # Pack a copy: pack writes the binary's digest into cell.yaml, and the
  # checked-in manifests stay free of build-specific digests.
  cp -r "$top/cells/examples/$cell" "src-$cell"
  $T cell pack "src-$cell" -o "$cell.cell"
  $T cell sign "$cell.cell" --key dev.key
  $T cell register "$cell.cell"
done
$T cell list

say "run sha256 on {\"text\":\"abc\"} in a throwaway sandbox"
$T run sha256 --input '{"text":"abc"}'

say "the same call, whole outcome (verdict, usage, wipe check, ledger events)"
$T run sha256 --input '{"text":"abc"}' --json

say "run config-audit on a small cloud configuration"
$T run config-audit --input '{"resources":[{"type":"storage_bucket","name":"logs","public":true,"encryption":false}]}'
