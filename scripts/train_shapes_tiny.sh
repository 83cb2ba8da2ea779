#!/usr/bin/env bash
# Retrain the embedded model "shapes-tiny" (v3) as it was trained, and write its model card.
#
#   bash scripts/train_shapes_tiny.sh                 # from scratch: ≈ 5 h alone on 2 CPU cores
#   V2_FROM_GIT=1 bash scripts/train_shapes_tiny.sh   # v2's UNet taken from git instead of retrained: ≈ 2 h
#   WORK=runs/repro OUT=runs/repro/shapes-tiny ABLATIONS=0 V2_FROM_GIT=1 bash scripts/train_shapes_tiny.sh
#                                                     # a reproduction beside the committed model, not over it
#
# WORK (default runs/train) holds the training runs, OUT (default the embedded model's folder) receives the model.
# ABLATIONS=0 leaves out re-evaluating the ablations' pipelines for the card's table (when they are under WORK/v3).
# Each stage runs with the thread count it was trained with (ShapesCLIP and phase 3: one; the others: OMP_NUM_THREADS,
# default 2), since the arithmetic, and so the weights, depend on it.
#
# v3 is a UNet conditioned on a frozen, contrastively pretrained text encoder, as Stable Diffusion 2.1's UNet is on
# OpenCLIP's. Its steps, in order (checkpoints every 250 steps; rerunning the script resumes where it stopped):
#
# 1. ShapesCLIP with hard negatives (relation flip, subject–object swap, attribute swap, word-order shuffle):
#    6,000 steps, seed 0, one thread (≈ 45 min), evaluated on the ARO twins (held-out seed 0, n = 192).
# 2. Phases 1 and 2 train shapes-tiny v2 (its recipe: end token and padding hidden from cross-attention, more
#    relational captions with counterfactual pairs; UNet and text encoder jointly; ≈ 2.5–3 h): v3 starts from v2's
#    UNet, which already draws ShapesWorld. V2_FROM_GIT=1 takes v2's committed weights (git commit V2_COMMIT) instead.
# 3. Phase 3 (the H-warm ablation of scripts/shapes_tiny_v3_ablations.sh): v2's UNet on ShapesCLIP's text encoder,
#    frozen, 1,200 steps; phase 4 continues it (fresh optimiser, new cosine schedule, new data stream) for STEPS4.
# 4. The export replaces infodecomp/assets/shapes-tiny; ShapesCLIP's image tower ships beside it (shapesclip/, its
#    text tower is the pipeline's text_encoder/); the ablation table (EVALS/ablations.json, from the ablations'
#    pipelines when they are here) and the model card are written.
#
# The VAE is v1's (400 steps, seed 0; it recovers 100 % of scenes), taken from the git commit that added it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
THREADS=${OMP_NUM_THREADS:-2}
train() { OMP_NUM_THREADS=$THREADS "$PY" -m infodecomp.training "$@"; }
train1() { OMP_NUM_THREADS=1 "$PY" -m infodecomp.training "$@" --threads 1; }
clip() { OMP_NUM_THREADS=1 "$PY" -m infodecomp.training.shapesclip "$@"; }

STEPS3=${STEPS3:-1200}
STEPS4=${STEPS4:-5000}
V2_FROM_GIT=${V2_FROM_GIT:-0}
VAE_COMMIT=${VAE_COMMIT:-a1ce1ff}   # shapes-tiny v1, whose VAE v2 and v3 keep
V2_COMMIT=${V2_COMMIT:-39fa29e}     # the last commit holding shapes-tiny v2
WORK=${WORK:-runs/train}
CLIP=$WORK/v3/shapesclip-hard
P=$WORK/shapes-tiny-phase
OUT=${OUT:-infodecomp/assets/shapes-tiny}
ABLATIONS=${ABLATIONS:-1}
EVALS=$OUT/ablations
VAE=$WORK/v1-pipeline
RECIPE="--text-mask words --relation-boost 0.2 --counterfactual 1.0"

# Step 4 empties OUT (all but ablations/): it must not be, or hold, a training run's folder.
out_real=$(realpath -m "$OUT")
for d in "$WORK" "$WORK/v3" "$CLIP" "$VAE" "${P}1" "${P}2" "${P}3" "${P}4"; do
  case "$(realpath -m "$d")/" in
    "$out_real"/*) echo "OUT=$OUT holds the training run $d, which step 4 would delete; choose another OUT" >&2
                   exit 2 ;;
  esac
done
SCHEDULE="--lr-decay cosine --lr-final 0.02"

if [ ! -f "$VAE/vae/diffusion_pytorch_model.safetensors" ]; then
  mkdir -p "$VAE/vae"
  for f in config.json diffusion_pytorch_model.safetensors; do
    git show "$VAE_COMMIT:infodecomp/assets/shapes-tiny/vae/$f" > "$VAE/vae/$f"
  done
fi

# 1. ShapesCLIP
CLIP_ARGS="--work-dir $CLIP --negatives all --steps 6000 --seed 0"
clip train $CLIP_ARGS --threads 1
[ -f "$CLIP/export/shapesclip.json" ] || clip export $CLIP_ARGS --out "$CLIP/export"
[ -f "$EVALS/shapesclip-hard.json" ] || clip evaluate "$CLIP/export" --n 192 --seed 0 --out "$EVALS/shapesclip-hard.json"

# 2. v2 (phases 1 and 2), or its committed weights
if [ "$V2_FROM_GIT" = 1 ]; then
  if [ ! -f "${P}2/pipeline/unet/diffusion_pytorch_model.safetensors" ]; then
    mkdir -p "${P}2/pipeline"
    git archive "$V2_COMMIT" infodecomp/assets/shapes-tiny | tar -x --strip-components=3 -C "${P}2/pipeline"
  fi
else
  RUN1="--work-dir ${P}1 --seed 0 --vae-steps 0 --unet-steps 4000 $SCHEDULE --vae-from $VAE $RECIPE"
  RUN2="--work-dir ${P}2 --seed 1 --vae-steps 0 --unet-steps 3000 $SCHEDULE --init-from ${P}1/pipeline $RECIPE"
  train train $RUN1 --threads "$THREADS"
  [ -f "${P}1/pipeline/model_index.json" ] || train export $RUN1 --no-ema --out "${P}1/pipeline"
  train train $RUN2 --threads "$THREADS"
  [ -f "${P}2/pipeline/model_index.json" ] || train export $RUN2 --no-ema --out "${P}2/pipeline"
fi

# 3. v3: phase 3 swaps in the frozen ShapesCLIP text encoder, phase 4 continues
FROZEN="$RECIPE --text-encoder-from $CLIP/export"
RUN3="--work-dir ${P}3 --seed 0 --vae-steps 0 --unet-steps $STEPS3 $SCHEDULE --init-from ${P}2/pipeline $FROZEN"
RUN4="--work-dir ${P}4 --seed 1 --vae-steps 0 --unet-steps $STEPS4 $SCHEDULE --init-from ${P}3/pipeline $FROZEN"
train1 train $RUN3
[ -f "${P}3/pipeline/model_index.json" ] || train export $RUN3 --no-ema --out "${P}3/pipeline"
train train $RUN4 --threads "$THREADS"

# 4. the embedded model, its ShapesCLIP, the ablation table and the card
find "$OUT" -mindepth 1 -maxdepth 1 ! -name ablations -exec rm -rf {} +
train export $RUN4 --no-ema --out "$OUT"
clip ship "$CLIP/export" "$OUT"
ABL=($WORK/v3/{E-plain,F-hard,G-hard-nomask,H-warm}/pipeline)
if [ "$ABLATIONS" = 1 ] && [ -f "${ABL[0]}/model_index.json" ]; then
  train compare "${ABL[@]}" --n 96 --seed 1 --out "$OUT/ablations.json" --note "$(cat scripts/shapes_tiny_v3_ablations.note)"
fi
train evaluate "$OUT" --write-card --n "${EVAL_N:-192}" --steps 50 --guidance "${GUIDANCE:-3.0}" --seed 0
