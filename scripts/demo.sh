#!/usr/bin/env bash
# demo.sh - build msgpipe and run the demo: demo_server and demo_client
# together, as the seed article's Python server and client did.
#
#   bash scripts/demo.sh [NAME]
#
# Installs cmake, gcc with libc6-dev, and make with apt-get when run as root
# and they are missing (otherwise says what to install).  Logs of the build
# are in build/logs; a failure says which step and command failed, and why.  Both programs' output is shown, each line marked "server:" or
# "client:".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lib_init demo.sh
name="${1:-ABC}"

missing=()
# shellcheck disable=SC2207
missing+=($(build_missing_packages))
quiet_step "packages"
need_packages "${missing[@]}"

quiet_step "configure and build (build/demo)"
hint "the log says which file failed"
run demo-configure cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release \
    -DMSGPIPE_BUILD_TESTS=OFF
run demo-build cmake --build build/demo -j "$(nproc)"

# The client starts first and waits for the server, to show that either
# order works.
quiet_step "run demo_client and demo_server"
hint "run build/demo/examples/demo_server and demo_client by hand in two terminals to see each one's errors"
build/demo/examples/demo_client "$name" &
client=$!
sleep 0.3
build/demo/examples/demo_server "$name"
wait "$client"
