#!/usr/bin/env bash
# Issue 11 acceptance on the GPU machine (torch + transformers 5.x + safetensors, no network):
#   1. tiny Llama-2, Llama-2-SWA and Mamba models (random init) exported with --format hf load in
#      transformers as LlamaForCausalLM / MistralForCausalLM / MambaForCausalLM with the same
#      logits as ours (max |diff| < 1e-4, fp32);
#   2. random transformers Llama / Mistral / Mamba checkpoints imported with `samba import` give
#      the same logits in our model, and exported back with --format hf load with the same logits.
# Builds nothing: pass the samba binary (default build/samba). Exit status 0 = all checks passed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SAMBA=${1:-$ROOT/build/samba}
PY="python3 $ROOT/tests/tools/check_hf_exports.py"
if [ ! -x "$SAMBA" ]; then
  echo "error: $SAMBA is not an executable; build it first (cmake --build build --target samba_cli)" >&2
  exit 2
fi
python3 -c "import torch, transformers, safetensors; print('transformers', transformers.__version__, 'torch', torch.__version__)" || {
  echo "error: python3 needs torch, transformers and safetensors" >&2
  exit 2
}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export CUDA_VISIBLE_DEVICES=""  # everything on CPU in fp32: the comparison is about layouts, not kernels
failures=0
step() {  # step <description> <command...>
  local what=$1
  shift
  if ! "$@"; then
    echo "FAIL: $what" >&2
    failures=$((failures + 1))
  fi
}

# 200 tokens: longer than the tiny SWA window (128), so the window is exercised.
TOKENS=$(python3 -c "import random; r = random.Random(0); print(','.join(str(r.randrange(4000)) for _ in range(200)))")
SMALL=$(python3 -c "import random; r = random.Random(1); print(','.join(str(r.randrange(97)) for _ in range(40)))")

# 1. our exports in transformers
for pair in tiny-llama2:LlamaForCausalLM tiny-llama2-swa:MistralForCausalLM tiny-mamba:MambaForCausalLM; do
  name=${pair%%:*} cls=${pair##*:}
  step "export $name" "$SAMBA" export --init "$ROOT/configs/models/$name.yaml" --seed 1 --format hf \
    --logits-for "$TOKENS" --out "$WORK/$name"
  step "transformers loads $name as $cls with our logits" $PY compare "$WORK/$name" "$cls"
done

# 2. transformers checkpoints into samba and back
for pair in llama:LlamaForCausalLM mistral:MistralForCausalLM mamba:MambaForCausalLM; do
  fam=${pair%%:*} cls=${pair##*:}
  step "make random HF $fam" $PY make "$fam" "$WORK/hf-$fam" "$SMALL"
  step "samba import $fam" "$SAMBA" import "$WORK/hf-$fam" --logits-for "$SMALL" --out "$WORK/imported-$fam"
  step "imported $fam gives transformers' logits" $PY same-logits "$WORK/imported-$fam/logits.safetensors" \
    "$WORK/hf-$fam/hf_logits.safetensors"
  step "samba import --format hf $fam" "$SAMBA" import "$WORK/hf-$fam" --format hf --logits-for "$SMALL" \
    --out "$WORK/reexported-$fam"
  step "re-exported $fam loads in transformers with the same logits" $PY compare "$WORK/reexported-$fam" "$cls"
done

if [ "$failures" -ne 0 ]; then
  echo "check_hf_exports: $failures check(s) failed" >&2
  exit 1
fi
echo "check_hf_exports: all checks passed"
