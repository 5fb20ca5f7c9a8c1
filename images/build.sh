#!/bin/sh
# `make images`: the containers provider's images, built without a registry.
#
#   base                a Debian bookworm root made by debootstrap and `docker import`ed
#                       (skipped when the image exists: delete it to rebuild)
#   python              the base plus Debian's python3 (shared by ryuk and the emulator)
#   postgres, redis     Debian's postgresql / redis-server, configured like the upstream images
#   ryuk                a reaper that speaks testcontainers' Ryuk protocol (images/ryuk/reaper.py)
#   servicebus-emulator this project's emulator (python -m emulator.servicebus)
#
# Each image is named sbh/<name>:<tag>; postgres, redis and ryuk are also tagged with the pinned
# upstream names the containers provider uses by default (IMAGES_TAG_UPSTREAM=auto: only names
# the engine does not hold yet, so a pulled upstream image is never replaced; 1: always; 0: never).
# Environment: DOCKER (the CLI), IMAGES (which to build), DEBIAN_MIRROR, IMAGES_CA_BUNDLE,
# IMAGES_PIP_INDEX_URL, and the image names below.
set -eu

cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG_UPSTREAM=${IMAGES_TAG_UPSTREAM:-auto}
WANTED=${IMAGES:-postgres redis ryuk servicebus-emulator}
# pip in the emulator's build trusts this CA bundle (a TLS-inspecting proxy's CA); default: the
# one pip, Python or requests here are told to use, if any.
CA_BUNDLE=${IMAGES_CA_BUNDLE-${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-}}}}

BASE_IMAGE=${BASE_IMAGE:-sbh/debian:bookworm}
PYTHON_IMAGE=${PYTHON_IMAGE:-sbh/python:3.11-bookworm}
POSTGRES_LOCAL=${POSTGRES_LOCAL:-sbh/postgres:15-bookworm}
REDIS_LOCAL=${REDIS_LOCAL:-sbh/redis:7-bookworm}
RYUK_LOCAL=${RYUK_LOCAL:-sbh/ryuk:0.8.1}
EMULATOR_IMAGE=${EMULATOR_IMAGE:-sbh/servicebus-emulator:latest}
# What the provider and testcontainers look for by default (harness/stack/services.py,
# testcontainers' RYUK_CONTAINER_IMAGE).
POSTGRES_UPSTREAM=${POSTGRES_UPSTREAM:-postgres:16-alpine}
REDIS_UPSTREAM=${REDIS_UPSTREAM:-redis:7-alpine}
RYUK_UPSTREAM=${RYUK_UPSTREAM:-testcontainers/ryuk:0.8.1}

LABEL=org.sbh.local-build  # on every image built here (set on the base, inherited)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "make images: $*" >&2; exit 1; }
present() { "$DOCKER" image inspect --format '{{.Id}}' "$1" >/dev/null 2>&1; }

"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    fail "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); start one or set DOCKER_HOST"

LOG=$(mktemp "${TMPDIR:-/tmp}/sbh-images.XXXXXX")
trap 'rm -f "$LOG"' EXIT

build() {  # build <name> <context: a directory, or - for a tar on stdin> [docker build args...]
    name=$1 context=$2
    shift 2
    started=$(now)
    "$DOCKER" build --force-rm --network host --tag "$name" "$@" "$context" >"$LOG" 2>&1 ||
        { tail -n 25 "$LOG" >&2; fail "building $name failed (the last lines of its log are above)"; }
    echo "built $name in $(since "$started")s"
}

ours() { [ "$("$DOCKER" image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1")" = true ]; }

tag_upstream() {  # tag_upstream <local name> <upstream name> <variable that names the image>
    case $TAG_UPSTREAM in
        0 | no | false) return ;;
        1 | yes | true) ;;
        auto)
            if present "$2" && ! ours "$2"; then
                echo "  $2 is on the engine and not ours: left alone (to use ours: $3=$1)"
                return
            fi ;;
        *) fail "IMAGES_TAG_UPSTREAM=$TAG_UPSTREAM: choose auto, 1 or 0" ;;
    esac
    "$DOCKER" tag "$1" "$2"
    echo "  tagged $1 as $2"
}

# -- base: debootstrap once ---------------------------------------------------------------------
if present "$BASE_IMAGE"; then
    echo "base $BASE_IMAGE: on the engine, not rebuilt ($DOCKER rmi $BASE_IMAGE to rebuild)"
else
    command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install -y debootstrap)"
    [ "$(id -u)" = 0 ] || fail "debootstrap needs root to make $BASE_IMAGE"
    started=$(now)
    root=$(mktemp -d "${TMPDIR:-/tmp}/sbh-base.XXXXXX")
    trap 'rm -rf "$root" "$LOG"' EXIT
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
        { tail -5 "$root.log" >&2; rm -f "$root.log"; fail "debootstrap bookworm from $MIRROR failed"; }
    rm -f "$root.log"
    cp images/base/sources.list "$root/etc/apt/sources.list"
    cp images/base/dpkg-excludes "$root/etc/dpkg/dpkg.cfg.d/excludes"
    cp images/base/apt-slim "$root/etc/apt/apt.conf.d/90sbh-slim"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'CMD ["bash"]' --change "LABEL $LABEL=true" - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    trap 'rm -f "$LOG"' EXIT
    echo "built $BASE_IMAGE (debootstrap + import) in $(since "$started")s"
fi

case " $WANTED " in *" ryuk "* | *" servicebus-emulator "*)
    build "$PYTHON_IMAGE" images/python --build-arg "BASE_IMAGE=$BASE_IMAGE" ;;
esac

for image in $WANTED; do
    case $image in
        postgres)
            build "$POSTGRES_LOCAL" images/postgres --build-arg "BASE_IMAGE=$BASE_IMAGE"
            tag_upstream "$POSTGRES_LOCAL" "$POSTGRES_UPSTREAM" SBH_POSTGRES_IMAGE ;;
        redis)
            build "$REDIS_LOCAL" images/redis --build-arg "BASE_IMAGE=$BASE_IMAGE"
            tag_upstream "$REDIS_LOCAL" "$REDIS_UPSTREAM" SBH_REDIS_IMAGE ;;
        ryuk)
            build "$RYUK_LOCAL" images/ryuk --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
            tag_upstream "$RYUK_LOCAL" "$RYUK_UPSTREAM" RYUK_CONTAINER_IMAGE ;;
        servicebus-emulator)
            # The context is the project's emulator only: the Dockerfile, pyproject.toml (its
            # dependencies), emulator/ and the default Config.json.
            # .build/ca.pem: the CA bundle pip trusts in the build (only in its first stage).
            stage=$(mktemp -d "${TMPDIR:-/tmp}/sbh-emulator-context.XXXXXX")
            mkdir "$stage/.build"
            if [ -n "$CA_BUNDLE" ]; then
                cp "$CA_BUNDLE" "$stage/.build/ca.pem" || fail "cannot read IMAGES_CA_BUNDLE=$CA_BUNDLE"
            else
                : >"$stage/.build/ca.pem"
            fi
            tar -c --exclude=__pycache__ --exclude='*.pyc' \
                images/servicebus-emulator pyproject.toml emulator config/Config.json \
                -C "$stage" .build |
                build "$EMULATOR_IMAGE" - -f images/servicebus-emulator/Dockerfile \
                    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
                    ${IMAGES_PIP_INDEX_URL:+--build-arg "PIP_INDEX_URL=$IMAGES_PIP_INDEX_URL"}
            rm -rf "$stage" ;;
        *) fail "unknown image $image (choose from: postgres redis ryuk servicebus-emulator)" ;;
    esac
done
