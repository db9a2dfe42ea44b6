#!/bin/bash
# win-deps.sh - prepare the Windows (mingw-w64 + Wine) cross test build.
#
# Usage:
#   prefix=$(scripts/win-deps.sh)          # as root: installs what's missing
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake \
#         -DCMOCKA_ROOT="$prefix"
#   scripts/win-deps.sh wine-start          # persistent wineserver (see below)
#   cmake --build build-win -j && ctest --test-dir build-win -j8 --output-on-failure
#   scripts/win-deps.sh wine-stop           # wineserver -k; wineserver -w
#
# wine-start / wine-stop: without a persistent wineserver, every test costs
# ~2.4 s under ctest: the first wine process of a session spawns helpers
# (winedevice.exe, ...) that inherit ctest's output pipe and live until the
# server's idle timeout, and ctest waits for the pipe to close. wine-start runs
# `wineserver -p` plus `wine wineboot` with stdio detached, after which each
# test exe starts in ~0.05 s. (Never start a persistent server from inside a
# ctest test: its helpers would hold the pipe until the test times out.)
# Both honour WINEPREFIX.  wine-start exits with status 3 (and starts
# nothing) when a wineserver already runs for the prefix; wine-stop stops it.
#
# What it does (idempotent, quiet; logs go to $MSGPIPE_WIN_DEPS/logs):
#   1. checks for gcc-mingw-w64-x86-64, wine and wine64, dpkg-dev, cmake; as root
#      installs the missing ones with apt-get, otherwise prints what to install
#      and exits 1;
#   2. unless $MSGPIPE_WIN_DEPS/prefix already has include/cmocka.h and
#      lib/libcmocka-static.a: adds a deb-src entry for bookworm if none is
#      configured (mirror taken from the existing deb entry; apt-get update only
#      then), runs `apt-get source cmocka` and cross-builds it as a static
#      library with cmake/mingw-w64.cmake, installing into
#      $MSGPIPE_WIN_DEPS/prefix;
#   3. initialises the Wine prefix (${WINEPREFIX:-$HOME/.wine}) once, quietly
#      (first wineboot takes ~10 s; no Mono/Gecko dialogs, no DISPLAY needed).
#      Skip with MSGPIPE_WIN_NO_WINEBOOT=1.
#   The last line on stdout is the cmocka prefix (absolute path).
#
# Env: MSGPIPE_WIN_DEPS  cache dir (default: <repo>/build/win-deps)
#      WINEPREFIX        Wine prefix to initialise (default: $HOME/.wine)
#
# Consumers must link the static lib via find_path/find_library, not cmocka's
# CMake package (1.1.5's package names a wrong import lib for mingw and
# defines no target):
#   find_path(CMOCKA_INCLUDE_DIR cmocka.h)
#   find_library(CMOCKA_LIBRARY NAMES cmocka-static libcmocka-static.a)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
lib_init win-deps

wine_env() {
    export WINEDEBUG=${WINEDEBUG:--all} WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
}
# need_tools STEP TOOL...: fail, naming each tool that is not on the PATH and
# the package that has it, when any is missing.
need_tools() {
    local what=$1 t gone=""
    shift
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || gone="$gone $t"
    done
    [ -z "$gone" ] && return 0
    quiet_step "$what"
    hint "install Debian's 'wine' and 'wine64' packages (as root: bash scripts/win-deps.sh, or apt-get install --no-install-recommends wine wine64)"
    lib_report 127 "$what: not on the PATH:$gone"
    exit 127
}
case "${1:-}" in
wine-start)
    need_tools wine-start wine wineserver
    wine_env
    logs=${MSGPIPE_WIN_DEPS:-$lib_repo/build/win-deps}/logs
    mkdir -p "$logs"
    MSGPIPE_LOGS=$(cd "$logs" && pwd)
    quiet_step "wine-start: persistent wineserver in ${WINEPREFIX:-$HOME/.wine}"
    hint "see the log; 'WINEDEBUG=err+all wineserver -p -f' shows why the server does not start"
    # wineserver exits with status 2 when a server already runs for this
    # prefix: then wine-start uses it, says so, and exits with status 3.
    rc=0
    wineserver -p >"$MSGPIPE_LOGS/wineserver-start.log" 2>&1 </dev/null || rc=$?
    if [ "$rc" = 2 ]; then
        say "a wineserver already runs for ${WINEPREFIX:-$HOME/.wine}: using it"
        exit 3
    elif [ "$rc" != 0 ]; then
        lib_last_log=$MSGPIPE_LOGS/wineserver-start.log
        lib_report "$rc" "wineserver -p"
        exit "$rc"
    fi
    quiet_step "wine-start: wineboot in ${WINEPREFIX:-$HOME/.wine}"
    hint "a damaged prefix can be removed (rm -rf \"\$WINEPREFIX\") and is made again by scripts/win-deps.sh"
    run wine-wineboot wine wineboot
    exit 0
    ;;
wine-stop)
    need_tools wine-stop wineserver
    # -k: nothing to stop is fine (status 1); -w waits for the server to go.
    wineserver -k 2>/dev/null || true
    wineserver -w 2>/dev/null || true
    exit 0
    ;;
"") ;;
*)
    echo "usage: $0 [wine-start|wine-stop]" >&2
    exit 2
    ;;
esac

repo=$lib_repo
deps=${MSGPIPE_WIN_DEPS:-$repo/build/win-deps}
mkdir -p "$deps"
deps=$(cd "$deps" && pwd)
prefix=$deps/prefix
MSGPIPE_LOGS=$deps/logs
mkdir -p "$MSGPIPE_LOGS"

triple=x86_64-w64-mingw32
suite=$(debian_suite)

die() {
    lib_report 1 "$*"
    exit 1
}

# --- 1. packages ------------------------------------------------------------
quiet_step "win-deps: packages"
# shellcheck disable=SC2046
need_packages $(win_missing_packages) \
    $(command -v cmake >/dev/null 2>&1 || echo cmake)
wine=$(command -v wine)

# --- 2. cmocka for mingw ----------------------------------------------------
find_static_lib() {
    local f
    for f in "$prefix"/lib/libcmocka-static.a "$prefix"/lib/libcmocka.a; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

have_deb_src() {
    apt-get indextargets --format '$(CREATED_BY) $(SUITE) $(CODENAME)' 2>/dev/null \
        | grep -Eq "^Sources .*\\b$suite\\b"
}

add_deb_src() {
    local line uri signed file=/etc/apt/sources.list.d/msgpipe-deb-src.sources
    if line=$(find_mirror); then
        uri=${line%%$'\t'*}; signed=${line#*$'\t'}
    else
        uri=http://deb.debian.org/debian; signed=
    fi
    [ -n "$signed" ] || { [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] &&
                          signed=/usr/share/keyrings/debian-archive-keyring.gpg; } || true
    say "adding deb-src $uri $suite main ($file)"
    {
        echo "# added by msgpipe scripts/win-deps.sh (for apt-get source cmocka)"
        echo "Types: deb-src"
        echo "URIs: $uri"
        echo "Suites: $suite"
        echo "Components: main"
        [ -z "$signed" ] || echo "Signed-By: $signed"
    } >"$file"
}

if [ -f "$prefix/include/cmocka.h" ] && find_static_lib >/dev/null; then
    : # already built
else
    quiet_step "win-deps: cmocka for Windows, from Debian's source package"
    hint "the log names the failing command; 'rm -rf $deps' and a new run start the build afresh"
    if ! have_deb_src; then
        is_root || die "no deb-src entry for $suite; as root add one (e.g. 'deb-src http://deb.debian.org/debian $suite main') and run apt-get update"
        add_deb_src
        run apt-update apt-get update
    fi

    src=$deps/src
    rm -rf "$src" "$deps/build-cmocka" "$prefix"
    mkdir -p "$src"
    # As root apt cannot drop privileges to _apt for a dir it does not own;
    # the resulting warning is harmless.
    (cd "$src" && run apt-source apt-get source cmocka)
    srcdir=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'cmocka-*' | head -n 1)
    [ -n "$srcdir" ] || die "apt-get source cmocka produced no source dir (log: $MSGPIPE_LOGS/apt-source.log)"

    say "cross-building $(basename "$srcdir") for $triple"
    run cmocka-configure cmake -S "$srcdir" -B "$deps/build-cmocka" \
        -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/mingw-w64.cmake" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$prefix" \
        -DWITH_STATIC_LIB=ON -DBUILD_SHARED_LIBS=OFF \
        -DWITH_EXAMPLES=OFF -DUNIT_TESTING=OFF -DPICKY_DEVELOPER=OFF
    run cmocka-build cmake --build "$deps/build-cmocka" -j "$(nproc 2>/dev/null || echo 2)"
    run cmocka-install cmake --install "$deps/build-cmocka"
    # cmocka 1.1.5 installs libcmocka-static.a by itself (WITH_STATIC_LIB);
    # make sure it is there under that name whatever the version.
    if [ ! -f "$prefix/lib/libcmocka-static.a" ]; then
        lib=$(find "$deps/build-cmocka" -name 'libcmocka*.a' ! -name '*.dll.a' | head -n 1)
        [ -n "$lib" ] || die "no static cmocka library was built (logs: $MSGPIPE_LOGS)"
        mkdir -p "$prefix/lib"
        cp "$lib" "$prefix/lib/libcmocka-static.a"
    fi
    [ -f "$prefix/include/cmocka.h" ] || die "cmocka.h not installed (logs: $MSGPIPE_LOGS)"
    # Drop the shared build and the broken CMake/pkg-config metadata (it names
    # lib/cmocka.dll.a, which does not exist) so nothing can pick them by mistake.
    rm -rf "$prefix/bin/cmocka.dll" "$prefix"/lib/*.dll.a \
           "$prefix/lib/cmake/cmocka" "$prefix/lib/pkgconfig/cmocka.pc"
    rmdir "$prefix/bin" "$prefix/lib/cmake" "$prefix/lib/pkgconfig" 2>/dev/null || true
fi

# --- 3. Wine prefix ---------------------------------------------------------
if [ "${MSGPIPE_WIN_NO_WINEBOOT:-0}" != 1 ]; then
    wp=${WINEPREFIX:-$HOME/.wine}
    if [ ! -f "$wp/system.reg" ]; then
        quiet_step "win-deps: Wine prefix $wp"
        hint "remove the prefix (rm -rf $wp) and run again; WINEDEBUG=err+all shows Wine's own errors"
        say "initialising Wine prefix $wp (once, ~10 s)"
        # No DISPLAY needed; the overrides stop the Mono/Gecko install prompts.
        WINEPREFIX=$wp WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
            run wineboot "$wine" wineboot -i
        WINEPREFIX=$wp wineserver -w 2>/dev/null || true
    fi
fi

echo "$prefix"
