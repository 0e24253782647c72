#!/usr/bin/env bash
# Static serving: the HelixStack edge against nginx serving the same two
# files (1 KB and 100 KB of random, incompressible bytes), each server pinned
# to core 1, wrk pinned to core 0 with 64 keep-alive connections. The two
# servers run side by side (only the one under load is busy) and are
# measured alternately.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${STATIC_DURATION:-8s}
WARMUP=${STATIC_WARMUP:-2s}
HOST=bench.localhost

echo "== static serving: helix edge vs nginx (server on core 1, wrk on core 0, -t1 -c64 -d$DURATION) =="
cpu_note
"$HB" gen-static "$WORK/site"
chmod 755 "$WORK" # nginx workers run as an unprivileged user when started as root

start_helix H taskset -c 1
helix_cli H deploy "$WORK/site" --project bench --prod --json >/dev/null
wait_http "http://127.0.0.1:$H_EDGE/1k.bin" "$HOST"

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    # tcp_nopush (TCP_CORK) is left off: on loopback it halves nginx's
    # 100 KB rate (≈20k vs ≈37k req/s here).
    tcp_nodelay on;
    access_log off;
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 60s;
    # Defaults to 1000; wrk's connections must stay open as they do on helix.
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/site;
    }
}
CONF
taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/logs/stderr.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/1k.bin"

# Both must send the same bytes, with no content coding.
for f in 1k.bin 100k.bin; do
    curl -sf -H "Host: $HOST" "http://127.0.0.1:$H_EDGE/$f" | cmp -s - "$WORK/site/$f" \
        || { echo "helix serves other bytes for $f" >&2; exit 1; }
    curl -sf -H "Host: $HOST" "http://127.0.0.1:$NGINX_PORT/$f" | cmp -s - "$WORK/site/$f" \
        || { echo "nginx serves other bytes for $f" >&2; exit 1; }
done

for f in 1k.bin 100k.bin; do
    size=${f%.bin}
    for server in helix nginx; do
        port=$H_EDGE
        [[ $server == nginx ]] && port=$NGINX_PORT
        wrk_run "$port" "/$f" "$WARMUP" >/dev/null
        read -r rps p99 bad err < <(wrk_run "$port" "/$f" "$DURATION")
        printf '  %-5s %-6s %10.0f req/s   p99 %7.2f ms   non-2xx %d   socket errors %d\n' \
            "$size" "$server" "$rps" "$p99" "$bad" "$err"
        declare "${server}_rps=$rps" "${server}_p99=$p99"
    done
    result "static_${size}_helix_rps" "$helix_rps"
    result "static_${size}_nginx_rps" "$nginx_rps"
    result "static_${size}_ratio" "$(ratio "$helix_rps" "$nginx_rps")"
    result "static_${size}_helix_p99_ms" "$helix_p99"
    result "static_${size}_nginx_p99_ms" "$nginx_p99"
done

# The same site with a 1,000-rule Netlify _redirects (exact, placeholder and
# splat rules, none of which matches the file requested, so every request
# goes through the whole route phase) against the site without rules.
mkdir -p "$WORK/rules-site"
cp "$WORK/site/"* "$WORK/rules-site/"
for i in $(seq 0 999); do
    case $((i % 10)) in
        [0-5]) echo "/old/page-$i /new/page-$i 301" ;;
        [6-8]) echo "/blog/$i/:slug /posts/$i/:slug 301" ;;
        9) echo "/docs-$i/* /d/$i/:splat 302" ;;
    esac
done >"$WORK/rules-site/_redirects"
helix_cli H deploy "$WORK/rules-site" --project rules --prod --compat netlify --json >/dev/null
wait_http "http://127.0.0.1:$H_EDGE/1k.bin" rules.localhost
for host in "$HOST" rules.localhost; do
    wrk_run "$H_EDGE" /1k.bin "$WARMUP" "$host" >/dev/null
    read -r rps p99 bad err < <(wrk_run "$H_EDGE" /1k.bin "$DURATION" "$host")
    printf '  1k    %-16s %10.0f req/s   p99 %7.2f ms   non-2xx %d   socket errors %d\n' "$host" "$rps" "$p99" "$bad" "$err"
    [[ $host == rules.localhost ]] && rules_rps=$rps || plain_rps=$rps
done
result static_rules_1k_rps "$rules_rps"
result static_plain_1k_rps "$plain_rps"
result static_rules_ratio "$(ratio "$rules_rps" "$plain_rps")"
