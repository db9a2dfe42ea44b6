#!/usr/bin/env bash
# test.sh - build msgpipe and run its whole test suite.
#
#   bash scripts/test.sh
#
# First, as root on Debian, installs with one apt-get whatever is missing of
# what every step below needs (cmake, gcc and libc6-dev, make, clang and its
# libclang-rt-dev runtimes, cmocka, python3, pkgconf, valgrind and
# libc6-dbg, nng and ZeroMQ headers, mingw-w64, wine and wine64, dpkg-dev);
# otherwise prints what to install.  Each step's log is in build/logs; a
# failing step is named, with its command, exit status and the log's tail.
# Then, with warnings as errors:
#   1. gcc build, the whole suite (ctest preset "ci");
#   2. gcc build with AddressSanitizer + UndefinedBehaviorSanitizer ("asan");
#   3. clang build with ThreadSanitizer, the whole suite ("tsan");
#   4. clang build, the whole suite, with msgpipe_poller on its poll()
#      fallback instead of epoll ("clang");
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
. scripts/lib.sh
lib_init test.sh
# Logs of every step: build/logs (the Windows set-up's: build/win-deps/logs).

# ---- 1. What the build needs, Linux and Windows, installed in one pass -------
step "packages"
missing=()
# shellcheck disable=SC2207
missing+=($(build_missing_packages))
command -v clang >/dev/null 2>&1 || missing+=(clang)
[ -f /usr/include/cmocka.h ] || missing+=(libcmocka-dev)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkgconf)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
# valgrind reads the C library's symbols from libc6-dbg (recommended only).
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s libc6-dbg >/dev/null 2>&1; then
    missing+=(libc6-dbg)
fi
# the benchmark's nng and ZeroMQ transports are compiled (not run) here
[ -f /usr/include/nng/nng.h ] || missing+=(libnng-dev)
[ -f /usr/include/zmq.h ] || missing+=(libzmq3-dev)
# clang's libFuzzer and ThreadSanitizer runtimes (only recommended by clang)
compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a' \
    >/dev/null || missing+=(libclang-rt-dev)
# the Windows cross build and Wine (scripts/win-deps.sh checks them again)
for p in $(win_missing_packages); do
    case " ${missing[*]} " in *" $p "*) ;; *) missing+=("$p") ;; esac
done
need_packages "${missing[@]}"

# ---- 2. Linux builds ---------------------------------------------------------
for preset in ci asan tsan clang fifo; do
    step "$preset: configure and build"
    hint "the build log says which file failed; warnings are errors (MSGPIPE_WERROR)"
    run "$preset-configure" cmake --preset "$preset"
    run_shown "$preset-build" cmake --build --preset "$preset" -j "$(nproc)"
    step "$preset: test"
    hint "rerun one test with: ctest --preset $preset -R NAME --output-on-failure"
    run_shown "$preset-test" ctest --preset "$preset"
done

# valgrind memcheck over the "ci" build: any error or leak fails the test
# (and ctest exits non-zero).  Children spawned by tests are not traced.
# (ctest's dashboard mode, -T, ignores test presets: hence --test-dir.)
# test_load sends 10,000 messages per client here instead of 100,000.
step "valgrind: the ci build under memcheck"
hint "valgrind's report is in build/ci/Testing/Temporary/MemoryChecker.*.log; rerun one test with -R NAME"
MSGPIPE_LOAD_MESSAGES=10000 run_shown valgrind ctest --test-dir build/ci -j "$(nproc)" \
    --output-on-failure --no-tests=error -T memcheck \
    --overwrite MemoryCheckCommand="$(command -v valgrind)" \
    --overwrite "MemoryCheckCommandOptions=--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible"

# libFuzzer: each target 30 s from its seed corpus (fuzz/run.sh builds
# build/fuzz with clang, ASan and UBSan); a crash fails the command.
step "fuzz: each target for 30 s"
hint "fuzz/run.sh prints the input that failed; keep it in fuzz/regressions/ (see fuzz/run.sh)"
run_shown fuzz fuzz/run.sh 30

# ---- 3. Windows: mingw-w64 cross build, the suite under Wine ---------------
# scripts/win-deps.sh installs mingw-w64 and Wine when missing and builds
# cmocka for Windows from Debian's source package (cached in build/win-deps).
# A persistent wineserver makes each test start in milliseconds instead of
# seconds; it is stopped on exit, so the command leaves no process behind
# (one that was running already is used and left running).
export WINEPREFIX="$PWD/build/wine"
export MSGPIPE_WIN_DEPS="$PWD/build/win-deps"
step "win32: toolchain, Wine and cmocka for Windows"
hint "scripts/win-deps.sh said what failed above; its logs are in build/win-deps/logs"
run win-deps scripts/win-deps.sh
step "win32: configure and build"
hint "the build log says which file failed; warnings are errors (MSGPIPE_WERROR)"
run win32-configure cmake --preset win32
run_shown win32-build cmake --build --preset win32 -j "$(nproc)"
step "win32: test under Wine"
hint "scripts/win-deps.sh wine-start said what failed above"
rc=0
scripts/win-deps.sh wine-start || rc=$?
case $rc in
0) trap 'scripts/win-deps.sh wine-stop' EXIT ;; # ours: stopped on exit
3) ;;                                           # one was running: left so
*) exit "$rc" ;;
esac
hint "rerun one test with: WINEPREFIX=$WINEPREFIX ctest --preset win32 -R NAME --output-on-failure"
run_shown win32-test ctest --preset win32

# ---- 4. Applications: the installed library, from outside ------------------
# Install into a prefix (then moved), build tests/consumer/ against it with
# find_package and pkg-config (and add_subdirectory), shared and static, run
# it: natively, and with mingw-w64 under Wine (the wineserver above).
step "consumer: install, then find_package / pkg-config / add_subdirectory"
hint "scripts/consumer-test.sh names the failing build and its log in build/consumer"
run_shown consumer scripts/consumer-test.sh all

step "all test runs passed"
