#!/usr/bin/env bash
# Schemathesis against the served OpenAPI document: starts `helix server`
# on free ports with a throwaway data dir, seeds a project (a deployment,
# a variable, a domain) so operations reach real objects as well as
# random names, and runs schemathesis's checks: no 5xx, every status,
# content type and body as documented. Exit status: schemathesis's.
#
#   bash tests/schemathesis/run.sh [EXAMPLES]     # default 25 per operation
#
# Revoking tokens and removing members are left out: stateful runs find
# the run's own token (or its user) and cut the rest of the run off; the
# authorization tests cover both.
#
# Installs schemathesis (PyPI) into a venv beside the build cache once.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/tests/schemathesis"
examples="${1:-25}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/helixstack/target}"
venv="${SCHEMATHESIS_VENV:-$HOME/.cache/helixstack/schemathesis-venv}"
version="4.32.5"

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$version"
fi
(cd "$root" && cargo build -q --locked -p helix-cli)
helix="$target/debug/helix"

work="$(mktemp -d)"
cleanup() {
    [[ -n "${server:-}" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [[ -n "${dns:-}" ]] && kill "$dns" 2>/dev/null && wait "$dns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port="$(free_port)"
edge_port="$(free_port)"
# Domain claims are verified against a DNS server of the run's own, which
# answers at once (names without records: 127.0.0.2, where nothing listens).
dns_port="$(free_port)"
pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -management "127.0.0.1:$(free_port)" -http01 "" -https01 "" \
    -tlsalpn01 "" -defaultIPv4 127.0.0.2 -defaultIPv6 "" >"$work/dns.log" 2>&1 &
dns=$!
HELIX_API_RATE=0 "$helix" server --data-dir "$work/data" --api-addr "127.0.0.1:$api_port" \
    --edge-addr "127.0.0.1:$edge_port" --build-workers 0 --dns-server "127.0.0.1:$dns_port" >"$work/server.log" 2>&1 &
server=$!
export HELIX_API_URL="http://127.0.0.1:$api_port"
for _ in $(seq 100); do
    curl -sf "$HELIX_API_URL/healthz" >/dev/null && break
    sleep 0.1
done
export HELIX_TOKEN="$(cat "$work/data/admin.token")"

mkdir -p "$work/site"
echo '<h1>hello</h1>' >"$work/site/index.html"
printf '/old /new 301\n' >"$work/site/_redirects"
"$helix" deploy "$work/site" --project demo --prod >/dev/null
"$helix" env set GREETING hello --project demo >/dev/null
"$helix" env set API_KEY s3cret-value --secret --project demo >/dev/null
"$helix" domains add shop.demo.test --project demo >/dev/null
deployment="$("$helix" deployments --project demo --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
export HELIX_SEEDED_DEPLOYMENT="$deployment"

# Its cache goes with the throwaway server, not into the checkout.
cd "$work"
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run "$HELIX_API_URL/api/v1/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-operation-id delete_tokens_id --exclude-operation-id delete_members_user \
    --max-examples "$examples" --workers 1 --no-color || {
    status=$?
    echo "--- server log (last 50 lines)" >&2
    tail -50 "$work/server.log" >&2
    exit "$status"
}
