#!/usr/bin/env bash
# The short ablations that chose shapes-tiny v2's recipe (the table in its model card).
#
#   bash scripts/shapes_tiny_ablations.sh        # ≈ 2 h on 2 CPU cores (two runs at a time, one thread each)
#
# Every run trains a UNet and text encoder from scratch for the same number of steps (the same data seed and
# schedule) on one shared VAE (the VAE of the v1 model, taken with --vae-from), so that only the recipe differs.
# D has cross-attention at 16×16 too, which costs ≈ 2× per step: it gets half the steps, so its CPU time matches.
# Then `compare` evaluates every exported pipeline on held-out seed 1 (the model card measures on seed 0) and
# writes runs/train/ablations/ablations.json, from which the card's table is made (copy it next to the model).
# Checkpoints every 250 steps: rerunning the script resumes each run where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=runs/train/ablations
VAE=${VAE:-runs/train/v1-pipeline}   # a pipeline directory whose VAE the runs share
VAE_COMMIT=${VAE_COMMIT:-a1ce1ff}     # by default v1's VAE, taken from the git commit that added it
STEPS=${STEPS:-2000}
mkdir -p "$OUT"
if [ ! -f "$VAE/vae/diffusion_pytorch_model.safetensors" ] && [ "$VAE" = runs/train/v1-pipeline ]; then
  mkdir -p "$VAE/vae"
  for f in config.json diffusion_pytorch_model.safetensors; do
    git show "$VAE_COMMIT:infodecomp/assets/shapes-tiny/vae/$f" > "$VAE/vae/$f"
  done
fi
[ -f "$VAE/vae/diffusion_pytorch_model.safetensors" ] || { echo "no VAE at $VAE/vae: set VAE=<a pipeline directory> (its VAE is used)"; exit 2; }

COMMON="--seed 0 --vae-steps 0 --vae-from $VAE --lr-decay cosine --lr-final 0.02 --threads 1"
declare -A RECIPE=(
  [A-v1]="--unet-steps $STEPS"
  [B-mask]="--unet-steps $STEPS --text-mask words"
  [C-mask-relations]="--unet-steps $STEPS --text-mask words --relation-boost 0.2 --counterfactual 1.0"
  [D-mask-relations-attn16]="--unet-steps $((STEPS / 2)) --text-mask words --relation-boost 0.2 --counterfactual 1.0 --attention-16"
)

run() {  # train (resumes) and export one recipe
  local name=$1
  OMP_NUM_THREADS=1 "$PY" -m infodecomp.training train --work-dir "$OUT/$name" $COMMON ${RECIPE[$name]} > "$OUT/$name.log" 2>&1
  [ -f "$OUT/$name/pipeline/model_index.json" ] || \
    OMP_NUM_THREADS=1 "$PY" -m infodecomp.training export --work-dir "$OUT/$name" $COMMON ${RECIPE[$name]} \
      --no-ema --out "$OUT/$name/pipeline" >> "$OUT/$name.log" 2>&1
  echo "done: $name"
}

run A-v1 & run B-mask & wait
run C-mask-relations & run D-mask-relations-attn16 & wait
"$PY" -m infodecomp.training compare "$OUT"/{A-v1,B-mask,C-mask-relations,D-mask-relations-attn16}/pipeline \
  --n "${EVAL_N:-96}" --seed 1 --out "$OUT/ablations.json"
