#!/usr/bin/env bash
# Builds Dockerfile.serve and Dockerfile.train without a Docker daemon: buildah with chroot isolation
# and the host's network (docs/deploy.md, "Build without Docker"). Idempotent: the Python base is
# made once and cached, and buildah's layer cache keeps torch and the dependencies between runs.
#
#   scripts/build-images.sh [serve] [train]     # both by default
#
# Environment (each optional):
#   TAG                 image tag (dev): localhost/visearch-serve:$TAG, localhost/visearch-train:$TAG
#   PYTHON_IMAGE        a Python 3.11/3.12 base to build on; unset: a Debian bookworm base made with
#                       debootstrap (no registry is needed), cached in $VISEARCH_IMAGE_CACHE
#   VISEARCH_IMAGE_CACHE  where that base's root filesystem tarball is kept (~/.cache/visearch-images)
#   DEBIAN_MIRROR       the mirror debootstrap uses (default: the one apt uses here)
#   TORCH_INDEX_URL     torch's index; default PyTorch's CPU index, or, where that is unreachable,
#                       the package index (PyPI's CUDA build: works on CPU, ~4 GB larger)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS   default: this machine's pip configuration;
#                       local folders among them (file:// or paths) are mounted read-only into the build
#   CA_BUNDLE           CA bundle for TLS inside the build (default: the system's), as the `ca` secret
#   BUILD_STATS         a file to append "<image> <seconds> <bytes>" lines to (the image test reads it)
#   PRUNE               1 (default): remove dangling images after the build (earlier builds' leftovers)
# Installs podman, buildah and debootstrap with apt when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-dev}
CACHE=${VISEARCH_IMAGE_CACHE:-$HOME/.cache/visearch-images}
BASE_NAME=localhost/visearch-python:3.11-bookworm
images=("$@")
[ "${#images[@]}" -gt 0 ] || images=(serve train)

log() { echo "build-images: $*" >&2; }

# --- tools -----------------------------------------------------------------------------------
tools=(podman buildah)
[ -n "${PYTHON_IMAGE:-}" ] || tools+=(debootstrap)
missing=()
for t in "${tools[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then log "need root to install ${missing[*]}"; exit 1; fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the Python base: debootstrap'd bookworm (Python 3.11), no registry needed ----------------
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

if [ -z "${PYTHON_IMAGE:-}" ]; then
  PYTHON_IMAGE=$BASE_NAME
  tarball=$CACHE/python-3.11-bookworm.tar
  if ! podman image exists "$BASE_NAME"; then
    if [ ! -s "$tarball" ]; then
      mkdir -p "$CACHE"
      rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
      trap 'rm -rf "$rootfs"' EXIT
      log "debootstrap bookworm into $rootfs (about 2 minutes)"
      debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
        bookworm "$rootfs" "$(debian_mirror)" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
      # `python` as the official images name it; no package caches in the base.
      ln -sf python3 "$rootfs/usr/bin/python"
      rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      rm -rf "$rootfs"
      trap - EXIT
    fi
    log "importing $tarball as $BASE_NAME"
    podman import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      "$tarball" "$BASE_NAME" >/dev/null
  fi
fi

# --- package indexes: the machine's own, local folders mounted read-only ----------------------
pip_config() { python3 -m pip config get "global.$1" 2>/dev/null || true; }
PIP_INDEX_URL=${PIP_INDEX_URL:-$(pip_config index-url)}
PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}
PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-$(pip_config extra-index-url)}
PIP_FIND_LINKS=${PIP_FIND_LINKS:-$(pip_config find-links)}
volumes=()
for entry in $PIP_EXTRA_INDEX_URL $PIP_FIND_LINKS; do
  path=${entry#file://}
  if [ "${path:0:1}" = / ] && [ -e "$path" ]; then
    # an index folder's pages link to ../../files: mount the folder above `simple`
    [ "$(basename "$path")" = simple ] && path=$(dirname "$path")
    volumes+=(--volume "$path:$path:ro")
  fi
done
if [ -z "${TORCH_INDEX_URL:-}" ]; then
  TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
  if ! curl -fsS -o /dev/null --max-time 20 "$TORCH_INDEX_URL/torch/"; then
    log "$TORCH_INDEX_URL is unreachable: torch comes from $PIP_INDEX_URL (its CUDA build)"
    TORCH_INDEX_URL=$PIP_INDEX_URL
  fi
fi
secret=()
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$CA_BUNDLE" ] && secret=(--secret "id=ca,src=$CA_BUNDLE")
commit=$(git rev-parse HEAD 2>/dev/null || true)

# --- build ------------------------------------------------------------------------------------
args=(
  --layers --force-rm --format docker --isolation chroot --network host
  --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"
  --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL"
  --build-arg "PIP_INDEX_URL=$PIP_INDEX_URL"
  --build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL"
  --build-arg "PIP_FIND_LINKS=$PIP_FIND_LINKS"
  "${secret[@]}" "${volumes[@]}"
)
for image in "${images[@]}"; do
  name=localhost/visearch-$image:$TAG
  started=$(date +%s)
  log "building $name (PYTHON_IMAGE=$PYTHON_IMAGE TORCH_INDEX_URL=$TORCH_INDEX_URL)"
  # docker format: an OCI image config has no HEALTHCHECK (buildah drops it)
  extra=()
  [ "$image" != train ] || extra=(--build-arg "VISEARCH_GIT_COMMIT=$commit")
  buildah build "${args[@]}" "${extra[@]}" -f "Dockerfile.$image" -t "$name" .
  seconds=$(($(date +%s) - started))
  size=$(podman image inspect --format '{{.Size}}' "$name")
  log "$name: $((size / 1000000)) MB, built in ${seconds} s"
  [ -z "${BUILD_STATS:-}" ] || echo "$name $seconds $size" >>"$BUILD_STATS"
done
# The wheel stage by name (cached: seconds), so that pruning keeps it: the next build reuses it.
buildah build "${args[@]}" --target wheel -f "Dockerfile.${images[0]}" -t "localhost/visearch-wheel:$TAG" . >/dev/null
# What earlier builds left untagged (a replaced image and its own layers); PRUNE=0 keeps it. The
# layer cache survives: an image's layers are its parents, and a parent is never dangling.
if [ "${PRUNE:-1}" = 1 ]; then podman image prune -f >/dev/null; fi
