#!/bin/sh
# The official image builds Redis with protected mode off by default (a container is reached
# over its network, never on loopback); Debian's build has it on, so it is switched off here,
# ahead of the caller's own arguments, which can still turn it back on.
set -eu
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
