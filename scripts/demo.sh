#!/usr/bin/env bash
# demo.sh - build msgpipe and run the demo: demo_server and demo_client
# together, as the seed article's Python server and client did.
#
#   bash scripts/demo.sh [NAME]
#
# Installs cmake and a C compiler with apt-get when run as root and they are
# missing.  Both programs' output is shown, each line marked "server:" or
# "client:".
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-ABC}"

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "demo.sh: missing: ${missing[*]}; install them, e.g.:" >&2
        echo "  sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DMSGPIPE_BUILD_TESTS=OFF \
    >/dev/null
cmake --build build/demo -j "$(nproc)" >/dev/null

# The client starts first and waits for the server, to show that either
# order works.
build/demo/examples/demo_client "$name" &
client=$!
sleep 0.3
build/demo/examples/demo_server "$name"
wait "$client"
