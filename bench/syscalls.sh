#!/usr/bin/env bash
# syscalls.sh - system calls per message, counted with strace, for each
# side of a msgpipe_bench case.
#
#   bash bench/syscalls.sh BENCH [TRANSPORT [N]]
#
# BENCH is a built msgpipe_bench; TRANSPORT (default msgpipe) one of its
# transports; N (default 100000) the number of messages.  Runs, under
# `strace -f -ff` (one trace file per process):
#   - stream 64 B: N messages sent back to back, one way;
#   - pingpong 16 B: N round trips;
# and prints, for the sending and the receiving process of each, the
# system calls per message by name (the few calls of connection set-up and
# exit are included; they are negligible at this N).  strace slows both
# peers down a great deal, which changes how often a receiver finds its
# socket empty: treat the counts as the shape of the code path, not as what
# happens at full speed (bench/msgpipe_bench measures that).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
lib_init syscalls.sh
bench=${1:?usage: syscalls.sh BENCH [TRANSPORT [N]]}
transport=${2:-msgpipe}
n=${3:-100000}
command -v strace >/dev/null || { echo "syscalls.sh: needs strace" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

count() { # case size
    local c=$1 size=$2 f pid role
    rm -f "$tmp"/t.*
    if [ "$c" = stream ]; then
        strace -f -ff -o "$tmp/t" "$bench" --count="$n" --transports="$transport" \
            --cases=stream --st-sizes="$size" --csv >/dev/null 2>&1
    else
        strace -f -ff -o "$tmp/t" "$bench" --count="$n" --transports="$transport" \
            --cases=pingpong --pp-sizes="$size" --csv >/dev/null 2>&1
    fi
    # The coordinator is the process that forked the two peers; of the two
    # peers the server (measuring side) is forked first, so it has the
    # lower pid among the remaining trace files.
    local files=() coord=""
    for f in "$tmp"/t.*; do
        if grep -q '^clone\|^fork\|^vfork\|^clone3' "$f"; then
            [ -z "$coord" ] && coord=$f && continue
        fi
        files+=("$f")
    done
    local sorted
    sorted=$(printf '%s\n' "${files[@]}" | awk -F. '{print $NF, $0}' | sort -n | cut -d' ' -f2-)
    local i=0
    for f in $sorted; do
        # Threads of nng/zmq appear as their own files: fold them into
        # their process by order (the server's come before the client's
        # only for msgpipe/raw, which have none).
        if [ $i = 0 ]; then
            role=$([ "$c" = stream ] && echo receiver || echo "server (measures)")
        else
            role=$([ "$c" = stream ] && echo sender || echo "client (echo)")
        fi
        i=$((i + 1))
        echo "  $c $size B, $transport, $role: per message"
        awk -v n="$n" '
            /^[a-z_0-9]+\(/ { split($0, a, "("); k[a[1]]++ }
            /resumed>/ { next }
            END {
                for (s in k) if (k[s] >= n / 100)
                    printf "    %-16s %8d  %.3f\n", s, k[s], k[s] / n
            }' "$f" | sort -k2 -nr
    done
}

echo "system calls per message, $transport, N=$n (strace -f -ff; calls seen fewer than N/100 times are left out)"
count stream 64
count pingpong 16
