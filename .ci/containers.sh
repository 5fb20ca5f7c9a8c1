#!/usr/bin/env bash
# CI's container part (issue 13, point 5), run by .ci/run after `make test`, as root.
#
# The containers stack needs a Docker engine and images no registry here can provide, so:
#   1. use the engine that answers (DOCKER_HOST, the usual sockets, or ours left running);
#      else install Debian's docker.io (and debootstrap, which `make images` needs for its base)
#      when missing and start dockerd on a private socket; its data root is kept between runs
#      so the images built are reused (`make images` rebuilds only what changed);
#   2. `make images`, `make test-containers` (the provider and module tests, failing rather
#      than skipping without the images), and the whole scenario suite with --stack containers
#      (`make test-integration-containers`);
#   3. stop the engine it started, on any exit (a failure or a signal too), and check that no
#      dockerd / containerd of it is left; an engine that was already running is left alone.
# Environment: SBH_CI_ENGINE_DIR (socket, pid file and log; default /run/sbh-ci-docker),
# SBH_CI_DOCKER_ROOT (the data root; default /var/lib/sbh-ci-docker), SBH_CI_ENGINE_TIMEOUT (s).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE_DIR=${SBH_CI_ENGINE_DIR:-/run/sbh-ci-docker}
DATA_ROOT=${SBH_CI_DOCKER_ROOT:-/var/lib/sbh-ci-docker}
ENGINE_TIMEOUT=${SBH_CI_ENGINE_TIMEOUT:-60}
SOCKET=$ENGINE_DIR/docker.sock
PIDFILE=$ENGINE_DIR/dockerd.pid
ENGINE_LOG=$ENGINE_DIR/dockerd.log
DOCKERD_PID=

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "ci containers: $*"; }
fail() { echo "ci containers: FAILED: $*" >&2; exit 1; }
TOTAL_STARTED=$(now)

# -- the engine -------------------------------------------------------------------------------

answers() {  # answers <DOCKER_HOST value>: the engine there answers /_ping within 5 s
    DOCKER_HOST=$1 timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

find_engine() {  # sets DOCKER_HOST to an engine that answers; false when none does
    local candidate
    for candidate in ${DOCKER_HOST:-} unix:///var/run/docker.sock "unix://$SOCKET"; do
        if answers "$candidate"; then
            export DOCKER_HOST=$candidate
            return 0
        fi
    done
    return 1
}

install_packages() {  # install_packages [package...]: default, what is missing of the engine's
    local wanted=("$@") started
    if [ ${#wanted[@]} = 0 ]; then
        command -v dockerd >/dev/null || wanted+=(docker.io)
        command -v debootstrap >/dev/null || wanted+=(debootstrap)
    fi
    [ ${#wanted[@]} -gt 0 ] || return 0
    started=$(now)
    log "installing ${wanted[*]} (apt-get)"
    # No service may start from a package's postinst: this script owns the engine's lifetime.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local apt_log
    apt_log=$(mktemp)
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${wanted[@]}"; } \
        >"$apt_log" 2>&1; then
        tail -n 20 "$apt_log" >&2
        [ $made_policy = 0 ] || rm -f $policy
        fail "apt-get install ${wanted[*]} failed (the last lines of its log are above)"
    fi
    [ $made_policy = 0 ] || rm -f $policy
    rm -f "$apt_log"
    log "installed ${wanted[*]} in $(since "$started") s"
}

start_engine() {
    local started
    started=$(now)
    mkdir -p "$ENGINE_DIR" "$DATA_ROOT"
    rm -f "$SOCKET" "$PIDFILE"
    # Its own session, so stopping it reaches nothing else; containerd is its managed child.
    setsid dockerd --host "unix://$SOCKET" --data-root "$DATA_ROOT" \
        --exec-root "$ENGINE_DIR/exec" --pidfile "$PIDFILE" >"$ENGINE_LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
    local deadline
    deadline=$(awk -v s="$(date +%s)" -v t="$ENGINE_TIMEOUT" 'BEGIN { print s + t }')
    until answers "unix://$SOCKET"; do
        if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
            tail -n 20 "$ENGINE_LOG" >&2
            DOCKERD_PID=
            fail "dockerd exited before answering (the last lines of $ENGINE_LOG are above)"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -n 20 "$ENGINE_LOG" >&2
            fail "dockerd did not answer on unix://$SOCKET within ${ENGINE_TIMEOUT} s"
        fi
        sleep 0.2
    done
    DOCKERD_PID=$(cat "$PIDFILE" 2>/dev/null || echo "$DOCKERD_PID")
    export DOCKER_HOST=unix://$SOCKET
    log "engine started in $(since "$started") s (dockerd pid $DOCKERD_PID, $DOCKER_HOST," \
        "data root $DATA_ROOT)"
}

stop_engine() {  # the engine this script started, with its containerd; checked gone
    [ -n "$DOCKERD_PID" ] || return 0
    local pid=$DOCKERD_PID started
    DOCKERD_PID=
    started=$(now)
    # Every process of its session: dockerd, its containerd and their shims (by session id).
    session_pids() { ps -e -o pid=,sid= | awk -v s="$pid" '$2 == s { print $1 }'; }
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 150 ]; do  # 30 s: it stops containers
        sleep 0.2
        waited=$((waited + 1))
    done
    local left
    left=$(session_pids)
    if [ -n "$left" ]; then
        log "engine: killing what is left of its session: $(echo $left)"
        kill -KILL $left 2>/dev/null || true
        sleep 0.5
    fi
    left=$(session_pids)
    rm -f "$SOCKET"
    if [ -n "$left" ]; then
        log "engine: WARNING: processes still running: $(ps -o pid=,comm= -p "$(echo $left | tr ' ' ,)")"
        return 1
    fi
    log "engine stopped in $(since "$started") s (no dockerd / containerd of it left)"
}

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    stop_engine || status=1
    if [ $status = 0 ]; then
        log "done in $(since "$TOTAL_STARTED") s"
    else
        log "FAILED (exit $status) after $(since "$TOTAL_STARTED") s"
    fi
    exit $status
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if find_engine; then
    log "engine already running at $DOCKER_HOST: using it, leaving it running"
    command -v debootstrap >/dev/null || install_packages debootstrap
else
    install_packages
    start_engine
fi

# -- images and tests -------------------------------------------------------------------------

make --no-print-directory setup
started=$(now)
make --no-print-directory images
log "images built in $(since "$started") s"

started=$(now)
make --no-print-directory test-containers
log "provider and module tests passed in $(since "$started") s"

started=$(now)
make --no-print-directory test-integration-containers
log "scenario suite (--stack containers) passed in $(since "$started") s"
