#!/usr/bin/env bash
# fuzz/run.sh - build msgpipe's libFuzzer targets and run each for a while.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS: how long to fuzz each target (default $FUZZ_SECONDS or 30).
# TARGET:  fuzz_recv, fuzz_names (default: both, run side by side).
#
# Environment:
#   FUZZ_SECONDS  default for SECONDS
#   FUZZ_BUILD    build directory (default build/fuzz)
#   FUZZ_JOBS     libFuzzer worker processes per target (default 1)
#   FUZZ_ARGS     extra libFuzzer flags (e.g. "-max_len=100000")
#
# Needs clang with libFuzzer (Debian: clang + libclang-rt-14-dev or the
# matching libclang-rt-N-dev).  The build uses AddressSanitizer and
# UndefinedBehaviorSanitizer.  Each target starts from its seed corpus in
# fuzz/corpus/<target>/ and from what earlier runs found (kept in
# $FUZZ_BUILD/corpus/<target>/; the repository's seeds are never touched).
#
# Exit status: 0 if no target crashed, timed out or ran out of memory;
# otherwise 1, and the input that did it is printed (it is saved under
# $FUZZ_BUILD/artifacts/<target>/).  Keep every such input as a regression:
# copy it to fuzz/regressions/<corpus>/ (recv or names) with a name that
# says what it found; the normal test suite replays those directories
# (ctest tests fuzz_recv_replay and fuzz_names_replay).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/lib.sh
lib_init fuzz/run.sh

seconds=${1:-${FUZZ_SECONDS:-30}}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_recv fuzz_names)
build=${FUZZ_BUILD:-$root/build/fuzz}
jobs=${FUZZ_JOBS:-1}

cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz/run.sh: clang not found (apt-get install clang)" >&2
    exit 1
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)
{ (void)d; (void)n; return 0; }' >"$probe/p.c"
if ! "$cc" -fsanitize=fuzzer,address "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
    cat "$probe/err" >&2
    echo "fuzz/run.sh: $cc cannot link libFuzzer" \
         "(Debian: apt-get install libclang-rt-14-dev)" >&2
    exit 1
fi

echo "==== fuzz: configure and build ($build)"
quiet_step "fuzz: configure and build ($build)"
hint "the log says which file failed; warnings are errors (MSGPIPE_WERROR)"
run fuzz-configure cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMSGPIPE_WERROR=ON \
    -DMSGPIPE_SANITIZE=address,undefined -DMSGPIPE_FUZZ=ON \
    -DMSGPIPE_BUILD_EXAMPLES=OFF
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

corpus_of() {
    case "$1" in
    fuzz_recv) echo recv ;;
    fuzz_names) echo names ;;
    *) echo "fuzz/run.sh: unknown target $1" >&2; exit 1 ;;
    esac
}

# libFuzzer flags common to every target:
#  -timeout=10         a run longer than 10 s is a hang (every receive in
#                      the targets uses timeout 0)
#  -rss_limit_mb=2048  and -malloc_limit_mb=64 for fuzz_recv: an
#                      allocation of what a header announces (up to 2^63)
#                      is a crash, not a slow run
#  -print_final_stats  figures for docs/reliability.md
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
pids=()
for t in "${targets[@]}"; do
    c=$(corpus_of "$t")
    mkdir -p "$build/corpus/$c" "$build/artifacts/$t"
    cp -n "$root/fuzz/corpus/$c/"* "$build/corpus/$c/" 2>/dev/null || true
    extra=()
    if [ "$jobs" -gt 1 ]; then
        extra+=(-jobs="$jobs" -workers="$jobs")
    fi
    case "$t" in
    fuzz_recv) extra+=(-max_len=24000 -malloc_limit_mb=64) ;;
    fuzz_names) extra+=(-max_len=2048) ;;
    esac
    log="$build/$t.log"
    echo "==== fuzz: $t for ${seconds}s (log: $log)"
    mkdir -p "$build/run/$t"
    rm -f "$build/run/$t"/fuzz-*.log
    (
        cd "$build/run/$t" # where -jobs puts its workers' logs
        # shellcheck disable=SC2086
        "$build/fuzz/$t" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$build/artifacts/$t/" \
            "${extra[@]}" ${FUZZ_ARGS:-} \
            "$build/corpus/$c" "$root/fuzz/regressions/$c" >"$log" 2>&1
    ) &
    pids+=($!)
done

status=0
i=0
for t in "${targets[@]}"; do
    log="$build/$t.log"
    if wait "${pids[$i]}"; then
        # With -jobs, each worker logs to $build/run/<target>/fuzz-N.log.
        logs=("$log")
        [ "$jobs" -gt 1 ] && logs=("$build/run/$t"/fuzz-*.log)
        runs=$( (grep -h 'stat::number_of_executed_units' "${logs[@]}" \
                     2>/dev/null || true) |
               awk '{s += $2} END {print s + 0}')
        cov=$( (grep -h -o 'cov: [0-9]*' "$log" || true) | tail -1)
        echo "fuzz: $t: no crash in ${seconds}s ($runs runs, $cov," \
             "corpus $(ls "$build/corpus/$(corpus_of "$t")" | wc -l) inputs)"
    else
        status=1
        echo "fuzz: $t FAILED; the end of its log:" >&2
        tail -n 40 "$log" >&2
        for a in "$build/artifacts/$t/"*; do
            [ -e "$a" ] || continue
            echo "fuzz: input that broke $t: $a" >&2
            echo "      keep it: cp '$a' fuzz/regressions/$(corpus_of "$t")/<what-it-found>" >&2
        done
    fi
    i=$((i + 1))
done
[ "$status" = 0 ] || say "a target failed (see above)"
exit $status
