#!/bin/bash
# One device call: configure (README's GPU build), build only the kernel targets, run the GPU
# kernel tests and the benchmarks. Logs go to $OUT. Usage: tests/kernels/run_gpu.sh [steps...]
#   steps: test (GPU op tests), bench (bench_kernels), train (bench_train_step samba-421m)
set -uo pipefail
OUT=${OUT:-/tmp/samba_gpu_out}
mkdir -p "$OUT"
steps=${*:-test bench}
targets="kernels_test_ops_gpu bench_kernels"
[[ " $steps " == *" train "* ]] && targets="$targets bench_train_step"
[[ " $steps " == *" unit "* ]] && targets="$targets unit_test_mamba kernels_test_selective_scan"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -40 "$OUT/cmake.log"; exit 1; }
ninja -C build -j16 $targets >"$OUT/build.log" 2>&1 || { grep -A12 -E "error|Error" "$OUT/build.log" | head -120; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
rc=0
for s in $steps; do
  case $s in
    test) build/tests/kernels_test_ops_gpu >"$OUT/test_gpu.log" 2>&1 || rc=1
          grep -E "^\[  (FAILED|PASSED) |FAILED|Failure|error|rel_err|Which is|Expected" "$OUT/test_gpu.log" | head -60
          tail -3 "$OUT/test_gpu.log"
          echo "-- the same tests with SAMBA_SCAN_FWD_STATES=4"
          SAMBA_SCAN_FWD_STATES=4 build/tests/kernels_test_ops_gpu >"$OUT/test_gpu_nt4.log" 2>&1 || rc=1
          grep -E "^\[  (FAILED|PASSED) " "$OUT/test_gpu_nt4.log" | head -20 ;;
    unit) build/tests/unit_test_mamba >"$OUT/unit.log" 2>&1 || rc=1; tail -3 "$OUT/unit.log"
          build/tests/kernels_test_selective_scan >>"$OUT/unit.log" 2>&1 || rc=1; tail -3 "$OUT/unit.log" ;;
    bench) build/bench/bench_kernels 8 3072 4096 16 10 2>&1 | tee "$OUT/bench_kernels.log"
           echo "-- SAMBA_SCAN_LOAD_BATCH=1 (one load in flight per thread)"
           SAMBA_SCAN_LOAD_BATCH=1 build/bench/bench_kernels 8 3072 4096 16 10 2>&1 | grep selective |
             tee -a "$OUT/bench_kernels.log"
           echo "-- SAMBA_SCAN_FWD_STATES=4 (4 states per forward thread)"
           SAMBA_SCAN_FWD_STATES=4 build/bench/bench_kernels 8 3072 4096 16 10 2>&1 | grep selective |
             tee -a "$OUT/bench_kernels.log" ;;
    ncu) ncu --clock-control none --metrics gpu__time_duration.sum -k "regex:scan|conv|sum_slices" -c 14 \
           build/bench/bench_kernels 8 3072 4096 16 1 >"$OUT/ncu.log" 2>&1
         grep -E "^  [a-z_:<>0-9A-Z]+.*\(|gpu__time_duration" "$OUT/ncu.log" | sed -E 's/\(int, int, int\)//' | cut -c1-110 ;;
    train) for mb in ${TRAIN_MB:-8}; do
             build/bench/bench_train_step configs/models/samba-421m.yaml "$mb" 4096 ${TRAIN_STEPS:-5} 2>&1 |
               tee -a "$OUT/bench_train.log"
           done ;;
  esac
done
exit $rc
