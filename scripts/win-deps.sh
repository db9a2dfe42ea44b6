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
# Both honour WINEPREFIX.
#
# What it does (idempotent, quiet; logs go to $MSGPIPE_WIN_DEPS/logs):
#   1. checks for gcc-mingw-w64-x86-64, wine64, dpkg-dev, cmake; as root
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
set -eu

wine_env() {
    export WINEDEBUG=${WINEDEBUG:--all} WINEDLLOVERRIDES=${WINEDLLOVERRIDES:-mscoree,mshtml=}
}
case "${1:-}" in
    wine-start)
        wine_env
        wineserver -p </dev/null >/dev/null 2>&1
        wine wineboot </dev/null >/dev/null 2>&1
        exit 0 ;;
    wine-stop)
        wineserver -k 2>/dev/null || true
        wineserver -w 2>/dev/null || true
        exit 0 ;;
    "") ;;
    *) echo "usage: $0 [wine-start|wine-stop]" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
deps=${MSGPIPE_WIN_DEPS:-$repo/build/win-deps}
mkdir -p "$deps"
deps=$(cd "$deps" && pwd)
prefix=$deps/prefix
logs=$deps/logs
mkdir -p "$logs"

triple=x86_64-w64-mingw32
suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
suite=${suite:-bookworm}

say() { echo "win-deps: $*" >&2; }
die() { say "error: $*"; exit 1; }
# run LOGNAME CMD...: run quietly, dump the log on failure.
run() {
    local log=$logs/$1.log; shift
    if ! "$@" >"$log" 2>&1; then
        say "failed: $* (log: $log)"
        tail -n 60 "$log" >&2
        exit 1
    fi
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- 1. packages ------------------------------------------------------------
have_wine() {
    command -v wine >/dev/null 2>&1 || [ -x /usr/lib/wine/wine64 ]
}
missing=
command -v $triple-gcc >/dev/null 2>&1 || missing="$missing gcc-mingw-w64-x86-64"
# The 64-bit loader is in 'wine64'; /usr/bin/wine and /usr/bin/wineserver,
# which everything here calls, are in 'wine'.  Both are needed, whichever of
# them (or neither) is there already.
[ -x /usr/lib/wine/wine64 ] || missing="$missing wine64"
{ command -v wine && command -v wineserver; } >/dev/null 2>&1 || missing="$missing wine"
command -v dpkg-source >/dev/null 2>&1 || missing="$missing dpkg-dev"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
if [ -n "$missing" ]; then
    if is_root; then
        say "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y --no-install-recommends $missing >"$logs/apt-install.log" 2>&1; then
            run apt-update apt-get update
            run apt-install apt-get install -y --no-install-recommends $missing
        fi
    else
        say "missing packages; as root run:"
        say "  apt-get install --no-install-recommends$missing"
        exit 1
    fi
fi

if command -v wine >/dev/null 2>&1; then wine=$(command -v wine); else wine=/usr/lib/wine/wine64; fi

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

# Print "URI<TAB>SIGNED_BY" of the first enabled 'deb' entry for $suite.
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && uris != "" &&
                    (" " suites " ") ~ (" " suite " ")) {
                    split(uris, u, " "); printf "%s\t%s\n", u[1], signed; found = 1; exit
                }
                types = uris = suites = signed = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                key = tolower($1); sub(/:$/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "signed-by") signed = val
                else if (key == "enabled") enabled = tolower(val)
            }
            END { if (!found) flush() }
        ' "$f" | head -n 1 | grep . && return 0
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v suite="$suite" '
            $1 == "deb" {
                i = 2; signed = ""
                if ($i ~ /^\[/) {
                    while (i <= NF) {
                        if ($i ~ /^\[?signed-by=/) { s = $i; sub(/^\[?signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
                        if ($i ~ /\]$/) { i++; break }
                        i++
                    }
                }
                if ($(i + 1) == suite) { printf "%s\t%s\n", $i, signed; exit }
            }' "$f" | head -n 1 | grep . && return 0
    done
    return 1
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
    [ -n "$srcdir" ] || die "apt-get source cmocka produced no source dir (log: $logs/apt-source.log)"

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
        [ -n "$lib" ] || die "no static cmocka library was built (logs: $logs)"
        mkdir -p "$prefix/lib"
        cp "$lib" "$prefix/lib/libcmocka-static.a"
    fi
    [ -f "$prefix/include/cmocka.h" ] || die "cmocka.h not installed (logs: $logs)"
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
        say "initialising Wine prefix $wp (once, ~10 s)"
        # No DISPLAY needed; the overrides stop the Mono/Gecko install prompts.
        WINEPREFIX=$wp WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" \
            run wineboot "$wine" wineboot -i
        WINEPREFIX=$wp wineserver -w 2>/dev/null || true
    fi
fi

echo "$prefix"
