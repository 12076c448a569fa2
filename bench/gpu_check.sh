#!/usr/bin/env bash
# One short GPU call after kernel changes: build, every gpu-labelled test, the step benchmarks
# next to the Python anchor. (gpu_session.sh has the longer modes.)
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT" .anchor
# .anchor/anchor_llama_swa.py: ../shared/bench/anchor_llama_swa.py, carried (git-ignored)
bash bench/gpu_session.sh build | tail -1 || exit 1
ctest --test-dir build-gpu -L gpu -j4 --timeout 300 >"$OUT/ctest_gpu.log" 2>&1
echo "ctest -L gpu rc=$?"; grep -E "tests passed|Failed|\*\*\*" "$OUT/ctest_gpu.log" | head -20
bash bench/gpu_session.sh bench 2>&1 | tail -12
