#!/usr/bin/env bash
# fresh-machine.sh - prove that the README's two commands pass on their first
# run on a new Debian machine.
#
#   bash scripts/fresh-machine.sh [--order demo-first|test-first]
#                                 [--only demo|test|bench|consumer]
#                                 [--keep] [--root DIR]
#
# As root on Debian: makes a clean minimal Debian root with
# `debootstrap --variant=minbase` (the release this machine runs, from the
# first Debian mirror in this machine's apt sources), clones the repository's
# committed HEAD into it (/root/msgpipe, as a new user's clone would be), and
# runs there, as root, one after the other:
#
#   bash scripts/demo.sh
#   CI=true bash scripts/test.sh
#
# (or the test command first, with --order test-first; or one of them alone,
# with --only demo|test, to see what that one installs).  --only bench and
# --only consumer run `bash bench/run.sh --quick` or
# `bash scripts/consumer-test.sh` alone, as the first command.  Nothing of this
# machine's installed packages, caches or build trees is visible inside.  It
# prints one line of outcome at the end, e.g.
#
#   fresh-machine: PASS 2026-12-01 demo 0m27s (apt added 299 MB), test 6m12s
#     (apt added 1,898 MB); disk 3.7G in all (811M of it build/; minbase root
#     before: 206M) (bookworm, demo-first)
#
# and keeps the full output in build/fresh-machine/*.log.  The root
# (default /var/tmp/msgpipe-fresh-root) is removed afterwards unless --keep.
# Not part of .ci/run: it takes about seven minutes on two cores.  Run it
# after a change to scripts/, .ci/, a CMake find step or anything the test
# command installs, and record the outcome line in docs/first-run.md.
#
# Needs: root, debootstrap (installed when missing), network access to the
# Debian mirror, and about 5 GB of free disk.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
lib_init fresh-machine
repo=$PWD

order=demo-first
only=""
keep=0
root=/var/tmp/msgpipe-fresh-root
while [ $# -gt 0 ]; do
    case "$1" in
    --order)
        order=${2:?--order needs demo-first or test-first}
        shift 2
        ;;
    --only)
        only=${2:?--only needs demo or test}
        shift 2
        ;;
    --keep)
        keep=1
        shift
        ;;
    --root)
        root=${2:?--root needs a directory}
        shift 2
        ;;
    *)
        echo "usage: $0 [--order demo-first|test-first] [--only demo|test|bench|consumer] [--keep] [--root DIR]" >&2
        exit 2
        ;;
    esac
done
case "$order" in demo-first | test-first) ;; *)
    echo "fresh-machine: --order is demo-first or test-first" >&2
    exit 2
    ;;
esac

out=$repo/build/fresh-machine
mkdir -p "$out"
MSGPIPE_LOGS=$out

step "fresh-machine: preconditions"
if ! is_root; then
    lib_report 1 "id -u is $(id -u)"
    say "debootstrap and chroot need root"
    exit 1
fi
command -v debootstrap >/dev/null 2>&1 || need_packages debootstrap
suite=$(debian_suite)
hint "add a 'deb' entry for $suite to /etc/apt/sources.list.d/ (the mirror this machine installs from)"
line=$(find_mirror "$suite")
mirror=${line%%$'\t'*}
say "suite $suite, mirror $mirror, root $root, order $order"

mounted=()
cleanup() {
    local m i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        m=${mounted[$i]}
        umount -l "$m" 2>/dev/null || true
    done
    if [ "$keep" = 0 ] && [ -d "$root" ]; then
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT

step "fresh-machine: debootstrap --variant=minbase $suite"
hint "the log shows which package could not be fetched or unpacked"
if [ -e "$root" ]; then
    # Never reuse a root: it would not be fresh.
    umount -R -l "$root" 2>/dev/null || true
    rm -rf --one-file-system "$root"
fi
mkdir -p "$root"
t0=$(date +%s)
run debootstrap debootstrap --variant=minbase "$suite" "$root" "$mirror"
say "debootstrap: $(($(date +%s) - t0)) s"
base=$(du -sh --one-file-system "$root" | cut -f1)

step "fresh-machine: prepare the root"
# The kernel file systems a machine has (Wine and the tests need /proc,
# /dev/shm and ptys), and name resolution for apt.
for m in proc sys dev dev/pts dev/shm; do
    mkdir -p "$root/$m"
done
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount -t sysfs sys "$root/sys" && mounted+=("$root/sys")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" && mounted+=("$root/dev/pts")
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm" && mounted+=("$root/dev/shm")
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# A clone of what is committed, as a new user gets it (no build/, no
# uncommitted changes).
run clone git clone -q --no-local "$repo" "$root/root/msgpipe"
say "cloned $(git -C "$root/root/msgpipe" log -1 --format='%h %s')"

# in_root LOG TITLE CMD: run CMD in the root as root, with a clean
# environment like a new login's; the output goes to the terminal and LOG.
in_root() {
    local log=$1 title=$2 cmd=$3 t rc=0
    step "fresh-machine: $title"
    hint "the log shows the command's own report of what failed"
    t=$(date +%s)
    lib_last_log=$out/$log.log
    chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        CI=true /bin/bash -c "cd /root/msgpipe && $cmd" </dev/null 2>&1 |
        tee "$out/$log.log" || rc=$?
    elapsed=$(($(date +%s) - t))
    if [ "$rc" != 0 ]; then
        lib_report "$rc" "$cmd (in the fresh root, after ${elapsed} s)"
        printf 'fresh-machine: FAIL %s %s: "%s" exit status %s after %s s (log: %s)\n' \
            "$(date -u +%F)" "$title" "$cmd" "$rc" "$elapsed" "$out/$log.log"
        exit 1
    fi
}
fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
# What apt added, from the command's own install log (the last one wins).
added() {
    grep -ho 'After this operation, .* of additional disk space' \
        "$root/root/msgpipe/build/logs/apt-install.log" 2>/dev/null |
        sed 's/After this operation, \(.*\) of additional.*/\1/' | tail -n 1
}
results=()
# one LOG TITLE CMD: run CMD in the root, and note its time and what apt added.
one() {
    in_root "$1" "$2" "$3"
    results+=("$1 $(fmt "$elapsed") (apt added $(added || true))")
    rm -f "$root/root/msgpipe/build/logs/apt-install.log"
}
case "$only:$order" in
demo:*) one demo "the demo command" "bash scripts/demo.sh" ;;
test:*) one test "the test command" "bash scripts/test.sh" ;;
bench:*) one bench "the benchmark, briefly" "bash bench/run.sh --quick" ;;
consumer:*) one consumer "the consumer test" "bash scripts/consumer-test.sh" ;;
:demo-first)
    one demo "the demo command" "bash scripts/demo.sh"
    one test "the test command" "bash scripts/test.sh"
    ;;
:test-first)
    one test "the test command" "bash scripts/test.sh"
    one demo "the demo command" "bash scripts/demo.sh"
    ;;
*)
    echo "fresh-machine: --only is demo, test, bench or consumer" >&2
    exit 2
    ;;
esac
disk=$(du -sh --one-file-system "$root" | cut -f1)
builds=$(du -sh "$root/root/msgpipe/build" | cut -f1)
step "fresh-machine: outcome"
summary=$(printf '%s, ' "${results[@]}")
printf 'fresh-machine: PASS %s %s; disk %s in all (%s of it build/; minbase root before: %s) (%s, %s)\n' \
    "$(date -u +%F)" "${summary%, }" "$disk" "$builds" "$base" "$suite" "${only:-$order}" |
    tee "$out/outcome.txt"
