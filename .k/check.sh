#!/usr/bin/env bash
# One device call: build, scan tests on both pipelined backwards, op tests, kernel and step benchmarks, det twins.
set -uo pipefail
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
B=build-gpu
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
cmake -S . -B $B -G Ninja -DCMAKE_PREFIX_PATH=$prefix -DCMAKE_CUDA_ARCHITECTURES=90 >$OUT/cmake.log 2>&1
ninja -C $B -j16 samba_cli bench_kernels bench_train_step kernels_test_scan_pipe_gpu kernels_test_ops_gpu >$OUT/build.log 2>&1 ||
  { grep -E "error" -A3 $OUT/build.log | head -30; exit 1; }
echo "build $(el) s"
$B/tests/kernels_test_scan_pipe_gpu >$OUT/scan2.log 2>&1; echo "scan pipe (v2) rc=$? $(grep -E '^\[  (PASSED|FAILED)' $OUT/scan2.log | tr '\n' ' ')"
grep -E "Failure|rel_err|Expected|actual|Which is" $OUT/scan2.log | head -12
SAMBA_SCAN_BWD=1 $B/tests/kernels_test_scan_pipe_gpu >$OUT/scan1.log 2>&1; echo "scan pipe (v1) rc=$? $(grep -E '^\[  (PASSED|FAILED)' $OUT/scan1.log | tr '\n' ' ')"
$B/tests/kernels_test_ops_gpu >$OUT/ops.log 2>&1; echo "ops gpu rc=$? $(grep -E '^\[  (PASSED|FAILED)' $OUT/ops.log | tr '\n' ' ')"
grep -E "^\[  FAILED" $OUT/ops.log | head
echo "tests $(el) s"
bk=$B/bench/bench_kernels
echo "== v2"; $bk 8 3072 4096 16 10 2>&1 | grep -E "^\| selective"
echo "== v1"; SAMBA_SCAN_BWD=1 $bk 8 3072 4096 16 10 2>&1 | grep -E "^\| selective"
for m in samba-421m mamba-432m; do $B/bench/bench_train_step configs/models/$m.yaml 8 4096 6 2>&1 | tail -1; done
echo "bench $(el) s"
[ $(el) -gt 330 ] && { echo "skipping det twins"; exit 0; }
export B OUT GPU_TESTS=none
# det twins + kill/resume only (gpu_session's test minus ctest and the dp path)
w=/tmp/samba_gpu; rm -rf $w && mkdir -p $w
source <(sed -n '/^synthetic_corpus()/,/^}/p' bench/gpu_session.sh)
synthetic_corpus $w/corpus
$B/samba data --input $w/corpus --out $w/ds --vocab-size 512 >$OUT/data.log 2>&1
printf 'include: %s\nvocab_size: 512\n' "$PWD/configs/models/tiny-samba.yaml" >$w/model.yaml
for name in det1 det2; do
  printf 'model: model.yaml\ndata: %s\nrun_dir: %s\ndevice: cuda\nseed: 3\nmicro_batch: 8\nglobal_batch_tokens: 16384\nmax_tokens: 655360\nlog_every: 10\neval_every: 20\ncheckpoint_every: 20\neval_tokens: 65536\noptimizer: {lr: 0.003, min_lr: 0.0003, warmup_fraction: 0.05}\ndeterministic: true\n' $w/ds $w/runs/$name >$w/$name.yaml
  $B/samba train $w/$name.yaml --no-progress >$OUT/train_$name.log 2>&1; echo "$name rc=$?"
done
python3 -c "
import json
l=lambda n:[json.loads(x)['loss'] for x in open('$w/runs/'+n+'/metrics.jsonl') if '\"loss\"' in x]
a,b=l('det1'),l('det2'); print('det twins', len(a), 'steps, bitwise equal:', a==b, a[0], a[-1])"
cmp $w/runs/det1/checkpoints/step_00000040/model.safetensors $w/runs/det2/checkpoints/step_00000040/model.safetensors && echo "final weights bitwise equal"
echo "end $(el) s"
