#!/usr/bin/env bash
# Installs, as root on a fresh Debian machine, the system tools warden's tests need:
#   promtool (Debian package `prometheus`)      always
#   postgres (Debian package `postgresql`)      always: a real PostgreSQL supervised by warden
#   ip       (Debian package `iproute2`)        always: network namespaces for the link probes
#   redis-server, redis-cli (Debian packages `redis-server`, `redis-tools`)
#                                               always: the real-services reference node
#   nginx    (Debian package `nginx`)           always: the real-services reference node
#   nft      (Debian package `nftables`)        always: a link that is up and carries nothing
#   monit    (Debian package `monit`)           always: the soak's peer (and the restore benchmark's)
#   supervisord (PyPI package `supervisor`)     with --bench (the other peer), into a
#            virtualenv beside the build (target/peers), where `warden chaos bench` finds it
# Idempotent and quiet: skips apt entirely when every command is present, runs
# `apt-get update` only when something must be installed, prints only on failure.
set -euo pipefail

bench=0
for arg in "$@"; do
    case "$arg" in
        --bench) bench=1 ;;
        -h|--help) echo "usage: $0 [--bench]"; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# supervisord from PyPI, in its own virtualenv: no system Python is touched.
if [ "$bench" = 1 ] && ! command -v supervisord >/dev/null 2>&1; then
    peers="$(cd "$(dirname "$0")/.." && pwd)/target/peers"
    if [ ! -x "$peers/bin/supervisord" ]; then
        pylog=$(mktemp)
        if ! { python3 -m venv "$peers" && "$peers/bin/pip" install -q supervisor; } >"$pylog" 2>&1; then
            echo "install-deps: failed to install supervisord (PyPI package supervisor)" >&2
            cat "$pylog" >&2
            rm -f "$pylog"
            exit 1
        fi
        rm -f "$pylog"
    fi
fi

# command -> Debian package
declare -A want=([promtool]=prometheus [postgres]=postgresql [psql]=postgresql [ip]=iproute2
                 [redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx [nft]=nftables
                 [monit]=monit)

# PostgreSQL's server binaries live outside PATH, under /usr/lib/postgresql/VERSION/bin.
have() {
    if [ "$1" = postgres ]; then
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
    elif [ "$1" = nginx ] || [ "$1" = nft ]; then
        command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]
    else
        command -v "$1" >/dev/null 2>&1
    fi
}

find_missing() {
    missing=()
    for cmd in "${!want[@]}"; do
        have "$cmd" || missing+=("${want[$cmd]}")
    done
    # One package may provide several commands.
    if [ "${#missing[@]}" -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    fi
}
find_missing
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi

# Tests may call this script in parallel: one installs, the others wait and re-check.
exec 9>/var/lock/warden-install-deps.lock
if ! flock -w 600 9; then
    echo "install-deps: timed out waiting for another install to finish" >&2
    exit 1
fi
find_missing
[ "${#missing[@]}" -eq 0 ] && exit 0

log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
# Packaged daemons must not start here: we only want their binaries. A policy-rc.d
# that refuses is the documented way; restore whatever was there before.
policy=/usr/sbin/policy-rc.d
had_policy=0
if [ -e "$policy" ]; then had_policy=1; cp -p "$policy" "$log.policy"; fi
restore_policy() {
    if [ "$had_policy" = 1 ]; then mv -f "$log.policy" "$policy"; else rm -f "$policy"; fi
    rm -f "$log"
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 0755 "$policy"

lock_wait=(-o DPkg::Lock::Timeout=300)
if ! { apt-get "${lock_wait[@]}" update -qq &&
       apt-get "${lock_wait[@]}" install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    echo "install-deps: failed to install: ${missing[*]}" >&2
    cat "$log" >&2
    exit 1
fi

for cmd in "${!want[@]}"; do
    if ! have "$cmd"; then
        echo "install-deps: $cmd still missing after installing ${want[$cmd]}" >&2
        exit 1
    fi
done
