#!/usr/bin/env bash
# GET /api/v1/projects/{p}/deployments (a page of 100, newest first) with
# LISTING_DEPLOYMENTS ready deployments in the project, on SQLite and on
# Postgres: req/s and p99 under wrk (64 connections, server and load on
# different cores). Postgres needs LISTING_PG (default: the local server).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${LISTING_DEPLOYMENTS:-10000}
PG=${LISTING_PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${LISTING_DURATION:-10s}
echo "== listing: a page of deployments out of $N =="
cpu_note

listing() {
    local name=$1
    shift
    start_helix "$name" taskset -c 1 env "$@"
    local api_var=${name}_API data_var=${name}_DATA
    local api=${!api_var} data=${!data_var}
    "$HB" populate --api "http://127.0.0.1:$api" --token-file "$data/admin.token" \
        --deployments "$N" --projects 1 --concurrency 8 >"$WORK/$name-populate.json"
    local out
    out=$(taskset -c 0 wrk -t1 -c64 -d"$DURATION" --latency \
        -H "Authorization: Bearer $(cat "$data/admin.token")" \
        "http://127.0.0.1:$api/api/v1/projects/p0/deployments")
    local rps p99
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { v = $2; if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }; print v }' <<<"$out")
    result "listing_${name,,}_req_per_s" "$rps"
    result "listing_${name,,}_p99_ms" "$p99"
}

listing SQLITE HELIX_LOG=warn
DB="helix_bench_$(date +%s)_$$"
if psql "$PG/postgres" -qc "CREATE DATABASE $DB" 2>/dev/null; then
    listing POSTGRES HELIX_DATABASE_URL="$PG/$DB"
else
    echo "  (no Postgres at $PG: skipped)"
fi
