#!/usr/bin/env bash
# Data-parallel `samba` through OpenMPI's mpirun (mpirun only starts the processes; samba
# talks over c10d: NCCL on GPUs, Gloo on CPU).
#
#   NP=8 launch/mpirun.sh train configs/train/my.yaml --run-dir runs/my          # one node
#   NP=16 HOSTFILE=hosts launch/mpirun.sh train ...      # hosts: "node0 slots=8" per line
#
# Environment: NP (default: GPUs on this node, else 2), HOSTFILE (several nodes; rank 0 runs on
# its first host, which becomes MASTER_ADDR), MASTER_ADDR / MASTER_PORT (default: that host or
# 127.0.0.1, port 29500), MPIRUN_ARGS (extra mpirun flags, e.g. --oversubscribe),
# SAMBA_BIN (default: build/samba next to this script), NCCL_NVLS_ENABLE (default 0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
samba="${SAMBA_BIN:-$here/../build/samba}"
[ -x "$samba" ] || { echo "launch/mpirun.sh: $samba is not built (cmake --build build --target samba_cli) or set SAMBA_BIN" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "launch/mpirun.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 2; }
if [ -z "${NP:-}" ]; then
  NP=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NP:-0}" -gt 0 ] || NP=2
fi
args=(-np "$NP" --bind-to none)
if [ -n "${HOSTFILE:-}" ]; then
  args+=(--hostfile "$HOSTFILE")
  : "${MASTER_ADDR:=$(awk '!/^[[:space:]]*(#|$)/ {print $1; exit}' "$HOSTFILE")}"
fi
export MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
export MASTER_PORT="${MASTER_PORT:-29500}"
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
# OpenMPI refuses to start as root unless told (containers and CI run as root).
[ "$(id -u)" -ne 0 ] || args+=(--allow-run-as-root)
# shellcheck disable=SC2206
extra=(${MPIRUN_ARGS:-})
args+=(-x MASTER_ADDR -x MASTER_PORT -x NCCL_NVLS_ENABLE -x PATH)
[ -z "${LD_LIBRARY_PATH:-}" ] || args+=(-x LD_LIBRARY_PATH)
exec mpirun "${args[@]}" "${extra[@]}" "$samba" "$@"
