#!/usr/bin/env bash
# test.sh - build msgpipe and run its whole test suite.
#
#   bash scripts/test.sh
#
# Installs what is missing with apt-get when run as root on Debian (cmake,
# a C compiler, cmocka, python3, clang); otherwise prints what to install.
# Then, with warnings as errors:
#   1. gcc build, the whole suite (ctest preset "ci");
#   2. gcc build with AddressSanitizer + UndefinedBehaviorSanitizer ("asan");
#   3. clang build, the whole suite ("clang").
# Exits non-zero as soon as anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==== %s\n' "$*"; }

# ---- 1. What the build needs ---------------------------------------------
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v clang >/dev/null 2>&1 || missing+=(clang)
[ -f /usr/include/cmocka.h ] || missing+=(libcmocka-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "test.sh: missing: ${missing[*]}" >&2
        echo "install them, e.g.: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

# ---- 2. Linux builds ---------------------------------------------------------
for preset in ci asan clang; do
    step "$preset: configure and build"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" -j "$(nproc)"
    step "$preset: test"
    ctest --preset "$preset"
done

step "all test runs passed"
