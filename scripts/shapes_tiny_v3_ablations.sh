#!/usr/bin/env bash
# The short ablations that choose shapes-tiny v3's recipe (the table in its model card): a UNet trained on a
# frozen, contrastively pretrained text encoder (ShapesCLIP), as Stable Diffusion is built.
#
#   bash scripts/shapes_tiny_v3_ablations.sh            # ≈ 2.5 h on 2 CPU cores (up to two jobs at a time, one thread each)
#   bash scripts/shapes_tiny_v3_ablations.sh F-hard     # one run (train, export, evaluate) and nothing else
#
# 1. ShapesCLIP, two recipes (python -m infodecomp.training.shapesclip): plain contrastive ("plain") and contrastive with
#    hard negatives ("hard": relation flip, subject–object swap, attribute swap, word-order shuffle), 6,000 steps
#    each, evaluated by retrieval on the ARO twins and by its text encoder's relation-flip ratio (held-out seed 0).
# 2. UNets, from scratch, all for the same STEPS (same data seed, schedule and VAE: v1's, taken from the git commit
#    that added it), differing only in the recipe; each ≤ 30 CPU-minutes. Each is exported and evaluated on held-out
#    seed 1 (`python -m infodecomp.training compare`; the card measures on seed 0), its evaluation file kept in
#    EVALS (committed), and the table written to EVALS/ablations.json.
# Checkpoints every 250 steps: rerunning the script resumes each run where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RUNS=runs/train/v3
EVALS=${EVALS:-infodecomp/assets/shapes-tiny/ablations}
VAE=runs/train/v1-pipeline
VAE_COMMIT=${VAE_COMMIT:-a1ce1ff}   # shapes-tiny v1, whose VAE v2 and v3 keep
V2=runs/train/v2-pipeline
V2_COMMIT=${V2_COMMIT:-39fa29e}     # the last commit holding shapes-tiny v2 (H-warm starts from its UNet)
CLIP_STEPS=${CLIP_STEPS:-6000}
STEPS=${STEPS:-1200}
EVAL_N=${EVAL_N:-96}
mkdir -p "$RUNS" "$EVALS"
if [ ! -f "$VAE/vae/diffusion_pytorch_model.safetensors" ]; then
  mkdir -p "$VAE/vae"
  for f in config.json diffusion_pytorch_model.safetensors; do
    git show "$VAE_COMMIT:infodecomp/assets/shapes-tiny/vae/$f" > "$VAE/vae/$f"
  done
fi
if [ ! -f "$V2/unet/diffusion_pytorch_model.safetensors" ]; then
  mkdir -p "$V2"
  git archive "$V2_COMMIT" infodecomp/assets/shapes-tiny | tar -x --strip-components=3 -C "$V2"
fi

declare -A NEGATIVES=([hard]=all [plain]=none)
clip() {  # train (resumes), export and evaluate one ShapesCLIP recipe
  local name=$1 dir=$RUNS/shapesclip-$1
  local args="--work-dir $dir --negatives ${NEGATIVES[$1]} --steps $CLIP_STEPS"
  if [ ! -f "$dir/export/shapesclip.json" ]; then
    OMP_NUM_THREADS=1 "$PY" -m infodecomp.training.shapesclip train $args --threads 1 > "$dir.log" 2>&1
    OMP_NUM_THREADS=1 "$PY" -m infodecomp.training.shapesclip export $args --out "$dir/export" >> "$dir.log" 2>&1
  fi
  [ -f "$EVALS/shapesclip-$name.json" ] || \
    OMP_NUM_THREADS=1 "$PY" -m infodecomp.training.shapesclip evaluate "$dir/export" --n 192 --seed 0 \
      --out "$EVALS/shapesclip-$name.json" >> "$dir.log" 2>&1
  echo "done: shapesclip-$name"
}

COMMON="--seed 0 --vae-steps 0 --unet-steps $STEPS --lr-decay cosine --lr-final 0.02 --threads 1"
SCRATCH="--vae-from $VAE"   # a new UNet on v1's VAE
RELATIONS="--relation-boost 0.2 --counterfactual 1.0"
declare -A RECIPE=(
  [C-joint]="$SCRATCH --text-mask words $RELATIONS"   # v2's recipe (text encoder trained jointly), at these steps
  [E-plain]="$SCRATCH --text-mask words $RELATIONS --text-encoder-from $RUNS/shapesclip-plain/export"
  [F-hard]="$SCRATCH --text-mask words $RELATIONS --text-encoder-from $RUNS/shapesclip-hard/export"
  [G-hard-nomask]="$SCRATCH $RELATIONS --text-encoder-from $RUNS/shapesclip-hard/export"
  # F-hard, its UNet started from v2's (which draws single objects) instead of from scratch: the cross-attention
  # must learn the new encoder's features, the rest already draws ShapesWorld
  [H-warm]="--text-mask words $RELATIONS --text-encoder-from $RUNS/shapesclip-hard/export --init-from $V2"
)
unet() {  # train (resumes), export and evaluate one UNet recipe
  local name=$1 dir=$RUNS/$1
  OMP_NUM_THREADS=1 "$PY" -m infodecomp.training train --work-dir "$dir" $COMMON ${RECIPE[$name]} > "$dir.log" 2>&1
  [ -f "$dir/pipeline/model_index.json" ] || \
    OMP_NUM_THREADS=1 "$PY" -m infodecomp.training export --work-dir "$dir" $COMMON ${RECIPE[$name]} \
      --no-ema --out "$dir/pipeline" >> "$dir.log" 2>&1
  OMP_NUM_THREADS=1 "$PY" -m infodecomp.training compare "$dir/pipeline" --n "$EVAL_N" --seed 1 >> "$dir.log" 2>&1
  cp "$dir/pipeline/evaluation-seed1-n$EVAL_N.json" "$EVALS/$name.json"
  echo "done: $name"
}

if [ $# -gt 0 ]; then
  for r in "$@"; do case $r in shapesclip-*) clip "${r#shapesclip-}" ;; *) unet "$r" ;; esac; done
  exit 0
fi
clip hard
unet F-hard & clip plain & wait
unet E-plain & unet G-hard-nomask & wait
unet C-joint && unet H-warm
"$PY" -m infodecomp.training compare "$RUNS"/{C-joint,E-plain,F-hard,G-hard-nomask,H-warm}/pipeline --n "$EVAL_N" --seed 1 \
  --out "$EVALS/ablations.json"
