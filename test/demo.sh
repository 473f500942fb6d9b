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

say "a real MCP call through the stdio bridge: initialize, then tools/call sha256"
# tccctl mcp is what an MCP host (Claude Desktop, the MCP Inspector) starts:
# {"command": "tccctl", "args": ["mcp"]}. Here bash plays the host.
coproc BRIDGE { exec "$T" mcp 2>bridge.err; }
send() { printf '%s\n' "$1" >&"${BRIDGE[1]}"; echo "  -> $1"; }
recv() { # print the answer to request id $1
  local line
  while IFS= read -r -t 30 line <&"${BRIDGE[0]}"; do
    case $line in *"\"id\":$1,"*|*"\"id\":$1}"*) echo "  <- $line"; REPLY_LINE=$line; return 0 ;; esac
  done
  echo "no answer to request $1 (bridge stderr: $(cat bridge.err))" >&2
  return 1
}
send '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"make-demo","version":"1"}}}'
recv 1
send '{"jsonrpc":"2.0","method":"notifications/initialized"}'
send '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sha256","arguments":{"text":"abc"}}}'
recv 2
exec {BRIDGE[1]}>&-
wait "$BRIDGE_PID" || true

seq=$(printf '%s' "$REPLY_LINE" | grep -o '"end_seq":[0-9]*' | head -1 | cut -d: -f2)
say "its audit proof: ledger event $seq (call.end) is in the signed Merkle log"
$T ledger show "$seq"
$T ledger prove "$seq"
$T ledger prove "$seq" --json >proof.json
echo "inclusion proof written to $demo/proof.json; checking it offline with dev.pub only:"
$T ledger verify proof.json --key dev.pub

say "export the whole log, stop tccd, verify the export with no daemon running"
$T ledger export >audit.jsonl
kill -TERM $tccd; wait $tccd 2>/dev/null || true
trap - EXIT
$T ledger verify audit.jsonl --key dev.pub
echo
echo "demo state, keys, capsules and the audit export are in $demo"
