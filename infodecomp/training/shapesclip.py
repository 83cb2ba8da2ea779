"""ShapesCLIP: a small image–text contrastive model trained on ShapesWorld, whose text tower shapes-tiny v3 conditions on.

    python -m infodecomp.training.shapesclip train --work-dir runs/train/shapesclip-hard [--negatives all --steps 6000]
    python -m infodecomp.training.shapesclip export --work-dir runs/train/shapesclip-hard --out infodecomp/assets/shapesclip
    python -m infodecomp.training.shapesclip evaluate infodecomp/assets/shapesclip [--n 192 --seed 0]
    python -m infodecomp.training.shapesclip ship EXPORT PIPELINE [--evaluation FILE]   # beside the UNet trained on it

Stable Diffusion's text encoder was pretrained contrastively (OpenCLIP) and frozen while the UNet learned; the
paper's Table 1 compares SD 2.1 with that same CLIP. shapes-tiny v1/v2 trained their text encoder jointly with the
UNet, and it erased relation words (a relation flip moved its token states by 0.11 % of a colour change). ShapesCLIP
rebuilds SD's arrangement in miniature:

- text tower: a ``CLIPTextModel`` (the class SD's pipelines load, so the UNet's pipeline still loads with
  diffusers), with the size of shapes-tiny's encoder; its pooled output (the ``<|endoftext|>`` state) is projected to
  the joint space;
- image tower: three convolutions and a linear layer over the flattened feature map (flattening keeps where
  things are, which a relation needs);
- loss: the symmetric InfoNCE of CLIP (Radford et al. 2021) over a batch, with a fixed logit scale;
- hard negatives (NegCLIP, Yuksekgonul et al. 2023, ARO): each caption brings false captions of its own image as
  extra text candidates for that image: the relation flipped ("left of" ↔ "right of"), subject and object swapped,
  the two objects' colours swapped, and one of ARO's word-order shuffles. Every negative is checked to be false of
  its scene. ``--negatives none`` is the plain recipe.

Batches are drawn on the fly from ShapesWorld with a generator seeded by (seed, step), so a resumed run sees the
batches an uninterrupted one would; a checkpoint is written every ``--checkpoint-every`` steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..data import shapes
from ..experiments.word_reading import text_edit_ratios
from ..metrics import binomial
from ..models.shapesclip import (CONFIG_FILE, WEIGHTS_FILE, ClipArchitecture, ShapesCLIP, image_batch,
                                load_shapesclip)
from .checkpoints import read_checkpoint, write_checkpoint

#: The kinds of hard negative, in the order they are drawn for a caption.
NEGATIVE_KINDS = ("relation_flip", "swap", "attribute_swap", "shuffle")
#: Twins scored by retrieval (the ARO sets of the paper's Table 1).
RETRIEVAL_TWINS = ("vg-relation", "vg-attribution", "coco-order", "flickr-order")


@dataclass(frozen=True)
class ClipConfig:
    """A training run: the recipe, and the architecture (:class:`~infodecomp.models.shapesclip.ClipArchitecture`'s
    fields)."""

    seed: int = 0
    steps: int = 6000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    negatives: tuple = NEGATIVE_KINDS  # () : the plain contrastive recipe
    relation_boost: float = 0.5  # P(an example is a two-object relational caption instead of the natural mix)
    max_length: int = 24  # shapes-tiny's text context (BOS and EOS included)
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    embed_dim: int = 64
    logit_scale: float = 20.0
    checkpoint_every: int = 250
    threads: int = 1

    def __post_init__(self):
        bad = [k for k in self.negatives if k not in NEGATIVE_KINDS]
        if bad:
            raise ValueError(f"unknown negative kinds {bad}; expected a subset of {NEGATIVE_KINDS}")
        if not 0.0 <= self.relation_boost <= 1.0:
            raise ValueError(f"relation_boost must be a probability in [0, 1], got {self.relation_boost!r}")


# ── hard negatives ──────────────────────────────────────────────────────────────────────────────────────

def _relation_span(words) -> tuple[int, int] | None:
    k = [i for i, w in enumerate(words) if w.pos == "prep"]
    return (k[0], k[-1] + 1) if k else None


def hard_negatives(sample: shapes.Sample, kinds, rng: np.random.Generator) -> dict[str, str]:
    """False captions of ``sample``'s scene made from its caption, one per applicable kind in ``kinds``:
    ``relation_flip`` and ``swap`` (subject and object exchanged) for relational captions, ``attribute_swap``
    (the colour words of two different objects exchanged) where two objects have different colour words, and
    ``shuffle`` (one of ARO's four order perturbations, drawn at random) where all four exist. A candidate that
    equals the caption or is true of the scene is left out."""
    words = sample.words
    toks = [w.text for w in words]
    out: dict[str, str] = {}
    span = _relation_span(words)
    for kind in kinds:
        text = None
        if kind == "relation_flip" and span:
            phrase = " ".join(toks[span[0]:span[1]])
            text = " ".join(toks[:span[0]] + shapes.FLIPPED_RELATION[phrase].split() + toks[span[1]:])
        elif kind == "swap" and span:
            text = " ".join(toks[span[1]:] + toks[span[0]:span[1]] + toks[:span[0]])
        elif kind == "attribute_swap":
            cols = [i for i, w in enumerate(words) if w.pos == "adj" and w.text in shapes.COLOURS]
            pairs = [(a, b) for a in cols for b in cols
                     if a < b and words[a].objects != words[b].objects and toks[a] != toks[b]]
            if pairs:
                a, b = pairs[int(rng.integers(len(pairs)))]
                swapped = list(toks)
                swapped[a], swapped[b] = toks[b], toks[a]
                text = " ".join(swapped)
        elif kind == "shuffle":
            negs = shapes.order_negatives(words, sample.scene, rng)
            if negs:
                text = negs[int(rng.integers(len(negs)))]
        if text and text != sample.caption and not shapes.is_true_of(text, sample.scene):
            out[kind] = text
    return out


def clip_batch(cfg: ClipConfig, step: int) -> tuple[torch.Tensor, list[str], list[str], list[int]]:
    """Batch ``step`` of a run: images ``[B, 3, 32, 32]``, the ``B`` captions, the hard negatives and, for each
    negative, the index of the image it is false of."""
    rng = np.random.default_rng([cfg.seed, 7, step])
    samples = shapes.training_samples(cfg.batch, rng, relation_boost=cfg.relation_boost)
    negatives, owners = [], []
    for i, s in enumerate(samples):
        for text in hard_negatives(s, cfg.negatives, rng).values():
            negatives.append(text)
            owners.append(i)
    images = np.stack([s.image for s in samples]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return torch.from_numpy(images), [s.caption for s in samples], negatives, owners


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, captions: list[str], scale: float
                     ) -> torch.Tensor:
    """Symmetric InfoNCE. ``image_emb [B, D]``, ``text_emb [B + M, D]`` (the B true captions first, then M hard
    negatives, which only enter the image→text direction). Candidates whose text equals the image's own caption
    (the same caption drawn twice in a batch) are masked out rather than counted as negatives."""
    B = image_emb.shape[0]
    texts = captions + [None] * (text_emb.shape[0] - B)
    same = torch.tensor([[i != j and texts[j] == captions[i] for j in range(len(texts))] for i in range(B)])
    logits = scale * image_emb @ text_emb.T
    target = torch.arange(B)
    i2t = F.cross_entropy(logits.masked_fill(same, float("-inf")), target)
    t2i = F.cross_entropy(logits[:, :B].T.masked_fill(same[:, :B].T, float("-inf")), target)
    return (i2t + t2i) / 2


# ── training ────────────────────────────────────────────────────────────────────────────────────────────

def _lr(step: int, cfg: ClipConfig) -> float:
    """Linear warm-up, then a cosine to 5 % of the peak at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - 1 - cfg.warmup))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


class ClipTrainer:
    def __init__(self, cfg: ClipConfig, work_dir: str | Path):
        self.cfg, self.work_dir = cfg, Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = ShapesCLIP(ClipArchitecture.of(asdict(cfg)))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.state = {"step": 0, "wall": 0.0, "losses": [], "probes": []}
        self._load()

    @property
    def ckpt_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    def _save(self):
        blob = {"config": _config_dict(self.cfg), "state": self.state, "model": self.model.state_dict(),
                "opt": self.opt.state_dict()}
        write_checkpoint(self.ckpt_path, blob)

    def _load(self):
        if not self.ckpt_path.exists():
            return
        blob = read_checkpoint(self.ckpt_path, "a ShapesCLIP checkpoint")
        free = ("steps", "threads", "checkpoint_every")
        mine = {k: v for k, v in _config_dict(self.cfg).items() if k not in free}
        saved = {k: v for k, v in blob["config"].items() if k not in free}
        if mine != saved:
            raise ValueError(f"{self.ckpt_path} was written with other settings: {blob['config']}; "
                             "use another --work-dir")
        self.model.load_state_dict(blob["model"])
        self.opt.load_state_dict(blob["opt"])
        self.state = blob["state"]
        print(f"resumed from {self.ckpt_path} at step {self.state['step']}")

    def step(self, step: int) -> float:
        images, captions, negatives, _ = clip_batch(self.cfg, step)
        text_emb = self.model.embed_text(captions + negatives)
        loss = contrastive_loss(self.model.embed_images(images), text_emb, captions, self.cfg.logit_scale)
        for g in self.opt.param_groups:
            g["lr"] = _lr(step, self.cfg)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return loss.item()

    def train(self, probe_every: int = 500):
        cfg = self.cfg
        bar = tqdm(range(self.state["step"], cfg.steps), initial=self.state["step"], total=cfg.steps,
                   desc="shapesclip")
        t0 = time.perf_counter()
        for step in bar:
            loss = self.step(step)
            self.state["losses"].append((step, loss))
            self.state["step"] = step + 1
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")
            if (step + 1) % probe_every == 0:
                self.model.eval()
                probe = {"step": step + 1, **quick_probe(self.model)}
                self.model.train()
                self.state["probes"].append(probe)
                print(json.dumps(probe), flush=True)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                self.state["wall"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._save()
        return self

    def export(self, out: str | Path) -> Path:
        """Write the text encoder as a diffusers/transformers component (``out/text_encoder``, safetensors) and the
        rest of the model (projection, image tower) as ``out/shapesclip.safetensors`` with ``out/shapesclip.json``.
        Only a finished run is exported (else the initial weights would go out under the trained model's name)."""
        if self.state["step"] < self.cfg.steps:
            raise RuntimeError(f"{self.work_dir}: training stopped at step {self.state['step']} of {self.cfg.steps} "
                               f"(no checkpoint: step 0); run `train` again to finish it (it resumes), or pass the "
                               f"--steps it reached to export it as it is")
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
        rest = {k: v.contiguous() for k, v in self.model.state_dict().items() if not k.startswith("text_encoder.")}
        save_file(rest, str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps(
            {"config": _config_dict(self.cfg), "wall_seconds": self.state["wall"], "steps": self.state["step"],
             "probes": self.state["probes"], "final_losses": self.state["losses"][-50:]}, indent=1) + "\n")
        return out


def ship(export_dir: str | Path, pipeline_dir: str | Path, *, evaluation: str | Path | None = None) -> Path:
    """Put a ShapesCLIP beside the pipeline whose UNet conditions on its text tower: ``<pipeline>/shapesclip/`` gets
    the image tower, projection and config (and ``evaluation.json`` if given); the text tower is the pipeline's own
    ``text_encoder/`` (:func:`infodecomp.models.shapesclip.text_encoder_dir`), so its weights are stored once. Refuses
    a pipeline whose text encoder is not this ShapesCLIP's (beyond the pipeline's float16 rounding)."""
    export_dir, pipeline_dir = Path(export_dir), Path(pipeline_dir)
    ours = load_file(str(export_dir / "text_encoder" / "model.safetensors"))
    files = sorted((pipeline_dir / "text_encoder").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{pipeline_dir}: no text_encoder/*.safetensors; expected an exported pipeline")
    theirs = load_file(str(files[0]))
    differ = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape
              or not torch.allclose(theirs[k].float(), ours[k].float(), rtol=2e-3, atol=1e-4)]
    if differ:
        raise ValueError(f"{pipeline_dir}/text_encoder is not the text tower of the ShapesCLIP in {export_dir} "
                         f"({len(differ)} of {len(ours)} tensors differ, e.g. {differ[0]!r}): ship a ShapesCLIP "
                         "only beside the pipeline trained on its frozen text encoder")
    out = pipeline_dir / "shapesclip"
    out.mkdir(exist_ok=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        shutil.copyfile(export_dir / name, out / name)
    if evaluation is not None:
        shutil.copyfile(evaluation, out / "evaluation.json")
    return out


def _config_dict(cfg: ClipConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


# ── evaluation ──────────────────────────────────────────────────────────────────────────────────────────

@torch.no_grad()
def retrieval_accuracy(model: ShapesCLIP, twin: str, n: int = 192, *, seed: int = 0, batch: int = 64) -> dict:
    """The caption of highest cosine similarity to the image, on ``n`` rows of a ShapesWorld twin of an ARO set:
    accuracy (mean ± binomial se). The CLIP row of the paper's Table 1, on the twins."""
    rows = shapes.twin(twin, n, seed=seed)
    hits = 0
    for start in range(0, n, batch):
        chunk = [rows[i] for i in range(start, min(n, start + batch))]
        img = model.embed_images(image_batch(chunk))
        for k, r in enumerate(chunk):
            sims = model.embed_text(r["captions"]) @ img[k]
            hits += int(int(sims.argmax()) == r["true_index"])
    return binomial(hits, n)


@torch.no_grad()
def text_edit_change(encode, n: int = 192, *, seed: int = 0, batch: int = 64) -> dict:
    """How far a text encoder's token states move under a relation flip, against a colour change, on ``n``
    held-out two-object relational captions (:func:`infodecomp.experiments.word_reading.text_edit_ratios` for the
    edits of ``shapes.relational_edits``). ``encode(list[str]) -> [N, L, D]``. Returns per edit mean ± se,
    ``ratio_relation`` (mean over captions of flip / colour change, ± se), ``ratio_attribute``, ``ratio_of_means``
    and ``n``."""
    rng = np.random.default_rng([seed, 71])
    samples = [shapes.sample_kind(rng, "relation", 2, both_distinct=True) for _ in range(n)]
    edits = [shapes.relational_edits(s, rng) for s in samples]
    res: dict = text_edit_ratios(encode, samples, edits, batch=batch)
    res["ratio_of_means"] = res["relation_flip"]["value"] / res["colour_swap"]["value"]
    res["n"] = n
    return res


@torch.no_grad()
def quick_probe(model: ShapesCLIP, n: int = 64) -> dict:
    """The early signals printed during training (held-out seed 1, ``n`` rows each)."""
    return {"vg_relation": retrieval_accuracy(model, "vg-relation", n, seed=1)["value"],
            "vg_attribution": retrieval_accuracy(model, "vg-attribution", n, seed=1)["value"],
            "text_flip_ratio": text_edit_change(model.token_states, n, seed=1)["ratio_relation"]["value"]}


@torch.no_grad()
def evaluate(model: ShapesCLIP, n: int = 192, *, seed: int = 0) -> dict:
    """Retrieval accuracy on the four ARO twins and the text encoder's relation-flip ratio, held-out ``seed``."""
    return {"retrieval": {t: retrieval_accuracy(model, t, n, seed=seed) for t in RETRIEVAL_TWINS},
            "text_change": text_edit_change(model.token_states, n, seed=seed), "n": n, "seed": seed}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m infodecomp.training.shapesclip", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("train", "export"):
        q = sub.add_parser(name)
        q.add_argument("--work-dir", required=True)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--steps", type=int, default=ClipConfig.steps)
        q.add_argument("--batch", type=int, default=ClipConfig.batch)
        q.add_argument("--lr", type=float, default=ClipConfig.lr)
        q.add_argument("--negatives", nargs="+", default=["all"],
                       help=f"hard-negative kinds: 'all', 'none', or some of {NEGATIVE_KINDS}")
        q.add_argument("--relation-boost", type=float, default=ClipConfig.relation_boost)
        q.add_argument("--checkpoint-every", type=int, default=ClipConfig.checkpoint_every)
        q.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
        if name == "export":
            q.add_argument("--out", required=True)
    sh = sub.add_parser("ship", help="put an export beside the pipeline trained on its text encoder")
    sh.add_argument("export_dir")
    sh.add_argument("pipeline_dir")
    sh.add_argument("--evaluation", help="an `evaluate` result to ship with it")
    e = sub.add_parser("evaluate")
    e.add_argument("path")
    e.add_argument("--n", type=int, default=192)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", help="write the evaluation as JSON here (default: <path>/evaluation.json)")
    args = p.parse_args(argv)
    if args.cmd == "ship":
        print(ship(args.export_dir, args.pipeline_dir, evaluation=args.evaluation))
        return
    if args.cmd == "evaluate":
        res = evaluate(load_shapesclip(args.path), args.n, seed=args.seed)
        target = Path(args.out or Path(args.path) / "evaluation.json")
        target.parent.mkdir(parents=True, exist_ok=True)  # e.g. a fresh OUT/ablations/ in a reproduction
        target.write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res, indent=1))
        return
    negatives = (NEGATIVE_KINDS if args.negatives == ["all"] else () if args.negatives == ["none"]
                 else tuple(args.negatives))
    cfg = ClipConfig(seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr, negatives=negatives,
                     relation_boost=args.relation_boost, checkpoint_every=args.checkpoint_every, threads=args.threads)
    trainer = ClipTrainer(cfg, args.work_dir)
    if args.cmd == "train":
        trainer.train()
    else:
        print(trainer.export(args.out))


if __name__ == "__main__":
    main()
