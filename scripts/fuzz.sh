#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, from seed corpora made of the
# project's own test data, and prints how many inputs each ran. Exits non-zero on the first
# crash (libFuzzer leaves the input in fuzz/artifacts/<target>/). Needs cargo-fuzz; the fuzzer's
# instrumentation takes nightly flags, which RUSTC_BOOTSTRAP lets the stable compiler accept.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"frames event_transcode config tap_filter enrich_loaders redaction"}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2

# Seeds: event frames from the wire crate's event generator, configurations from the examples
# and the config tests, texts from the redaction corpora, tap filters, enrichment data files.
seeds=fuzz/seeds
cargo test --release -q -p sentinel-wire --lib -- --ignored fuzz_seeds >/dev/null
mkdir -p "$seeds"/{config,redaction,tap_filter,enrich_loaders}
cp examples/*.kdl config/tests/data/*.kdl "$seeds/config/" 2>/dev/null || true
i=0
for f in collector/tests/data/redaction-corpus.tsv collector/tests/data/pii-values.tsv; do
    grep -v '^#' "$f" | cut -f3 | head -400 | while IFS= read -r line; do
        i=$((i + 1)); printf '%s' "$line" > "$seeds/redaction/$(basename "$f" .tsv)-$i"
    done
done
n=0
for filter in 'http.response.status_code >= 500' 'url.path contains "/api" and client.address == "203.0.113.7"' \
    'timing.total_ms > 1.5' 'threat.tor_exit == true' 'stage=decoded&rate=5&filter=http.request.method%20%3D%3D%20GET'; do
    n=$((n + 1)); printf '%s' "$filter" > "$seeds/tap_filter/filter-$n"
done
data=target/data
if [ -d "$data/maxmind-test" ]; then
    for db in GeoIP2-City-Test GeoIP2-Anonymous-IP-Test GeoLite2-ASN-Test GeoIP2-Country-Test; do
        [ -f "$data/maxmind-test/$db.mmdb" ] && cp "$data/maxmind-test/$db.mmdb" "$seeds/enrich_loaders/"
    done
    head -200 "$data/asn/asn-ipv4.csv" > "$seeds/enrich_loaders/asn-ipv4.csv" 2>/dev/null || true
fi
printf '185.220.101.4\n# comment\n10.0.0.0/8\n2001:db8::/32\n' > "$seeds/enrich_loaders/threat-list"
printf 'AS13335\n15169\n' > "$seeds/enrich_loaders/asns"

summary=""
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    log=$(mktemp)
    if ! cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "$seeds/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
        tail -60 "$log"
        echo "fuzz: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1)
    summary+=$(printf '%-16s %12s runs in %ss\n' "$t" "${runs:-?}" "$seconds")$'\n'
    rm -f "$log"
done
printf '%s' "$summary"
