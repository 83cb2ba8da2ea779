"""Train the embedded miniature Stable Diffusion ("shapes-tiny") on ShapesWorld.

    python -m infodecomp.training train --work-dir runs/train/shapes-tiny [--vae-steps 500 --unet-steps 4500 --seed 0]
    python -m infodecomp.training export --work-dir runs/train/shapes-tiny --out infodecomp/assets/shapes-tiny [--no-ema --note TEXT]
    python -m infodecomp.training evaluate infodecomp/assets/shapes-tiny --write-card [--n 192 --steps 50 --guidance 4]
    python -m infodecomp.training sweep infodecomp/assets/shapes-tiny --guidance 2 3 4 6 [--n 96 --seed 1]

Two stages, one resumable run: (1) the VAE (AutoencoderKL, 32×32×3 → 16×16×4) on reconstruction plus a small
KL term; its latent scaling factor is then set to 1/std of the latents, as SD's 0.18215; (2) the UNet and the
CLIP text encoder, jointly from scratch, on the ε-prediction loss with SD 2.1-base's scaled-linear schedule,
the caption replaced by the null prompt "" with probability ``p_uncond`` (classifier-free training, so the
unconditional denoiser that mutual information needs is learned). Data are drawn on the fly from ShapesWorld
with a generator seeded by (seed, stage, step), so a resumed run sees exactly the batches an uninterrupted
one would. A checkpoint is written every ``--checkpoint-every`` steps; a killed run loses at most that;
running ``train`` again resumes (``--unet-steps`` may be raised to train longer; every other setting must match).

``--init-from PIPELINE_DIR`` continues the UNet and text encoder of an exported pipeline (its VAE kept) with a fresh
optimiser, and ``--lr-decay cosine`` decays the learning rate to ``--lr-final`` × the peak at the last step: the
committed model is a 3,250-step constant-rate run continued this way (``bash scripts/train_shapes_tiny.sh`` redoes
both phases, the export and the evaluation).

``evaluate`` measures what the model card reports, on held-out ShapesWorld draws (generators seeded apart from
the training stream): the VAE's scene recovery (``parse_scene`` of reconstructions), generation accuracy of
single-object and two-object relational prompts (DDIM, classifier-free guidance), and how much of the pixel
CMI of a colour or shape word lies inside that word's object mask.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..models import load_model
from .card import ablation_table, write_model_card
from .evaluate import compare_recipes, evaluate, generation_accuracy, record_quality
from .train import TEXT_MASKS, TrainConfig, Trainer


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m infodecomp.training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="measure a pipeline directory (and write its model card)")
    e.add_argument("model_dir")
    e.add_argument("--n", type=int, default=192, help="prompts per generation test")
    e.add_argument("--steps", type=int, default=50)
    e.add_argument("--guidance", type=float, default=3.0)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--write-card", action="store_true", help="write README.md and quality.json into model_dir")
    c = sub.add_parser("compare", help="evaluate exported pipelines side by side and print the ablation table")
    c.add_argument("pipeline_dirs", nargs="+")
    c.add_argument("--n", type=int, default=96, help="prompts / scenes per measurement")
    c.add_argument("--seed", type=int, default=1, help="held-out seed (the model card measures on seed 0)")
    c.add_argument("--out", default=None, help="write the entries as JSON here")
    c.add_argument("--note", default="", help="what the table shows, in words (the model card prints it above)")
    w = sub.add_parser("sweep", help="generation accuracy at several guidance scales (to choose the card's guidance "
                                     "on a seed other than the card's)")
    w.add_argument("model_dir")
    w.add_argument("--guidance", type=float, nargs="+", default=[2.0, 3.0, 4.0, 6.0])
    w.add_argument("--n", type=int, default=96, help="prompts per kind")
    w.add_argument("--steps", type=int, default=50)
    w.add_argument("--seed", type=int, default=1)
    for name in ("train", "export"):
        s = sub.add_parser(name)
        s.add_argument("--work-dir", default="runs/train/shapes-tiny")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--vae-steps", type=int, default=TrainConfig.vae_steps)
        s.add_argument("--unet-steps", type=int, default=TrainConfig.unet_steps)
        s.add_argument("--unet-lr", type=float, default=TrainConfig.unet_lr)
        s.add_argument("--lr-decay", choices=("none", "cosine"), default=TrainConfig.lr_decay,
                       help="after warm-up: constant, or a cosine down to --lr-final × the peak")
        s.add_argument("--lr-final", type=float, default=TrainConfig.lr_final)
        s.add_argument("--init-from", default="", metavar="PIPELINE_DIR",
                       help="continue from an exported pipeline's weights (its VAE is kept: --vae-steps 0)")
        s.add_argument("--vae-from", default="", metavar="PIPELINE_DIR",
                       help="take only the VAE of an exported pipeline; UNet and text encoder from scratch "
                            "(--vae-steps 0)")
        s.add_argument("--text-mask", choices=TEXT_MASKS, default=TrainConfig.text_mask,
                       help="'words': cross-attention sees only the start and word tokens, not <|endoftext|> "
                            "and the padding (the v2 recipe)")
        s.add_argument("--relation-boost", type=float, default=TrainConfig.relation_boost,
                       help="probability that an example is a relational caption instead of the natural mix's draw")
        s.add_argument("--counterfactual", type=float, default=TrainConfig.counterfactual,
                       help="probability that a boosted relational example comes with its mirrored, "
                            "relation-flipped twin in the same batch")
        s.add_argument("--attention-16", action="store_true", help="cross-attention also at 16×16")
        s.add_argument("--text-encoder-from", default="", metavar="DIR",
                       help="take the text encoder from DIR/text_encoder (a ShapesCLIP export) and keep it frozen")
        s.add_argument("--threads", type=int, default=TrainConfig.threads,
                       help="torch CPU threads (leave a core free for other work beside a training run)")
        if name == "export":
            s.add_argument("--out", required=True)
            s.add_argument("--no-ema", action="store_true", help="export the raw weights instead of their EMA")
            s.add_argument("--note", default="", help="provenance note, printed in the model card")
    a = p.parse_args(argv)
    if a.cmd == "evaluate":
        quality = evaluate(a.model_dir, n=a.n, steps=a.steps, guidance=a.guidance, seed=a.seed)
        quality["seed"] = a.seed
        print(json.dumps(quality, indent=1))
        if a.write_card:
            print(f"wrote {write_model_card(a.model_dir, quality)}")
            print(f"recorded {record_quality(quality, a.model_dir)}")
        return
    if a.cmd == "compare":
        print(ablation_table(compare_recipes(a.pipeline_dirs, n=a.n, seed=a.seed, out=a.out, note=a.note)))
        return
    if a.cmd == "sweep":
        model = load_model(a.model_dir)
        print(f"{'guidance':>8}  {'single object':>16}  {'relational':>16}  {'objects only':>16}   (n = {a.n} each, "
              f"seed {a.seed}, {a.steps} DDIM steps)")
        for scale in a.guidance:
            r = generation_accuracy(model, n=a.n, steps=a.steps, guidance=scale, seed=a.seed)
            cells = [f"{100 * r[k]['value']:5.1f}% ± {100 * r[k]['stderr']:4.1f}"
                     for k in ("single_object", "relational", "relational_objects_only")]
            print(f"{scale:8.1f}  " + "  ".join(f"{c:>16}" for c in cells), flush=True)
        return
    cfg = TrainConfig(seed=a.seed, vae_steps=a.vae_steps, unet_steps=a.unet_steps, unet_lr=a.unet_lr,
                      lr_decay=a.lr_decay, lr_final=a.lr_final, init_from=a.init_from, vae_from=a.vae_from,
                      text_mask=a.text_mask, relation_boost=a.relation_boost, counterfactual=a.counterfactual,
                      attention_16=a.attention_16, text_encoder_from=a.text_encoder_from,
                      threads=a.threads)
    trainer = Trainer(cfg, Path(a.work_dir))
    if a.cmd == "train":
        trainer.train()
    else:
        trainer.export(Path(a.out), use_ema=not a.no_ema, note=a.note)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
