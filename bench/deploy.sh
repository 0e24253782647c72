#!/usr/bin/env bash
# Deploy speed: a generated 1,000-file, ~20 MB site (40 % HTML, 20 % CSS,
# 20 % JS as text, 20 % random binary "images"), first deploy to a fresh
# release `helix server`, then redeploys with one file changed; each timed
# as the wall time of the `helix deploy --json` process, against
# `tar c DIR | sha256sum` of the same tree (warm page cache, median of 3).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

REDEPLOYS=${DEPLOY_REDEPLOYS:-3}
echo "== deploy: 1,000-file ~20 MB site, first deploy and $REDEPLOYS one-file redeploys vs tar | sha256sum =="
cpu_note
bytes=$("$HB" gen-site "$WORK/site" --files 1000 --bytes 20000000)
echo "  generated $(find "$WORK/site" -type f | wc -l) files, $bytes bytes"

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

tar -C "$WORK" -c site | sha256sum >/dev/null # warm the page cache
tar_s=$(for _ in 1 2 3; do
    t0=$(now)
    tar -C "$WORK" -c site | sha256sum >/dev/null
    elapsed "$t0" "$(now)"
    echo
done | median)

start_helix D

# timed_deploy → "wall_s cli_s uploaded uploaded_bytes"
timed_deploy() {
    local t0 t1 json
    t0=$(now)
    json=$(helix_cli D deploy "$WORK/site" --project site --prod --json)
    t1=$(now)
    echo "$json" >>"$WORK/deploys.json"
    echo "$(elapsed "$t0" "$t1") $(echo "$json" | jq -r '"\(.seconds) \(.uploaded) \(.uploaded_bytes)"')"
}

read -r first_s first_cli uploaded uploaded_bytes < <(timed_deploy)
printf '  first deploy   %6.3f s wall (CLI says %.3f s)   uploaded %d files, %d bytes\n' \
    "$first_s" "$first_cli" "$uploaded" "$uploaded_bytes"
result deploy_tar_s "$tar_s"
result deploy_first_s "$first_s"
result deploy_first_uploaded_bytes "$uploaded_bytes"
result deploy_first_vs_tar "$(ratio "$first_s" "$tar_s")"

# Each redeploy changes a different HTML page (appends one line).
pages=$(find "$WORK/site/pages" -name '*.html' | sort | head -n "$REDEPLOYS")
redeploys=()
for page in $pages; do
    echo "<!-- changed for redeploy $(basename "$page") -->" >>"$page"
    read -r s cli uploaded uploaded_bytes < <(timed_deploy)
    printf '  redeploy       %6.3f s wall (CLI says %.3f s)   uploaded %d files, %d bytes\n' \
        "$s" "$cli" "$uploaded" "$uploaded_bytes"
    redeploys+=("$s")
done
redeploy_s=$(printf '%s\n' "${redeploys[@]}" | median)
result deploy_redeploy_s "$redeploy_s"
result deploy_redeploy_uploaded_bytes "$uploaded_bytes"
