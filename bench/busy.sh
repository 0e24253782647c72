#!/usr/bin/env bash
# The edge while a build burns CPU: a probe GETs a site at a fixed rate,
# idle, then during a build whose step spins one busy loop per core (and
# forks a bomb), in the sandbox; and, as the peer, during the same load run
# by hand outside any sandbox (what a build gets on a host that does not
# confine it). Goal: p99 during a build <= 2x idle. Needs root (bubblewrap,
# cgroups).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_EACH=${BUSY_SECONDS:-10}
RATE=${BUSY_RATE:-200}
echo "== edge probe p99: idle, during a CPU-bound build, during the same load unconfined =="
cpu_note
start_helix B
mkdir -p "$WORK/site"
echo '<p>probe</p>' >"$WORK/site/index.html"
helix_cli B deploy "$WORK/site" --project probe --prod --json >/dev/null
probe() { "$HB" probe --edge "127.0.0.1:$B_EDGE" --host probe.localhost --rate "$RATE" --seconds "$SECONDS_EACH" | jq .p99_ms; }

probe >/dev/null # warm-up
idle=$(probe)
result busy_idle_p99_ms "$idle"

# The hog: a busy loop per core and a fork bomb, for a while.
cores=$(nproc)
hog="i=0; while [ \$i -lt $((cores * 2)) ]; do (while :; do :; done) & i=\$((i+1)); done; bomb() { bomb | bomb & }; bomb; sleep $((SECONDS_EACH + 20))"

repo=$WORK/repo
git init -q -b main "$repo"
cp "$WORK/site/index.html" "$repo/"
printf '[build]\ncommand = """%s"""\npublish = "."\n' "$hog" >"$repo/helix.toml"
git -C "$repo" add -A
git -C "$repo" -c user.email=b@x -c user.name=b commit -qm hog
helix_cli B projects link hog --repo "file://$repo" --json >/dev/null
helix_cli B build --project hog --json >/dev/null
sleep 3 # the step is running
during=$(probe)
result busy_build_p99_ms "$during"
result busy_build_vs_idle "$(ratio "$during" "$idle")"
build_id=$(helix_cli B builds --project hog --json | jq -r '.[0].id')
helix_cli B builds cancel "$build_id" >/dev/null 2>&1 || true
sleep 6

# The peer: the same busy loops by hand, unconfined (no fork bomb: it would
# take the machine down).
hogs=()
for _ in $(seq 1 $((cores * 2))); do
    sh -c 'while :; do :; done' &
    hogs+=($!)
    PIDS+=($!)
done
sleep 1
unconfined=$(probe)
kill "${hogs[@]}" 2>/dev/null || true
result busy_unconfined_p99_ms "$unconfined"
result busy_unconfined_vs_idle "$(ratio "$unconfined" "$idle")"
