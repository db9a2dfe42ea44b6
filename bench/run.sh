#!/usr/bin/env bash
# run.sh - build and run msgpipe_bench for the socket and the FIFO transport,
# then draw the plot.
#
#   bash bench/run.sh [--quick] [other msgpipe_bench options]
#
# Installs what is missing with apt-get when run as root on Debian (cmake, a
# C compiler, pkg-config, libnng-dev, libzmq3-dev, gnuplot-nox); otherwise
# prints what to install.  nng, ZeroMQ and gnuplot are optional: without
# them the benchmark compares msgpipe with raw sockets only, and no plot is
# drawn.
#
# Builds Release (-O2) into build/bench-socket and build/bench-fifo, runs
# each benchmark once, then msgpipe's streaming again with
# msgpipe_send_batch (tables on the terminal, CSV into build/bench-*.csv)
# and, with gnuplot, draws build/bench-performance.png.  Nothing here is a
# pass/fail test: the exit status only says whether every case ran.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/nng/nng.h ] || missing+=(libnng-dev)
[ -f /usr/include/zmq.h ] || missing+=(libzmq3-dev)
command -v gnuplot >/dev/null 2>&1 || missing+=(gnuplot-nox)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bench: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "bench: missing (optional ones are skipped): ${missing[*]}" >&2
        echo "  e.g.: sudo apt-get install ${missing[*]}" >&2
    fi
fi

status=0
for transport in socket fifo; do
    dir=build/bench-$transport
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
        -DMSGPIPE_POSIX_TRANSPORT=$transport -DMSGPIPE_BUILD_TESTS=OFF \
        -DMSGPIPE_BUILD_EXAMPLES=OFF -DMSGPIPE_BUILD_BENCH=ON >/dev/null
    cmake --build "$dir" -j "$(nproc)" --target msgpipe_bench >/dev/null
    echo "==== msgpipe_bench, $transport transport" >&2
    "$dir/bench/msgpipe_bench" --csv-file="build/bench-$transport.csv" "$@" ||
        status=1
    # Streaming again with msgpipe_send_batch (64 messages per call): what
    # a program sending many small messages should use.
    echo "==== msgpipe_bench, $transport transport, msgpipe_send_batch" >&2
    "$dir/bench/msgpipe_bench" --cases=stream --transports=msgpipe --batch=64 \
        --csv-file="build/bench-$transport-batch.csv" "$@" || status=1
done
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot -e "sock='build/bench-socket.csv'; fifo='build/bench-fifo.csv'; out='build/bench-performance.png'" \
        bench/plot.gp
    echo "bench: plot in build/bench-performance.png" >&2
fi
exit $status
