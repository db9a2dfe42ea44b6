# lib.sh - shared by msgpipe's scripts (sourced, never run): steps that say
# what failed and why, and installing missing Debian packages in one pass.
#
#   . "$repo/scripts/lib.sh"      # after `set -euo pipefail`
#   lib_init NAME                 # NAME prefixes messages; logs go to
#                                 # $MSGPIPE_LOGS (default <repo>/build/logs)
#   step "title"                  # starts a step; a failure names it
#   quiet_step "title"           # the same, without printing the title
#   hint "what to do"             # said if the current step fails
#   run LOG CMD...                # CMD's output only in LOG; on failure the
#                                 # step, CMD, status and LOG's tail
#   run_shown LOG CMD...          # the same, with the output also shown
#   need_packages PKG...          # as root: apt-get install what is missing
#   build_missing_packages        # what a native build lacks (cmake, gcc, ...)
#   win_missing_packages          # what the Windows cross build lacks
#
# Any other command that fails while `set -e` holds is reported the same
# way by the ERR trap: which step, which command, where, its exit status.
# No script stops without saying why.

lib_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lib_name=msgpipe
lib_step="(start)"
lib_hint=""
lib_last_log=""
lib_reported=0

lib_init() {
    lib_name=$1
    MSGPIPE_LOGS=${MSGPIPE_LOGS:-$lib_repo/build/logs}
    mkdir -p "$MSGPIPE_LOGS"
    MSGPIPE_LOGS=$(cd "$MSGPIPE_LOGS" && pwd)
    export MSGPIPE_LOGS
    set -E # functions and subshells inherit the ERR trap
    trap 'lib_on_err $? "$BASH_COMMAND" "${BASH_SOURCE[0]}" "$LINENO"' ERR
}

say() { printf '%s: %s\n' "$lib_name" "$*" >&2; }

step() {
    lib_step=$*
    lib_hint=""
    lib_last_log=""
    printf '\n==== %s\n' "$*"
}

hint() { lib_hint=$*; }

# quiet_step "title": as step, without printing the title (for scripts whose
# stdout is read by their caller).
quiet_step() {
    lib_step=$*
    lib_hint=""
    lib_last_log=""
}

# lib_report STATUS COMMAND [WHERE]: the failure report, printed once.
lib_report() {
    local rc=$1 cmd=$2 where=${3:-}
    [ "$lib_reported" = 0 ] || return 0
    lib_reported=1
    {
        printf '\n%s: FAILED in step "%s"\n' "$lib_name" "$lib_step"
        printf '  command:     %s\n' "$cmd"
        printf '  exit status: %s%s\n' "$rc" "$(lib_status_meaning "$rc")"
        [ -z "$where" ] || printf '  at:          %s\n' "$where"
        if [ -n "$lib_last_log" ] && [ -s "$lib_last_log" ]; then
            printf '  log:         %s (last lines below)\n' "$lib_last_log"
            tail -n 25 "$lib_last_log" | sed 's/^/  | /'
        fi
        [ -z "$lib_hint" ] || printf '  what to do:  %s\n' "$lib_hint"
    } >&2
}

lib_status_meaning() {
    case "$1" in
    124) echo " (timed out)" ;;
    126) echo " (not executable)" ;;
    127) echo " (command not found)" ;;
    13[0-9] | 1[4-9][0-9])
        echo " (killed by signal $(($1 - 128)): $(kill -l $(($1 - 128)) 2>/dev/null || echo '?'))"
        ;;
    esac
}

lib_on_err() {
    local rc=$1 cmd=$2 src=$3 line=$4
    # Only the innermost report counts: a subshell reports, its parent exits.
    lib_report "$rc" "$cmd" "${src#"$lib_repo"/}:$line"
}

# run LOG CMD...: run CMD with stdout and stderr in $MSGPIPE_LOGS/LOG.log.
run() {
    local log=$MSGPIPE_LOGS/$1.log rc=0
    shift
    lib_last_log=$log
    "$@" >"$log" 2>&1 </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        lib_report "$rc" "$*"
        exit "$rc"
    fi
}

# run_shown LOG CMD...: as run, with the output on stdout as well.
run_shown() {
    local log=$MSGPIPE_LOGS/$1.log rc=0
    shift
    lib_last_log=$log
    "$@" </dev/null 2>&1 | tee "$log" || rc=$?
    if [ "$rc" != 0 ]; then
        lib_report "$rc" "$*"
        exit "$rc"
    fi
}

is_root() { [ "$(id -u)" = 0 ]; }

# need_packages PKG...: install the packages named (the caller decides what
# is missing).  As root with apt-get: one `apt-get install`, and if that
# fails (package lists missing or old, as on a new machine), `apt-get
# update` and the install again.  Otherwise: say what to run, and fail.
need_packages() {
    [ $# -gt 0 ] || return 0
    if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
        say "missing: $*"
        say "install them, e.g.: sudo apt-get install --no-install-recommends $*"
        lib_report 1 "need_packages $*" ""
        exit 1
    fi
    say "installing: $*"
    export DEBIAN_FRONTEND=noninteractive
    hint "check that this machine reaches the Debian mirror named in /etc/apt/sources.list(.d), then run the command again"
    if ! apt-get install -y --no-install-recommends "$@" \
        >"$MSGPIPE_LOGS/apt-install.log" 2>&1 </dev/null; then
        run apt-update apt-get update
        run apt-install apt-get install -y --no-install-recommends "$@"
    fi
    hint ""
}

# The Debian release this machine runs (bookworm if it cannot be told).
debian_suite() {
    local s
    s=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
    echo "${s:-bookworm}"
}

# find_mirror [SUITE]: print "URI<TAB>SIGNED_BY" of the first enabled 'deb'
# entry for SUITE in the machine's apt sources (deb822 .sources files first,
# then one-line .list files); fail if there is none.
find_mirror() {
    local suite=${1:-$(debian_suite)} f
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

# The packages a native build needs that are not there (cmake, gcc, make,
# and libc6-dev: gcc without its recommends cannot link, since the C
# library's startup files and headers are in libc6-dev), space-separated.
build_missing_packages() {
    local m=""
    command -v cmake >/dev/null 2>&1 || m="$m cmake"
    command -v gcc >/dev/null 2>&1 || m="$m gcc"
    [ -f /usr/include/stdio.h ] || m="$m libc6-dev"
    command -v make >/dev/null 2>&1 || m="$m make"
    # OpenSSL's libcrypto: authkey's HMAC (the library builds without it,
    # but then authkey is MSGPIPE_ENOTSUP and its tests are skipped).
    [ -f /usr/include/openssl/hmac.h ] || m="$m libssl-dev"
    echo "${m# }"
}

# The packages the Windows cross build and its tests under Wine need that
# are not there (printed space-separated; empty when nothing is missing).
win_missing_packages() {
    local m=""
    command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || m="$m gcc-mingw-w64-x86-64"
    # The 64-bit loader is in 'wine64'; /usr/bin/wine and /usr/bin/wineserver,
    # which the scripts call, are in 'wine'.  Both are needed, whichever of
    # them (or neither) is there already.
    [ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || m="$m wine64"
    { command -v wine && command -v wineserver; } >/dev/null 2>&1 || m="$m wine"
    command -v dpkg-source >/dev/null 2>&1 || m="$m dpkg-dev" # apt-get source
    echo "${m# }"
}
