#!/usr/bin/env bash
# Reference proxy throughput and latency with telemetry off and on, measured in one run on
# loopback: demo upstream + collector (file sink) + two proxies (one without the filter, one with),
# each with one worker thread, loaded alternately by wrk so machine noise hits both alike.
# Usage: bench/wrk.sh [seconds-per-round] [rounds] [connections] [pin]
# With pin=1 (and 2+ cores) both proxies run on core 0 and wrk, upstream and collector on core 1,
# so the ratio measures the proxy's own cost (its sender thread included) rather than the
# collector's work competing for the same cores.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}; conns=${3:-32}; pin=${4:-0}
on_proxy=(); on_rest=()
if [ "$pin" = 1 ] && [ "$(nproc)" -ge 2 ]; then on_proxy=(taskset -c 0); on_rest=(taskset -c 1); fi
for tool in wrk curl; do command -v $tool >/dev/null || { apt-get update -qq && apt-get install -y -qq $tool; }; done
bin=target/release
work=$(mktemp -d /tmp/sentinel-wrk.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"${on_rest[@]}" $bin/sentinel-demo upstream --listen 127.0.0.1:18081 --threads 1 2>"$work/upstream.log" & pids+=($!)
"${on_rest[@]}" $bin/sentinel-collector run --socket "$work/t.sock" --output-dir "$work/events" --metrics-listen 127.0.0.1:18090 \
  --rotate-bytes 100000000 --keep-files 1 2>"$work/collector.log" >/dev/null & pids+=($!)
sleep 0.5
"${on_proxy[@]}" $bin/sentinel-proxy --listen 127.0.0.1:18080 --upstream 127.0.0.1:18081 --runtime-dir "$work" \
  --admin-listen 127.0.0.1:18091 2>"$work/off.log" & pids+=($!)
"${on_proxy[@]}" $bin/sentinel-proxy --listen 127.0.0.1:18082 --upstream 127.0.0.1:18081 --runtime-dir "$work" \
  --filter target/filters/sentinel_filter.wasm --collector "$work/t.sock" --cache-dir "$work/cache" \
  --admin-listen 127.0.0.1:18092 2>"$work/on.log" & pids+=($!)
for p in 18080 18082; do for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done; done

run() { # $1 port -> "rps p99_ms"
  local out; out=$("${on_rest[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/api/users/42")
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99"
}
run 18080 >/dev/null; run 18082 >/dev/null   # warm-up
off_sum=0; on_sum=0
printf "%-6s %14s %12s %14s %12s %8s\n" round "off req/s" "off p99 ms" "on req/s" "on p99 ms" ratio
for r in $(seq "$rounds"); do
  read -r off_rps off_p99 < <(run 18080)
  read -r on_rps on_p99 < <(run 18082)
  printf "%-6s %14s %12s %14s %12s %8.3f\n" "$r" "$off_rps" "$off_p99" "$on_rps" "$on_p99" "$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {print a/b}')"
  off_sum=$(awk -v a="$off_sum" -v b="$off_rps" 'BEGIN {print a+b}'); on_sum=$(awk -v a="$on_sum" -v b="$on_rps" 'BEGIN {print a+b}')
done
sleep 1
m=$(curl -s 127.0.0.1:18092/metrics || true)
echo "throughput ratio on/off over all rounds: $(awk -v a="$on_sum" -v b="$off_sum" 'BEGIN {printf "%.3f", a/b}')"
echo "telemetry-on proxy: $(grep -E '^sentinel_filter_calls_total ' <<<"$m") $(grep -E '^sentinel_channel_sent_frames_total ' <<<"$m") dropped=$(grep -E '^sentinel_channel_dropped_total' <<<"$m" | awk '{s+=$2} END {print s+0}')"
