#!/usr/bin/env bash
# test.sh - build msgpipe and run its whole test suite.
#
#   bash scripts/test.sh
#
# Installs what is missing with apt-get when run as root on Debian (cmake, a
# C compiler, cmocka, python3, pkgconf, clang, libclang-rt-dev, valgrind);
# otherwise prints what to install.
# Then, with warnings as errors:
#   1. gcc build, the whole suite (ctest preset "ci");
#   2. gcc build with AddressSanitizer + UndefinedBehaviorSanitizer ("asan");
#   3. clang build with ThreadSanitizer, the whole suite ("tsan");
#   4. clang build, the whole suite ("clang");
#   5. the FIFO transport (MSGPIPE_POSIX_TRANSPORT=fifo), the whole suite
#      ("fifo");
#   6. the "ci" build again, every test under valgrind memcheck;
#   7. the libFuzzer targets, 30 s each (fuzz/run.sh);
#   8. mingw-w64 cross build of the Win32 backend, the whole suite run under
#      Wine ("win32");
#   9. the consumer test (scripts/consumer-test.sh): install msgpipe into a
#      prefix, then build and run a separate program against it with
#      find_package, pkg-config and add_subdirectory, shared and static, on
#      Linux and with mingw-w64 under Wine.
# Every build's suite includes msgpipe_exported_symbols: the shared library
# exports exactly the functions of msgpipe.h.
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
command -v pkg-config >/dev/null 2>&1 || missing+=(pkgconf)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
# the benchmark's nng and ZeroMQ transports are compiled (not run) here
[ -f /usr/include/nng/nng.h ] || missing+=(libnng-dev)
[ -f /usr/include/zmq.h ] || missing+=(libzmq3-dev)
# clang's libFuzzer and ThreadSanitizer runtimes (only recommended by clang)
compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a' \
    >/dev/null || missing+=(libclang-rt-dev)
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
for preset in ci asan tsan clang fifo; do
    step "$preset: configure and build"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" -j "$(nproc)"
    step "$preset: test"
    ctest --preset "$preset"
done

# valgrind memcheck over the "ci" build: any error or leak fails the test
# (and ctest exits non-zero).  Children spawned by tests are not traced.
# (ctest's dashboard mode, -T, ignores test presets: hence --test-dir.)
# test_load sends 10,000 messages per client here instead of 100,000.
step "valgrind: the ci build under memcheck"
MSGPIPE_LOAD_MESSAGES=10000 ctest --test-dir build/ci -j "$(nproc)" \
    --output-on-failure --no-tests=error -T memcheck \
    --overwrite MemoryCheckCommand="$(command -v valgrind)" \
    --overwrite "MemoryCheckCommandOptions=--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible"

# libFuzzer: each target 30 s from its seed corpus (fuzz/run.sh builds
# build/fuzz with clang, ASan and UBSan); a crash fails the command.
step "fuzz: each target for 30 s"
fuzz/run.sh 30

# ---- 3. Windows: mingw-w64 cross build, the suite under Wine ---------------
# scripts/win-deps.sh installs mingw-w64 and Wine when missing and builds
# cmocka for Windows from Debian's source package (cached in build/win-deps).
# A persistent wineserver makes each test start in milliseconds instead of
# seconds; it is stopped on exit, so the command leaves no process behind.
export WINEPREFIX="$PWD/build/wine"
export MSGPIPE_WIN_DEPS="$PWD/build/win-deps"
step "win32: toolchain, Wine and cmocka for Windows"
scripts/win-deps.sh >/dev/null
trap 'scripts/win-deps.sh wine-stop' EXIT
step "win32: configure and build"
cmake --preset win32 >/dev/null
cmake --build --preset win32 -j "$(nproc)"
step "win32: test under Wine"
scripts/win-deps.sh wine-start
ctest --preset win32

# ---- 4. Applications: the installed library, from outside ------------------
# Install into a prefix (then moved), build tests/consumer/ against it with
# find_package and pkg-config (and add_subdirectory), shared and static, run
# it: natively, and with mingw-w64 under Wine (the wineserver above).
step "consumer: install, then find_package / pkg-config / add_subdirectory"
scripts/consumer-test.sh all

step "all test runs passed"
