#!/bin/sh
# Makes (up) or removes (down) the network namespace that link.yaml's PostgreSQL runs in,
# joined to this host by a veth pair: NAME-h here (PREFIX.1), NAME-n there (PREFIX.2).
# With the link down the path is unreachable (a route says so), not sent elsewhere.
#
#   sudo config/examples/reference/link.sh up      [NAME [PREFIX]]   (default: wref 10.254.0)
#   sudo config/examples/reference/link.sh down    [NAME [PREFIX]]
#
# Idempotent: `up` on a namespace that exists and `down` on one that does not do nothing.
set -eu
action=${1:-}
name=${2:-wref}
prefix=${3:-10.254.0}
case "$action" in
up)
    if ip netns list | grep -qw "^$name"; then exit 0; fi
    ip netns add "$name"
    ip link add "$name-h" type veth peer name "$name-n" netns "$name"
    ip addr add "$prefix.1/30" dev "$name-h"
    ip link set "$name-h" up
    ip -n "$name" addr add "$prefix.2/30" dev "$name-n"
    ip -n "$name" link set "$name-n" up
    ip -n "$name" link set lo up
    ip route add unreachable "$prefix.0/24" metric 4000
    ;;
down)
    ip netns del "$name" 2>/dev/null || true
    ip link del "$name-h" 2>/dev/null || true
    ip route del unreachable "$prefix.0/24" 2>/dev/null || true
    ;;
*)
    echo "usage: $0 up|down [NAME [PREFIX]]" >&2
    exit 2
    ;;
esac
