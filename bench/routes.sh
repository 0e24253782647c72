#!/usr/bin/env bash
# Route evaluation cost: the edge's route phase alone, in process, over a
# site with 100, 1,000 and 10,000 rules (60% exact, 30% placeholder, 10%
# splat) and requests that hit each kind or miss them all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

echo "== route evaluation: ns per request by rule count =="
cpu_note
out=$("$HB" routes --rules 100,1000,10000)
echo "$out" | sed 's/^/  /'
result routes_netlify_1000_ns "$(echo "$out" | awk '$1 == "netlify" && $2 == 1000 { print $4 }')"
result routes_pages_1000_ns "$(echo "$out" | awk '$1 == "cloudflare-pages" && $2 == 1000 { print $4 }')"
