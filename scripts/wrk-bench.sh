#!/usr/bin/env bash
# Measures the read and allocation routes the way the scale-out figures in docs/benchmarks.md
# were measured: a release build on a fresh database, a partner made with
# `partners create --tier internal`, one child, no Redis; `wrk -t2 -c64 -d10s --latency` from
# outside against each route (allocations with a fresh Idempotency-Key per request), and the
# server's own /healthz in the same run as the ceiling. Each route starts after a `sync` (see
# below). By hand, not in CI (needs wrk).
#
#   scripts/wrk-bench.sh sqlite
#   ROUTES="healthz allocations" SECONDS_EACH=10 scripts/wrk-bench.sh postgres
#   scripts/wrk-bench.sh postgres postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
backend=${1:-sqlite}
base_url=${2:-postgres://postgres@127.0.0.1:5432/postgres}
seconds=${SECONDS_EACH:-10}
bin=${STRATA_BIN:-./target/release/strata}
port=${PORT:-18080}
work=$(mktemp -d)
db_args=(--data-dir "$work/data")
dbname=""
if [ "$backend" = postgres ]; then
  dbname="strata_wrk_$(date +%s)"
  psql "$base_url" -qc "CREATE DATABASE $dbname"
  db_args=(--database-url "${base_url%/*}/$dbname")
  export STRATA_SECRET_KEY=$("$bin" secret generate | tail -n 1)
fi
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  [ -n "$dbname" ] && psql "$base_url" -qc "DROP DATABASE IF EXISTS $dbname" || true
  [ -n "${KEEP_LOG:-}" ] && cp "$work/server.log" "$KEEP_LOG"
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" "${db_args[@]}" serve --listen "127.0.0.1:$port" ${METRICS_LISTEN:+--metrics-listen "$METRICS_LISTEN"} >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
key=$("$bin" "${db_args[@]}" partners create --name Bench --tier internal --credits 1000000000 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
api="http://127.0.0.1:$port"
child=$(curl -sf -X POST "$api/v1/organizations" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -d '{"name":"Bench child"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cat >"$work/alloc.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"credits": 1}'
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
request = function()
  n = n + 1
  wrk.headers["Idempotency-Key"] = string.format("wrk-%d-%d-%d", os.time(), tid, n)
  return wrk.format(nil, "/v1/organizations/$child/credits/allocate")
end
statuses = {}
response = function(status, headers, body)
  if status ~= 201 and statuses[status] == nil then
    statuses[status] = true
    io.stderr:write("first non-201 answer: " .. status .. " " .. body .. "\n")
  end
end
LUA
run() {
  local name=$1; shift
  local out
  out=$(wrk -t2 -c"${CONNECTIONS:-64}" -d"${seconds}s" --latency "$@")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-12s %-9s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$name" "$backend" "$rps" "$p50" "$p99" "${non2xx:-0}"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
routes=${ROUTES:-healthz whoami get-org allocations}
for route in $routes; do
  # The disk first writes back what the setup (CREATE DATABASE, migrations) and the route before
  # dirtied: the kernel flushes dirty pages 30 s after they were written, and that writeback,
  # landing inside a route's window, slowed PostgreSQL's WAL flush (COMMITs of 40-65 ms in its
  # log) and doubled or tripled the allocations' p99 in some runs. SYNC_FIRST=0 skips it.
  [ "${SYNC_FIRST:-1}" = 1 ] && sync
  case $route in
    healthz) run healthz "$api/healthz" ;;
    whoami) run whoami -H "Authorization: Bearer $key" "$api/v1/whoami" ;;
    get-org) run get-org -H "Authorization: Bearer $key" "$api/v1/organizations/$child" ;;
    allocations) run allocations -s "$work/alloc.lua" "$api" ;;
    *) echo "unknown route $route (healthz whoami get-org allocations)" >&2; exit 2 ;;
  esac
done
[ -n "${METRICS_LISTEN:-}" ] && curl -s "http://$METRICS_LISTEN/metrics" > "${METRICS_OUT:-/tmp/wrk-metrics.txt}"
"$bin" "${db_args[@]}" ledger check >/dev/null && echo "ledger check: ok"
