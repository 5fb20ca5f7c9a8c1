#!/bin/sh
# redis-server on all interfaces with protected mode off, as the upstream image runs it.
set -eu
case "${1:-redis-server}" in
    redis-server) [ "$#" -gt 0 ] && shift ;;
    -*) ;;
    *) exec "$@" ;;
esac
exec redis-server --bind '* -::*' --protected-mode no --dir /data "$@"
