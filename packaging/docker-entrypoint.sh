#!/bin/sh
# Entry point of the bridgemesh container image (packaging/Dockerfile).
#
# Runs `bridgemesh up` by default, configured by BRIDGEMESH_* environment variables (compose.yaml
# reads them from .env, as Jitsi's docker setup does): BRIDGEMESH_DOMAIN, BRIDGEMESH_ACME_EMAIL,
# BRIDGEMESH_PUBLIC_IP... Arguments that start with '-' are options to `up`; anything else is a
# bridgemesh subcommand (`bridgemesh control`, `bridge`, `turn`, `admin`...).
#
# Before a public `up` it checks that the state directory is a writable directory: a volume
# mounted with the host's ownership is the usual reason a container cannot keep its certificate,
# and the message says what to do instead of failing later in the middle of ACME.
set -eu

bin="${BRIDGEMESH_BIN:-/usr/local/bin/bridgemesh}"
state_dir="${BRIDGEMESH_STATE_DIR:-/var/lib/bridgemesh}"

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- up "$@"
fi

public=""
if [ "$1" = up ]; then
    if [ -n "${BRIDGEMESH_DOMAIN:-}" ] || [ -n "${BRIDGEMESH_CONFIG:-}" ]; then
        public=yes
    fi
    for arg in "$@"; do
        case "$arg" in
            --domain|--domain=*|--config|--config=*) public=yes ;;
        esac
    done
fi

if [ -n "$public" ]; then
    if ! mkdir -p "$state_dir" 2>/dev/null || [ ! -d "$state_dir" ]; then
        echo "bridgemesh: the state directory $state_dir is missing and cannot be created by uid $(id -u);" \
             "mount a volume there (packaging/compose.yaml uses a named volume)" >&2
        exit 64
    fi
    probe="$state_dir/.bridgemesh-write-check.$$"
    if ! (: >"$probe") 2>/dev/null; then
        echo "bridgemesh: the state directory $state_dir is not writable by uid $(id -u);" \
             "give it to that user (chown -R $(id -u) on the host's directory) or use a named volume" >&2
        exit 64
    fi
    rm -f "$probe"
fi

exec "$bin" "$@"
