#!/usr/bin/env bash
# On the GPU machine: builds the samba binary, prepares a small dataset and starts every
# Table 3 variant at paper size for 3 steps through `samba ablate`
# (configs/ablations/table3-421m-smoke.yaml), then prints the table (speed, ppl at 4K/8K/16K
# on one block: a smoke test, not a result).
#   scripts/gpu/table3_smoke.sh                 # all ten variants
#   scripts/gpu/table3_smoke.sh llama2,samba    # some (samba ablate --only); rerun to continue
# The corpus is data/corpus/brown when present (carry it), otherwise generated text.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build-gpu}
ONLY=${1:-}
if [ ! -x "$BUILD/samba" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')" \
    -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
fi
cmake --build "$BUILD" --target samba_cli -j"$(nproc)"

DATA=data/cache/smoke-4k
if [ ! -f "$DATA/dataset.json" ]; then
  CORPUS=data/corpus/brown
  VOCAB=4096
  if [ ! -d "$CORPUS" ]; then
    # ~70 distinct words: BPE cannot make more than a few hundred pieces out of them.
    VOCAB=512
    # Enough generated text for validation blocks of 16,385 tokens.
    CORPUS=data/corpus/generated
    mkdir -p "$CORPUS"
    python3 - "$CORPUS" <<'PY'
import random, sys, os
random.seed(1)
words = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
         "but have an they you were her she there been one all we their has would when if so no will "
         "river house garden letter teacher city morning window story music water light paper").split()
for d in range(300):
    with open(os.path.join(sys.argv[1], f"doc{d:03d}.txt"), "w") as f:
        for s in range(400):
            n = random.randint(5, 14)
            f.write(" ".join(random.choice(words) for _ in range(n)).capitalize() + ". ")
        f.write("\n")
PY
  fi
  "$BUILD/samba" data --input "$CORPUS" --out "$DATA" --vocab-size "$VOCAB" --val-fraction 0.1
fi
args=(configs/ablations/table3-421m-smoke.yaml)
[ -n "$ONLY" ] && args+=(--only "$ONLY")
"$BUILD/samba" ablate "${args[@]}"
