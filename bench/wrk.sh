#!/usr/bin/env bash
# Reference proxy throughput and latency with telemetry off and on, measured in one run on
# loopback: demo upstream + collector (file sink) + two proxies (one without the filter, one with),
# each with one worker thread, loaded alternately by wrk so machine noise hits both alike.
# Usage: bench/wrk.sh [seconds-per-round] [rounds] [connections] [pin]
# With pin=1 (and 2+ cores) both proxies run on core 0 and wrk, upstream and collector on core 1,
# so the ratio measures the proxy's own cost (its sender thread included) rather than the
# collector's work competing for the same cores. Each run also reads the proxy's CPU time (all its
# threads, from /proc) and prints CPU per request, and the collector's CPU per event in the
# telemetry-on rounds: on two cores wrk, the upstream and the collector share one core, and the
# collector's work there delays wrk and the upstream (the proxy then idles, waiting), so the CPU
# ratio is the steadier measure of what the proxy pays.
# At the end, each proxy's CPU a request by thread (the Pingora worker, and with telemetry the
# filter thread, the sender and the epoch ticker), summed over the rounds.
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
  --rotate-bytes 100000000 --keep-files 1 2>"$work/collector.log" >/dev/null & pids+=($!); collector_pid=$!
sleep 0.5
"${on_proxy[@]}" $bin/sentinel-proxy --listen 127.0.0.1:18080 --upstream 127.0.0.1:18081 --runtime-dir "$work" \
  --admin-listen 127.0.0.1:18091 2>"$work/off.log" & pids+=($!); off_pid=$!
"${on_proxy[@]}" $bin/sentinel-proxy --listen 127.0.0.1:18082 --upstream 127.0.0.1:18081 --runtime-dir "$work" \
  --filter target/filters/sentinel_filter.wasm --collector "$work/t.sock" --cache-dir "$work/cache" \
  --admin-listen 127.0.0.1:18092 2>"$work/on.log" & pids+=($!); on_pid=$!
for p in 18080 18082; do for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done; done

cpu_ns() { # CPU time used so far by every thread of process $1
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s}'
}
thread_ns() { # "name ns" for every thread of process $1 (CPU time used so far)
  for t in /proc/"$1"/task/*; do printf '%s %s\n' "$(tr ' ' '_' <"$t/comm")" "$(cut -d' ' -f1 "$t/schedstat")"; done 2>/dev/null
}
run() { # $1 port, $2 proxy pid -> "rps p99_ms cpu_us_per_request collector_cpu_us_per_request"
  local threads; threads=$(thread_ns "$2")
  local before; before=$(cpu_ns "$2")
  local cbefore; cbefore=$(cpu_ns "$collector_pid")
  local out; out=$("${on_rest[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/api/users/42")
  local after; after=$(cpu_ns "$2")
  local cafter; cafter=$(cpu_ns "$collector_pid")
  local rps p99 n
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # Each thread's CPU in this run, by thread name, and the requests, for the table at the end.
  { echo "$threads" | sed 's/^/- /'; thread_ns "$2" | sed 's/^/+ /'; echo "n requests $n"; } >>"$work/threads.$1"
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99 $(awk -v a="$before" -v b="$after" -v n="$n" 'BEGIN {printf "%.1f", (b-a)/1000/n}') $(awk -v a="$cbefore" -v b="$cafter" -v n="$n" 'BEGIN {printf "%.1f", (b-a)/1000/n}')"
}
run 18080 "$off_pid" >/dev/null; run 18082 "$on_pid" >/dev/null   # warm-up
rm -f "$work"/threads.*
off_sum=0; on_sum=0; off_cpu=0; on_cpu=0
printf "%-6s %12s %10s %10s %12s %10s %10s %11s %8s %10s\n" round "off req/s" "off p99" "off µs/req" "on req/s" "on p99" "on µs/req" "coll µs/ev" ratio "cpu ratio"
for r in $(seq "$rounds"); do
  read -r off_rps off_p99 off_us _ < <(run 18080 "$off_pid")
  read -r on_rps on_p99 on_us coll_us < <(run 18082 "$on_pid")
  printf "%-6s %12s %10s %10s %12s %10s %10s %11s %8.3f %10.3f\n" "$r" "$off_rps" "$off_p99" "$off_us" "$on_rps" "$on_p99" "$on_us" "$coll_us" \
    "$(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN {print a/b}')" "$(awk -v a="$on_us" -v b="$off_us" 'BEGIN {print b/a}')"
  off_cpu=$(awk -v a="$off_cpu" -v b="$off_us" 'BEGIN {print a+b}'); on_cpu=$(awk -v a="$on_cpu" -v b="$on_us" 'BEGIN {print a+b}')
  off_sum=$(awk -v a="$off_sum" -v b="$off_rps" 'BEGIN {print a+b}'); on_sum=$(awk -v a="$on_sum" -v b="$on_rps" 'BEGIN {print a+b}')
done
sleep 1
m=$(curl -s 127.0.0.1:18092/metrics || true)
echo "throughput ratio on/off over all rounds: $(awk -v a="$on_sum" -v b="$off_sum" 'BEGIN {printf "%.3f", a/b}')"
echo "proxy CPU per request off/on over all rounds (the throughput ratio a CPU-bound proxy would see): $(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN {printf "%.3f", b/a}')"
per_thread() { # $1 port -> "name µs, ..." CPU per request of each thread name over the rounds
  awk '$1 == "n" { n += $3; next } { d[$2] += ($1 == "+" ? $3 : -$3) } END { for (t in d) if (d[t] > 0) printf "%s %.2f, ", t, d[t] / 1000 / n }' "$work/threads.$1" | sed 's/, $//'
}
echo "µs of CPU a request by thread, off: $(per_thread 18080)"
echo "µs of CPU a request by thread, on:  $(per_thread 18082)"
echo "telemetry-on proxy: $(grep -E '^sentinel_filter_calls_total ' <<<"$m") $(grep -E '^sentinel_channel_sent_frames_total ' <<<"$m") dropped=$(grep -E '^sentinel_channel_dropped_total' <<<"$m" | awk '{s+=$2} END {print s+0}') faults=$(grep -E '^sentinel_filter_faults_total' <<<"$m" | awk '{s+=$2} END {print s+0}') $(grep -E '^sentinel_filter_instances_created_total ' <<<"$m")"
[ -n "${WRK_METRICS:-}" ] && printf '%s\n' "$m" > "$WRK_METRICS"
true
