#!/usr/bin/env bash
# What one GPU-machine session runs (the device is scarce: build once, then test and measure).
#   bench/gpu_session.sh build   configure + build the CLI, benchmarks and the gpu-labelled tests
#   bench/gpu_session.sh test    gpu-labelled tests; samba train on the GPU through the data-parallel
#                                path (NCCL group forced at world 1, ZeRO-1), resume, deterministic twins
#   bench/gpu_session.sh bench   end-to-end step benchmarks next to the Python anchor (same call)
# Logs go to $OUT (the device tool's output folder) or ./gpu_out.
set -uo pipefail
MODE=${1:-all}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
B=build-gpu
export NCCL_NVLS_ENABLE=0

build() {
  local prefix
  prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B $B -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 ||
    { tail -40 "$OUT/cmake.log"; return 1; }
  local gpu_tests=${GPU_TESTS:-}
  [ -z "$gpu_tests" ] && gpu_tests=$(ninja -C $B -t targets all | sed -n 's/^\([a-z_]*_gpu\): .*/\1/p' | sort -u | tr '\n' ' ')
  echo "gpu test targets: $gpu_tests"
  local t0=$(date +%s)
  if ! ninja -C $B -j16 samba_cli bench_train_step $gpu_tests >"$OUT/build.log" 2>&1; then
    grep -E "error|FAILED" -A4 "$OUT/build.log" | head -60
    # A c10d/NCCL API mismatch must not cost the rest of the session: retry without NCCL.
    grep -q "comm.cpp" "$OUT/build.log" || return 1
    echo "retrying without the NCCL backend"
    cmake -S . -B $B -DSAMBA_NCCL_ROOT=/nonexistent >>"$OUT/cmake.log" 2>&1
    ninja -C $B -j16 samba_cli bench_train_step $gpu_tests >"$OUT/build2.log" 2>&1 ||
      { grep -E "error|FAILED" -A4 "$OUT/build2.log" | head -60; return 1; }
  fi
  echo "build: $(( $(date +%s) - t0 )) s"
}

synthetic_corpus() {  # a small corpus with structure, no network needed
  python3 - "$1" <<'PY'
import os, random, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); r = random.Random(7)
nouns = "cat dog river house teacher city garden letter window story mountain song".split()
verbs = "sees finds follows writes opens likes paints hears".split()
adjs = "old small green quiet bright cold distant".split()
for i in range(int(os.environ.get('DOCS', '120'))):
    with open(f"{d}/doc{i}.txt", "w") as f:
        f.write(" ".join(f"The {r.choice(adjs)} {r.choice(nouns)} {r.choice(verbs)} the {r.choice(nouns)}." for _ in range(300)) + "\n")
PY
}

test_gpu() {
  for t in ${GPU_TESTS:-}; do
    exe=$(find $B/tests -maxdepth 1 -name "$t" -type f | head -1)
    [ -n "$exe" ] && { timeout 120 "$exe" >"$OUT/$t.log" 2>&1; echo "$t rc=$? $(grep -E '^\[  (PASSED|FAILED)' "$OUT/$t.log" | tr '\n' ' ')"; }
  done
  [ -z "${GPU_TESTS:-}" ] && ctest --test-dir $B -L gpu --output-on-failure 2>&1 | tee "$OUT/ctest_gpu.log" | tail -25
  local w=/tmp/samba_gpu
  rm -rf $w && mkdir -p $w
  synthetic_corpus $w/corpus
  $B/samba data --input $w/corpus --out $w/ds --vocab-size 512 >"$OUT/data.log" 2>&1 || { tail "$OUT/data.log"; return 1; }
  cat >$w/model.yaml <<YAML
include: $PWD/configs/models/tiny-samba.yaml
vocab_size: 512
YAML
  for name in dp det1 det2; do
    extra=""
    [ "$name" = dp ] && extra="distributed: {zero1: true, bucket_mb: 1}"
    [ "$name" != dp ] && extra="deterministic: true"
    cat >$w/$name.yaml <<YAML
model: model.yaml
data: $w/ds
run_dir: $w/runs/$name
device: cuda
seed: 3
micro_batch: 8
global_batch_tokens: 16384
max_tokens: 655360
log_every: 10
eval_every: 20
checkpoint_every: 20
eval_tokens: 65536
optimizer: {lr: 0.003, min_lr: 0.0003, warmup_fraction: 0.05}
$extra
YAML
  done
  # The data-parallel path (NCCL group, hooks, ZeRO-1 reduce-scatter/all-gather) at world 1.
  SAMBA_COMM_FORCE_GROUP=1 torchrun --standalone --nproc-per-node 1 --no-python $B/samba train $w/dp.yaml --no-progress \
    --stop-after-steps 25 >"$OUT/train_dp.log" 2>&1; echo "dp train rc=$?"; tail -4 "$OUT/train_dp.log"
  SAMBA_COMM_FORCE_GROUP=1 torchrun --standalone --nproc-per-node 1 --no-python $B/samba train $w/dp.yaml --no-progress \
    --resume >>"$OUT/train_dp.log" 2>&1; echo "dp resume rc=$?"; tail -4 "$OUT/train_dp.log"
  for name in det1 det2; do
    $B/samba train $w/$name.yaml --no-progress >"$OUT/train_$name.log" 2>&1; echo "$name rc=$?"
  done
  python3 - $w <<'PY'
import json, sys
w = sys.argv[1]
def losses(n): return [json.loads(l)["loss"] for l in open(f"{w}/runs/{n}/metrics.jsonl") if '"loss"' in l]
a, b = losses("det1"), losses("det2")
print("deterministic twins:", len(a), "steps, bitwise equal losses:", a == b, "first/last", a[0], a[-1])
PY
  cmp $w/runs/det1/checkpoints/step_00000040/model.safetensors $w/runs/det2/checkpoints/step_00000040/model.safetensors &&
    echo "deterministic twins: final weights bitwise equal"
  cp $w/runs/dp/metrics.jsonl "$OUT/metrics_dp.jsonl" 2>/dev/null
}

bench() {
  python3 -c 'import torch;print(torch.cuda.get_device_name(0))'
  echo "| model | device | batch x seq | ms/step | tokens/s | MFU |"
  for m in ${BENCH_MODELS:-llama2-swa-438m samba-421m mamba-432m mamba-swa-mlp-400m}; do
    $B/bench_train_step configs/models/$m.yaml ${BENCH_BATCH:-8} 4096 ${BENCH_STEPS:-6} 2>&1 | tail -1
  done | tee "$OUT/bench_train_step.log"
  if [ -f .anchor/anchor_llama_swa.py ]; then
    PYTHONUNBUFFERED=1 timeout 300 python3 .anchor/anchor_llama_swa.py 8 2>&1 | tail -6 | tee "$OUT/anchor.log"
  fi
}

case $MODE in
  build) build ;;
  test) test_gpu ;;
  bench) bench ;;
  all) build && test_gpu && bench ;;
esac
