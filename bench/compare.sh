#!/usr/bin/env bash
# compare.sh - is a change faster?  Build msgpipe_bench at two revisions and
# run them alternately, so that both meet the same moods of the machine.
#
#   bash bench/compare.sh [--rounds=N] [--fifo] OLD NEW [msgpipe_bench options]
#
#   bash bench/compare.sh --rounds=8 HEAD~1 HEAD --transports=msgpipe,raw \
#       --cases=pingpong,stream --pp-sizes=16,4096 --st-sizes=64,4096 \
#       --reps=3 --time=0.5
#
# OLD and NEW are anything `git rev-parse` takes; each is checked out into a
# git worktree under build/compare/ and built Release (-O2, as bench/run.sh
# builds) into build/compare/build-REV.  Then N rounds (default 6): OLD's
# msgpipe_bench, then NEW's, with the options given (use --csv-free options:
# the script adds --csv itself).  Every invocation's ratio to raw comes from
# its own interleaved raw runs, so the table gives, per build, case and size:
# the median of the N ratios with their range, and the median of the
# absolute figures (p50 in us for ping-pong, messages/s for streaming);
# --transports must include raw, which the ratios need.  The worktrees stay
# for the next comparison: `git worktree remove build/compare/src-REV` (or
# delete build/compare and `git worktree prune`) when done.
# Needs cmake, a C compiler and awk; nothing here is a pass/fail test.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=6
transport=socket
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds=*) rounds=${1#--rounds=}; shift ;;
    --fifo) transport=fifo; shift ;;
    *) break ;;
    esac
done
if [ $# -lt 2 ]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi
old=$(git rev-parse --short "$1")
new=$(git rev-parse --short "$2")
shift 2

root=build/compare
mkdir -p "$root"
build_rev() {
    local rev=$1 wt=$root/src-$1 dir=$root/build-$1-$transport
    if [ ! -d "$wt" ]; then
        git worktree add --detach -q "$wt" "$rev"
    fi
    cmake -S "$wt" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_C_FLAGS_RELEASE="-O2 -DNDEBUG" \
        -DMSGPIPE_POSIX_TRANSPORT=$transport -DMSGPIPE_BUILD_TESTS=OFF \
        -DMSGPIPE_BUILD_EXAMPLES=OFF -DMSGPIPE_BUILD_BENCH=ON >"$dir.log" 2>&1 &&
        cmake --build "$dir" --target msgpipe_bench -j2 >>"$dir.log" 2>&1 ||
        { echo "compare: building $rev failed: $dir.log" >&2; exit 1; }
    echo "$dir/bench/msgpipe_bench"
}
bin_old=$(build_rev "$old")
bin_new=$(build_rev "$new")

out=$root/$old-$new.csv
: >"$out"
for r in $(seq "$rounds"); do
    for pair in "old:$bin_old" "new:$bin_new"; do
        label=${pair%%:*}
        echo "compare: round $r/$rounds, $label" >&2
        "${pair#*:}" "$@" --csv 2>/dev/null |
            awk -F, -v l="$label" -v r="$r" \
                '$4=="p50_us"||$4=="msgs_per_s"{print l","r","$1","$2","$3","$5}' >>"$out"
    done
done

echo "old = $old, new = $new; $rounds rounds, alternating; raw lines in $out"
awk -F, '
function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ v[$1","$2","$3","$4","$5] = $6; keys[$1","$3","$4","$5] = 1; runs[$1","$2] = 1 }
END {
    for (kk in keys) {
        split(kk, k, ","); if (k[2] == "raw") continue
        m = 0; q = 0
        for (rk in runs) {
            split(rk, rr, ","); if (rr[1] != k[1]) continue
            a = v[k[1]","rr[2]","k[2]","k[3]","k[4]]; b = v[k[1]","rr[2]",raw,"k[3]","k[4]]
            if (a == "") continue
            val[++q] = a
            if (b != "" && b > 0) rat[++m] = a / b
        }
        if (m == 0) continue
        lo = hi = rat[1]; for (j = 1; j <= m; j++) { if (rat[j] < lo) lo = rat[j]; if (rat[j] > hi) hi = rat[j] }
        printf "%-4s %-12s %-9s %8s  %.3fx [%.2f-%.2f]%6s %.2f\n", k[1], k[2], k[3], k[4], median(rat, m), lo, hi, "", median(val, q)
        split("", rat); split("", val)
    }
}' "$out" | sort -k3,3 -k4,4n -k1,1r | {
    printf "%-4s %-12s %-9s %8s  %-24s %s\n" "" transport case size "x raw: median [min-max]" "median value"
    cat
}
