#!/usr/bin/env bash
# Build speed: the Vite fixture (tests/fixtures/vite-app) built through
# HelixStack (`helix build --project P -f`: fetch from a local git
# repository, plan, `npm ci` and `npm run build` in the bubblewrap sandbox,
# deploy) against the same `npm ci && npm run build` run by hand in a fresh
# clone. Cold: empty npm caches on both sides (every package downloaded
# from the registry), each run a new project so HelixStack has no cache
# either; median of BUILD_ROUNDS. Warm: a second build of the same project
# after a one-line change (same lockfile). Each timed as wall time of the
# whole command.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${BUILD_ROUNDS:-3}
echo "== build: Vite app, HelixStack vs npm ci && npm run build by hand, cold (median of $ROUNDS) and warm =="
cpu_note
command -v npm >/dev/null || { echo "npm is missing (apt-get install npm)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "bubblewrap is missing (apt-get install bubblewrap)" >&2; exit 1; }

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The app in a bare repository, as a git host would hold it.
git init -q -b main "$WORK/app"
cp -r "$ROOT/tests/fixtures/vite-app/." "$WORK/app/"
rm -rf "$WORK/app/node_modules" "$WORK/app/dist"
git -C "$WORK/app" add -A
git -C "$WORK/app" -c user.email=b@example.com -c user.name=bench commit -qm app
git clone -q --bare "$WORK/app" "$WORK/app.git"

# The two sides alternate round by round, so a slow spell of the registry
# falls on both.
start_helix B
hand_cold=()
helix_cold=()
for round in $(seq 1 "$ROUNDS"); do
    dir=$WORK/hand-$round
    git clone -q "$WORK/app.git" "$dir"
    t0=$(now)
    (cd "$dir" && env -i PATH="$PATH" HOME="$WORK/hand-home-$round" npm_config_cache="$WORK/hand-npm-$round" CI=true \
        sh -c 'npm ci --no-audit --no-fund >/dev/null 2>&1 && npm run build >/dev/null 2>&1')
    s=$(elapsed "$t0" "$(now)")
    hand_cold+=("$s")

    helix_cli B projects link "app$round" --repo "file://$WORK/app.git" --json >/dev/null
    t0=$(now)
    helix_cli B build --project "app$round" -f >"$WORK/build-cold-$round.log" || { tail -40 "$WORK/build-cold-$round.log"; exit 1; }
    h=$(elapsed "$t0" "$(now)")
    helix_cold+=("$h")
    printf '  round %d: by hand %6.3f s, helix %6.3f s\n' "$round" "$s" "$h"
done
hand_cold_s=$(printf '%s\n' "${hand_cold[@]}" | median)
helix_cold_s=$(printf '%s\n' "${helix_cold[@]}" | median)

# Warm: the same lockfile, one source line changed.
echo "document.title = 'warm';" >>"$WORK/app/src/main.js"
git -C "$WORK/app" -c user.email=b@example.com -c user.name=bench commit -qam warm
git -C "$WORK/app" push -q "$WORK/app.git" main
t0=$(now)
helix_cli B build --project app1 -f >"$WORK/build-warm.log" || { tail -40 "$WORK/build-warm.log"; exit 1; }
helix_warm_s=$(elapsed "$t0" "$(now)")
grep -q "restored from the cache" "$WORK/build-warm.log" || { echo "warm build did not use the cache" >&2; cat "$WORK/build-warm.log" >&2; exit 1; }
printf '  helix, warm             %6.3f s\n' "$helix_warm_s"

result build_hand_cold_s "$hand_cold_s"
result build_helix_cold_s "$helix_cold_s"
result build_cold_vs_hand "$(ratio "$helix_cold_s" "$hand_cold_s")"
result build_helix_warm_s "$helix_warm_s"
result build_warm_vs_cold "$(ratio "$helix_warm_s" "$helix_cold_s")"
