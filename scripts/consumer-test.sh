#!/usr/bin/env bash
# consumer-test.sh - use msgpipe from outside, as an application does.
#
#   bash scripts/consumer-test.sh [linux|windows|all]     (default: all)
#
# For each system it builds msgpipe as a user would (Release, tests and
# examples off), installs it with `cmake --install --prefix` into a staging
# directory and then MOVES that tree elsewhere (the CMake package and the
# .pc files must not depend on where it was installed).  Then it builds the
# small separate project tests/consumer/ (main.c: listen, connect, accept,
# a message each way, graceful close, ENOENT for a missing server) against
# the moved tree and runs every program:
#
#   linux    find_package(msgpipe CONFIG): msgpipe::msgpipe (shared) and
#            msgpipe::msgpipe_static;
#            pkg-config with a plain cc command line: msgpipe (shared, run
#            with LD_LIBRARY_PATH) and msgpipe-static;
#            add_subdirectory(msgpipe) from the sources (which must bring no
#            tests, examples or install rules);
#            the installed header alone under -std=c99 -Wpedantic and as C++.
#   windows  find_package and pkg-config, shared and static, with mingw-w64
#            (cmake/mingw-w64.cmake for the CMake builds,
#            x86_64-w64-mingw32-gcc for the pkg-config ones), run under
#            Wine, with libmsgpipe.dll copied next to each DLL build's .exe.
#
# Every shared program is checked to load libmsgpipe (ELF NEEDED / PE
# import), every static one not to.  Work directories: build/consumer/linux
# and build/consumer/windows, each wiped first; logs in build/consumer.
# The windows part needs what scripts/win-deps.sh installs (it runs it);
# it starts a persistent wineserver in $WINEPREFIX (default build/wine) and
# stops it on exit - or uses the one already running there.  About 15 s.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. scripts/lib.sh
lib_init consumer-test
what=${1:-all}
case "$what" in linux|windows|all) ;; *)
    echo "usage: $0 [linux|windows|all]" >&2; exit 2 ;;
esac

work=$repo/build/consumer
mkdir -p "$work"
jobs=$(nproc 2>/dev/null || echo 2)
name_base="msgpipe-consumer-$$"
n=0

say() { printf 'consumer-test: %s\n' "$*"; }
die() {
    lib_report 1 "$*"
    exit 1
}
# quiet LOG CMD...: run CMD with its output in $work/LOG.log, shown on failure.
quiet() {
    local name=$1
    shift
    quiet_step "$*"
    MSGPIPE_LOGS=$work run "$name" "$@"
}

# What it needs, installed as root when missing (the Windows part's own
# needs are installed by scripts/win-deps.sh).
missing=()
# shellcheck disable=SC2207
missing+=($(build_missing_packages))
command -v pkg-config >/dev/null 2>&1 || missing+=(pkgconf)
command -v readelf >/dev/null 2>&1 || missing+=(binutils)
if [ "$what" != linux ]; then
    # shellcheck disable=SC2207
    missing+=($(win_missing_packages))
fi
quiet_step "packages"
need_packages "${missing[@]}"

# build_and_install SYSTEM [CMAKE ARGS...]: configure, build, install into a
# staging prefix, then move it to $work/SYSTEM/prefix.
build_and_install() {
    local sys=$1; shift
    rm -rf "${work:?}/$sys" "$work/$sys"-*.log
    quiet "$sys-lib-configure" cmake -S "$repo" -B "$work/$sys/lib" \
        -DCMAKE_BUILD_TYPE=Release -DMSGPIPE_WERROR=ON \
        -DMSGPIPE_BUILD_TESTS=OFF -DMSGPIPE_BUILD_EXAMPLES=OFF "$@"
    quiet "$sys-lib-build" cmake --build "$work/$sys/lib" -j "$jobs"
    quiet "$sys-lib-install" cmake --install "$work/$sys/lib" \
        --prefix "$work/$sys/staging"
    mv "$work/$sys/staging" "$work/$sys/prefix"
    say "$sys: installed and moved to build/consumer/$sys/prefix:"
    (cd "$work/$sys/prefix" && find . -type f -o -type l | sort | sed 's|^\./|    |')
}

# ---- Linux -------------------------------------------------------------------
linux() {
    local prefix=$work/linux/prefix cc=${CC:-cc}
    local cflags=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
    command -v pkg-config >/dev/null || die "pkg-config is not installed"
    build_and_install linux

    # (grep reads all of the output: with -q it would stop early, and under
    # pipefail the tool's SIGPIPE would fail the test.)
    needs_lib() { readelf -d "$1" | grep 'NEEDED.*\[libmsgpipe\.so' >/dev/null; }
    run_linux() { # run_linux shared|static EXE [ENV...]
        local kind=$1 exe=$2; shift 2
        if [ "$kind" = shared ]; then
            needs_lib "$exe" || die "$exe does not load libmsgpipe.so"
        else
            ! needs_lib "$exe" || die "$exe loads libmsgpipe.so"
        fi
        n=$((n + 1))
        if ! timeout 60 env "$@" "$exe" "$name_base-$n" | sed 's/^/    /'; then
            die "$exe failed"
        fi
    }

    say "linux: find_package(msgpipe CONFIG)"
    quiet linux-cmake-configure cmake -S tests/consumer -B "$work/linux/cmake" \
        -DCMAKE_PREFIX_PATH="$prefix"
    quiet linux-cmake-build cmake --build "$work/linux/cmake" -j "$jobs"
    run_linux shared "$work/linux/cmake/consumer_shared"
    run_linux static "$work/linux/cmake/consumer_static"

    say "linux: pkg-config"
    export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
    [ "$(pkg-config --modversion msgpipe)" = "$(pkg-config --modversion msgpipe-static)" ] ||
        die "msgpipe.pc and msgpipe-static.pc disagree on the version"
    say "    cc main.c $(pkg-config --cflags --libs msgpipe)"
    # shellcheck disable=SC2046
    quiet linux-pc-shared "$cc" "${cflags[@]}" tests/consumer/main.c \
        $(pkg-config --cflags --libs msgpipe) -o "$work/linux/pc_shared"
    run_linux shared "$work/linux/pc_shared" LD_LIBRARY_PATH="$prefix/lib"
    say "    cc main.c $(pkg-config --cflags --libs msgpipe-static)"
    # shellcheck disable=SC2046
    quiet linux-pc-static "$cc" "${cflags[@]}" tests/consumer/main.c \
        $(pkg-config --cflags --libs msgpipe-static) -o "$work/linux/pc_static"
    run_linux static "$work/linux/pc_static"
    unset PKG_CONFIG_PATH

    say "linux: add_subdirectory(msgpipe)"
    quiet linux-subdir-configure cmake -S tests/consumer -B "$work/linux/subdir" \
        -DMSGPIPE_SOURCE_DIR="$repo"
    quiet linux-subdir-build cmake --build "$work/linux/subdir" -j "$jobs"
    run_linux shared "$work/linux/subdir/consumer_shared"
    run_linux static "$work/linux/subdir/consumer_static"

    say "linux: the installed header alone, as C99 and as C++"
    printf '#include <msgpipe.h>\nint main(void) { return msgpipe_version() > 0 ? 0 : 1; }\n' \
        >"$work/linux/header.c"
    quiet linux-header-c "$cc" "${cflags[@]}" -fsyntax-only -I"$prefix/include" \
        "$work/linux/header.c"
    if command -v c++ >/dev/null 2>&1; then
        quiet linux-header-cxx c++ -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror \
            -fsyntax-only -I"$prefix/include" "$work/linux/header.c"
    fi
}

# ---- Windows (mingw-w64, Wine) ------------------------------------------------
windows() {
    local prefix=$work/windows/prefix triple=x86_64-w64-mingw32
    local cflags=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
    export WINEPREFIX=${WINEPREFIX:-$repo/build/wine}
    export MSGPIPE_WIN_DEPS=${MSGPIPE_WIN_DEPS:-$repo/build/win-deps}
    export WINEDEBUG=${WINEDEBUG:--all} WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
    quiet win-deps scripts/win-deps.sh
    command -v pkg-config >/dev/null || die "pkg-config is not installed"
    local wine
    if command -v wine >/dev/null 2>&1; then wine=$(command -v wine); else wine=/usr/lib/wine/wine64; fi
    local gcc
    gcc=$(command -v $triple-gcc-win32 || command -v $triple-gcc)

    build_and_install windows -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/mingw-w64.cmake"

    imports_dll() { $triple-objdump -p "$1" | grep -i 'DLL Name: libmsgpipe\.dll' >/dev/null; }
    run_windows() { # run_windows shared|static EXE
        local kind=$1 exe=$2
        if [ "$kind" = shared ]; then
            imports_dll "$exe" || die "$exe does not import libmsgpipe.dll"
            [ -f "$(dirname "$exe")/libmsgpipe.dll" ] || die "no libmsgpipe.dll next to $exe"
        else
            ! imports_dll "$exe" || die "$exe imports libmsgpipe.dll"
        fi
        # Wine's console output ends lines with CR LF.
        n=$((n + 1))
        if ! timeout 60 "$wine" "$exe" "$name_base-$n" </dev/null |
            tr -d '\r' | sed 's/^/    /'; then
            die "$exe failed under Wine"
        fi
    }

    # A persistent wineserver: each program starts in milliseconds, and no
    # Wine helper keeps our output pipe open.  If one is running already
    # (scripts/test.sh started it), use it and leave it running.
    local rc=0
    scripts/win-deps.sh wine-start || rc=$?
    case $rc in
    0) trap 'scripts/win-deps.sh wine-stop' EXIT ;;
    3) say "windows: using the wineserver already running in $WINEPREFIX" ;;
    *) die "scripts/win-deps.sh wine-start failed (exit status $rc; see above)" ;;
    esac

    say "windows: find_package(msgpipe CONFIG)"
    quiet win-cmake-configure cmake -S tests/consumer -B "$work/windows/cmake" \
        -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/mingw-w64.cmake" \
        -DCMAKE_PREFIX_PATH="$prefix"
    quiet win-cmake-build cmake --build "$work/windows/cmake" -j "$jobs"
    run_windows shared "$work/windows/cmake/consumer_shared.exe"
    run_windows static "$work/windows/cmake/consumer_static.exe"

    say "windows: pkg-config"
    # PKG_CONFIG_LIBDIR, not _PATH: no Linux .pc file may leak in.
    export PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig
    mkdir -p "$work/windows/pc"
    say "    $triple-gcc main.c $(pkg-config --cflags --libs msgpipe)"
    # shellcheck disable=SC2046
    quiet win-pc-shared "$gcc" "${cflags[@]}" tests/consumer/main.c \
        $(pkg-config --cflags --libs msgpipe) -o "$work/windows/pc/pc_shared.exe"
    cp "$prefix/bin/libmsgpipe.dll" "$work/windows/pc/"
    run_windows shared "$work/windows/pc/pc_shared.exe"
    say "    $triple-gcc main.c $(pkg-config --cflags --libs msgpipe-static)"
    # shellcheck disable=SC2046
    quiet win-pc-static "$gcc" "${cflags[@]}" tests/consumer/main.c \
        $(pkg-config --cflags --libs msgpipe-static) -o "$work/windows/pc/pc_static.exe"
    run_windows static "$work/windows/pc/pc_static.exe"
    unset PKG_CONFIG_LIBDIR
}

start=$(date +%s)
case "$what" in
    linux) linux ;;
    windows) windows ;;
    all) linux; windows ;;
esac
say "all consumer builds passed ($(( $(date +%s) - start )) s)"
