# shellcheck shell=bash
# Shared by the bench scripts: paths, free ports, starting and stopping a
# `helix server`, timing, and recording results for `bench/run`.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
HELIX=$TARGET_DIR/release/helix
HB=$TARGET_DIR/release/helix-bench

# Every process a script starts goes into PIDS; the trap ends them by id.
PIDS=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/helix-bench.XXXXXX")
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for bin in "$HELIX" "$HB"; do
    [[ -x $bin ]] || { echo "missing $bin: run bench/run (it builds them)" >&2; exit 1; }
done

free_port() { "$HB" free-port; }

now() { echo "$EPOCHREALTIME"; }
# seconds between two `now` stamps
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# a / b with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# Waits until `curl` gets any answer from URL (Host header optional).
wait_http() {
    local url=$1 host=${2:-} i
    for i in $(seq 1 200); do
        if curl -s -o /dev/null ${host:+-H "Host: $host"} "$url"; then return 0; fi
        sleep 0.05
    done
    echo "nothing answers at $url" >&2
    return 1
}

# start_helix NAME [prefix command…]: starts `helix server` with its own data
# dir and free ports; sets NAME_API, NAME_EDGE, NAME_DATA.
start_helix() {
    local name=$1
    shift
    local data=$WORK/$name-data api edge
    api=$(free_port)
    edge=$(free_port)
    mkdir -p "$data"
    # Benchmarks measure throughput: no per-token rate limit.
    HELIX_LOG=${HELIX_LOG:-warn} HELIX_API_RATE=${HELIX_API_RATE:-0} "$@" "$HELIX" server --data-dir "$data" \
        --api-addr "127.0.0.1:$api" --edge-addr "127.0.0.1:$edge" --gc-interval-secs 0 \
        2>"$WORK/$name.log" &
    PIDS+=($!)
    printf -v "${name}_API" '%s' "$api"
    printf -v "${name}_EDGE" '%s' "$edge"
    printf -v "${name}_DATA" '%s' "$data"
    wait_http "http://127.0.0.1:$api/healthz"
}

# helix_cli NAME ARGS…: runs the CLI against server NAME.
helix_cli() {
    local name=$1
    shift
    local api_var=${name}_API data_var=${name}_DATA
    HELIX_API_URL="http://127.0.0.1:${!api_var}" HELIX_DATA_DIR="${!data_var}" "$HELIX" "$@"
}

# result KEY VALUE: prints it and appends it for bench/run's summary.
result() {
    printf '  %-28s %s\n' "$1" "$2"
    if [[ -n ${BENCH_RESULTS:-} ]]; then echo "$1=$2" >>"$BENCH_RESULTS"; fi
}

cpu_note() {
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (other work on this machine skews results)"
}

# wrk_run PORT PATH DURATION [HOST] → "req_per_s p99_ms non2xx errors"
wrk_run() {
    local out
    out=$(taskset -c 0 wrk -t1 -c64 -d"$3" --latency -H "Host: ${4:-${HOST:-localhost}}" "http://127.0.0.1:$1$2")
    echo "$out" >>"$WORK/wrk.log"
    echo "$out" | awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        /Requests\/sec/ { rps = $2 }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx/ { bad = $NF }
        /Socket errors/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
        END { printf "%s %.3f %d %d\n", rps, p99, bad, err }'
}
