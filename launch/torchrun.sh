#!/usr/bin/env bash
# Data-parallel `samba` through torchrun: one process per GPU, every argument passed to samba.
#
#   launch/torchrun.sh train configs/train/my.yaml --run-dir runs/my          # all GPUs of this node
#   NPROC=4 launch/torchrun.sh train ...                                       # 4 processes
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 launch/torchrun.sh train ...       # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 launch/torchrun.sh train ...       # on node1
#
# Environment: NPROC (default: GPUs on this node, else 1), NNODES (1), NODE_RANK (0),
# MASTER_ADDR / MASTER_PORT (rendezvous of several nodes; default port 29500),
# SAMBA_BIN (default: build/samba next to this script), NCCL_NVLS_ENABLE (default 0: NVLink
# multicast off, see README).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
samba="${SAMBA_BIN:-$here/../build/samba}"
[ -x "$samba" ] || { echo "launch/torchrun.sh: $samba is not built (cmake --build build --target samba_cli) or set SAMBA_BIN" >&2; exit 2; }
command -v torchrun >/dev/null || { echo "launch/torchrun.sh: torchrun not found (pip install torch), or use launch/mpirun.sh" >&2; exit 2; }
if [ -z "${NPROC:-}" ]; then
  NPROC=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  [ "${NPROC:-0}" -gt 0 ] || NPROC=1
fi
NNODES="${NNODES:-1}"
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
if [ "$NNODES" -eq 1 ]; then
  rdzv=(--standalone)
else
  : "${MASTER_ADDR:?launch/torchrun.sh: set MASTER_ADDR to the first node when NNODES > 1}"
  rdzv=(--nnodes "$NNODES" --node-rank "${NODE_RANK:-0}" --master-addr "$MASTER_ADDR"
        --master-port "${MASTER_PORT:-29500}")
fi
# --no-python: samba is a native binary; torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*.
exec torchrun --no-python "${rdzv[@]}" --nproc-per-node "$NPROC" "$samba" "$@"
