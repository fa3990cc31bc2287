#!/usr/bin/env bash
# System packages the full test suite needs (Debian): headless Chromium + driver for the UI test,
# PostgreSQL for the MLflow-server test, the Fashion-MNIST IDX files for `prepare fashion-mnist`,
# podman + buildah + debootstrap to build and run the images without a Docker daemon
# (scripts/build-images.sh, tests/deploy/test_images.py).
# Idempotent; run as root (CI and these dev machines are root). `make test` works without them:
# the tests that need them skip with a reason, except under CI=true where they must run.
set -euo pipefail
packages=(chromium chromium-driver postgresql dataset-fashion-mnist fonts-dejavu-core podman buildah debootstrap)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "system-deps: need root to install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "system-deps: ok"
