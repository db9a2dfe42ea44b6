#!/usr/bin/env bash
# run.sh - build and run msgpipe_bench for the socket and the FIFO transport,
# then draw the plot.
#
#   bash bench/run.sh [--quick] [other msgpipe_bench options]
#
# Installs what is missing with apt-get when run as root on Debian (cmake,
# gcc with libc6-dev, make, pkgconf, libnng-dev, libzmq3-dev, gnuplot-nox);
# otherwise prints what to install.  nng, ZeroMQ and gnuplot are optional: without
# them the benchmark compares msgpipe with raw sockets only, and no plot is
# drawn.
#
# Builds Release (-O2) into build/bench-socket and build/bench-fifo, runs
# each benchmark (every case in interleaved repeats: --reps, default 5, 3
# with --quick; medians with the spread), then msgpipe's streaming again with
# msgpipe_send_batch (tables on the terminal, CSV into build/bench-*.csv),
# then the idle-clients case (--cases=idle), the spin case (--cases=spin)
# and, with gnuplot, draws build/bench-performance.png.  Nothing here is a
# pass/fail test: the exit status only says whether every case ran.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lib_init bench

missing=()
# shellcheck disable=SC2207
missing+=($(build_missing_packages))
command -v pkg-config >/dev/null 2>&1 || missing+=(pkgconf)
optional=()
[ -f /usr/include/nng/nng.h ] || optional+=(libnng-dev)
[ -f /usr/include/zmq.h ] || optional+=(libzmq3-dev)
command -v gnuplot >/dev/null 2>&1 || optional+=(gnuplot-nox)
quiet_step "packages"
if is_root && command -v apt-get >/dev/null 2>&1; then
    need_packages "${missing[@]}" "${optional[@]}"
else
    need_packages "${missing[@]}" # fails, saying what to install
    if [ ${#optional[@]} -gt 0 ]; then
        say "optional, skipped: ${optional[*]} (e.g.: sudo apt-get install ${optional[*]})"
    fi
fi

status=0
for transport in socket fifo; do
    dir=build/bench-$transport
    quiet_step "build msgpipe_bench, $transport transport ($dir)"
    hint "the log says which file failed"
    run "bench-$transport-configure" cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
        -DMSGPIPE_POSIX_TRANSPORT=$transport -DMSGPIPE_BUILD_TESTS=OFF \
        -DMSGPIPE_BUILD_EXAMPLES=OFF -DMSGPIPE_BUILD_BENCH=ON
    run "bench-$transport-build" cmake --build "$dir" -j "$(nproc)" --target msgpipe_bench
    echo "==== msgpipe_bench, $transport transport" >&2
    rc=0
    "$dir/bench/msgpipe_bench" --csv-file="build/bench-$transport.csv" "$@" || rc=$?
    [ "$rc" = 0 ] || { status=1; say "msgpipe_bench ($transport) failed with exit status $rc: its message is above"; }
    # Streaming again with msgpipe_send_batch (64 messages per call): what
    # a program sending many small messages should use.
    echo "==== msgpipe_bench, $transport transport, msgpipe_send_batch" >&2
    "$dir/bench/msgpipe_bench" --cases=stream --transports=msgpipe --batch=64 \
        --csv-file="build/bench-$transport-batch.csv" "$@" || rc=$?
    [ "$rc" = 0 ] || { status=1; say "msgpipe_bench --batch=64 ($transport) failed with exit status $rc: its message is above"; }
done
# One polling server with 0, 1,000 and 10,000 idle clients and one active
# client, against a raw epoll loop (docs/performance.md): socket transport.
echo "==== msgpipe_bench, idle clients (socket transport)" >&2
rc=0
build/bench-socket/bench/msgpipe_bench "$@" --cases=idle || rc=$?
[ "$rc" = 0 ] || { status=1; say "msgpipe_bench --cases=idle failed with exit status $rc: its message is above"; }
# 16-byte ping-pong with msgpipe_options.spin_us against raw blocking and
# raw spinning sockets, on two CPUs and on one, with the CPU time each side
# spends per round trip (docs/performance.md, "Spinning"): both transports.
for transport in socket fifo; do
    echo "==== msgpipe_bench, spin_us ($transport transport)" >&2
    rc=0
    build/bench-$transport/bench/msgpipe_bench "$@" --cases=spin || rc=$?
    [ "$rc" = 0 ] || { status=1; say "msgpipe_bench --cases=spin ($transport) failed with exit status $rc: its message is above"; }
done
if command -v gnuplot >/dev/null 2>&1; then
    gnuplot -e "sock='build/bench-socket.csv'; fifo='build/bench-fifo.csv'; out='build/bench-performance.png'" \
        bench/plot.gp
    echo "bench: plot in build/bench-performance.png" >&2
fi
[ "$status" = 0 ] || say "some cases failed (see above); the other results are still in build/"
exit $status
