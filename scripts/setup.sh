#!/usr/bin/env bash
# Installs everything the pipeline and its tests need on a fresh Debian/Ubuntu machine or Colab:
# system packages (ffmpeg, espeak-ng for the sample corpus, chromium for the browser test) and the
# Python requirements. Safe to rerun: it does nothing when the requirements have not changed.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=".cache/setup-$(cat requirements.txt requirements-dev.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "setup: already done ($stamp)"
  exit 0
fi

apt_packages="ffmpeg espeak-ng chromium sox"
missing=""
for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: apt-get install$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

# torch is not pinned in requirements.txt (Colab ships its own). Where none is installed, take the
# CPU build: a bare `pip install torch` would pull a multi-GB CUDA build.
if ! python3 -c "import torch" 2>/dev/null; then
  python3 -m pip install -q "torch==2.13.0" \
    || python3 -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
python3 -m pip install -q -r requirements-dev.txt
mkdir -p .cache && touch "$stamp"
echo "setup: done"
