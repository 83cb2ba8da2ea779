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
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from infodecomp.data import shapes
from infodecomp.text import word_token_mask
from infodecomp.tokenizer import load_clip_tokenizer

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    vae_steps: int = 500
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    unet_steps: int = 4500
    unet_batch: int = 64
    unet_lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    p_uncond: float = 0.15
    max_length: int = 24  # tokens, BOS and EOS included; the longest ShapesWorld caption has 16
    text_hidden: int = 64
    text_layers: int = 3
    unet_channels: tuple = (32, 64, 64)
    checkpoint_every: int = 250
    threads: int = 2
    lr_decay: str = "none"  # "none": constant after warm-up; "cosine": to lr_final × unet_lr at the last step
    lr_final: float = 0.02
    init_from: str = ""  # a pipeline directory: start stage 2 from its weights (VAE, UNet, text encoder)
    vae_from: str = ""  # a pipeline directory: take only its VAE; UNet and text encoder from scratch
    # v2 recipe options (their defaults are the v1 recipe):
    text_mask: str = "none"  # "words": cross-attention sees only the start and word tokens (end token, padding hidden)
    relation_boost: float = 0.0  # P(an example is a relational caption instead of a draw of the natural mix)
    counterfactual: float = 0.0  # P(a boosted relational example comes with its mirrored, relation-flipped twin)
    attention_16: bool = False  # cross-attention also at 16×16 (the first down and last up block)

    def __post_init__(self):
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"lr_decay must be 'none' or 'cosine', got {self.lr_decay!r}")
        if self.text_mask not in TEXT_MASKS:
            raise ValueError(f"text_mask must be one of {TEXT_MASKS}, got {self.text_mask!r}")
        for name in ("relation_boost", "counterfactual"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
        if self.init_from and self.vae_from:
            raise ValueError("init_from and vae_from are exclusive (init_from already takes the VAE)")
        for name in ("init_from", "vae_from"):
            if getattr(self, name) and self.vae_steps:
                raise ValueError(f"{name}={getattr(self, name)!r} takes the VAE from that pipeline: set "
                                 f"vae_steps=0 (got {self.vae_steps})")


#: ``TrainConfig.text_mask`` values. "words" is the v2 recipe: hide ``<|endoftext|>`` and the padding from
#: cross-attention in training, and (through the exported ``infodecomp.json``) wherever the package runs the UNet.
TEXT_MASKS = ("none", "words")
#: The file beside model_index.json that tells infodecomp how to run an exported pipeline.
MODEL_SETTINGS_FILE = "infodecomp.json"


def build_components(cfg: TrainConfig):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
        latent_channels=4, sample_size=shapes.IMAGE_SIZE,
    )
    first_down, last_up = (("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") if cfg.attention_16
                           else ("DownBlock2D", "UpBlock2D"))
    unet = UNet2DConditionModel(
        sample_size=shapes.IMAGE_SIZE // 2, in_channels=4, out_channels=4,
        down_block_types=(first_down, "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", last_up),
        block_out_channels=tuple(cfg.unet_channels), layers_per_block=1, cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8, norm_num_groups=16,
    )
    text_config = CLIPTextConfig(
        vocab_size=49_408, hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=cfg.max_length,
        bos_token_id=49_406, eos_token_id=49_407, pad_token_id=0, hidden_act="gelu",
    )
    text_encoder = CLIPTextModel(text_config)
    tokenizer = load_clip_tokenizer(model_max_length=cfg.max_length)
    scheduler = DDPMScheduler(**SD_BETAS, prediction_type="epsilon", clip_sample=False)
    return vae, unet, text_encoder, tokenizer, scheduler


def batch_rng(seed: int, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage, step])


def lr_at(step: int, base: float, warmup: int, *, total: int | None = None, decay: str = "none",
          final: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then constant (``decay="none"``) or a cosine from ``base`` down to
    ``final × base`` at step ``total - 1`` (``decay="cosine"``)."""
    lr = base * min(1.0, (step + 1) / warmup)
    if decay == "cosine" and step >= warmup:
        progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
        lr = base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))
    return lr


class Trainer:
    def __init__(self, cfg: TrainConfig, work_dir: Path):
        self.cfg, self.work_dir = cfg, Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(cfg.threads)
        self.vae, self.unet, self.text_encoder, self.tokenizer, self.scheduler = build_components(cfg)
        self.ema = None
        self.state = {"stage": "vae", "step": 0, "scaling_factor": None, "wall": 0.0, "losses": []}
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=cfg.vae_lr)
        self.unet_opt = torch.optim.AdamW(list(self.unet.parameters()) + list(self.text_encoder.parameters()),
                                          lr=cfg.unet_lr, weight_decay=0.01)
        if not self.ckpt_path.exists():  # a resumed run takes every weight from its checkpoint
            if cfg.init_from:
                self._init_from(Path(cfg.init_from))
            elif cfg.vae_from:
                self._init_from(Path(cfg.vae_from), parts=("vae",))
        self._load()

    def _init_from(self, pipeline_dir: Path, parts=("vae", "unet", "text_encoder")):
        """Start from a pipeline directory's weights (as float32): stage 2 continues training them (or, with
        ``parts=("vae",)``, trains a new UNet and text encoder on its VAE)."""
        from safetensors.torch import load_file

        modules = {"vae": self.vae, "unet": self.unet, "text_encoder": self.text_encoder}
        for part in parts:
            module = modules[part]
            files = sorted((pipeline_dir / part).glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{pipeline_dir}: no {part}/*.safetensors there; expected a "
                                        "pipeline directory written by `python -m infodecomp.training export`")
            weights = {k: v.float() for k, v in load_file(str(files[0])).items()}
            module.load_state_dict(weights)
        vae_config = json.loads((pipeline_dir / "vae" / "config.json").read_text())
        self.state.update(stage="unet", step=0, scaling_factor=float(vae_config["scaling_factor"]))

    # ── checkpoints ──
    @property
    def ckpt_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    def _save(self):
        blob = {
            "config": asdict(self.cfg), "state": self.state,
            "vae": self.vae.state_dict(), "unet": self.unet.state_dict(), "text": self.text_encoder.state_dict(),
            "vae_opt": self.vae_opt.state_dict(), "unet_opt": self.unet_opt.state_dict(), "ema": self.ema,
        }
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, self.ckpt_path)

    def _load(self):
        if not self.ckpt_path.exists():
            return
        try:  # tensors, dicts, lists and numbers only: a checkpoint never runs code when it is read
            blob = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"{self.ckpt_path} cannot be read as a training checkpoint ({type(err).__name__}: "
                             f"{err}); delete it to start over, or use another --work-dir") from err
        saved = blob["config"]
        # The UNet step count may grow on resume (train longer), and threads / checkpoint interval are free;
        # every other setting must match. Settings added after a checkpoint was written take their defaults.
        def comparable(c):
            c = {**asdict(TrainConfig()), **c}
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items() if k not in ("unet_steps", "threads", "checkpoint_every")}
        if comparable(asdict(self.cfg)) != comparable(saved):
            raise ValueError(f"{self.ckpt_path} was written with other settings: {saved}; use another --work-dir")
        self.state = blob["state"]
        self.vae.load_state_dict(blob["vae"])
        self.unet.load_state_dict(blob["unet"])
        self.text_encoder.load_state_dict(blob["text"])
        self.vae_opt.load_state_dict(blob["vae_opt"])
        self.unet_opt.load_state_dict(blob["unet_opt"])
        self.ema = blob["ema"]
        print(f"resumed from {self.ckpt_path}: stage {self.state['stage']}, step {self.state['step']}")

    # ── stage 1: VAE ──
    def _vae_step(self, step: int) -> float:
        images, _ = shapes.training_batch(self.cfg.vae_batch, batch_rng(self.cfg.seed, 1, step))
        x = images * 2 - 1
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        loss = F.mse_loss(recon, x) + self.cfg.vae_kl_weight * posterior.kl().mean()
        for g in self.vae_opt.param_groups:
            g["lr"] = lr_at(step, self.cfg.vae_lr, 50)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_opt.step()
        return loss.item()

    @torch.no_grad()
    def _latent_scale(self) -> float:
        images, _ = shapes.training_batch(512, batch_rng(self.cfg.seed, 9, 0))
        z = self.vae.encode(images * 2 - 1).latent_dist.mean
        return float(1.0 / z.std())

    # ── stage 2: UNet + text encoder ──
    def _encode_text(self, captions):
        """→ hidden states ``[N, L, D]`` and the cross-attention mask ``[N, L]`` (None: every token seen)."""
        ids = self.tokenizer(captions, padding="max_length", max_length=self.cfg.max_length, truncation=True,
                             return_tensors="pt").input_ids
        mask = word_token_mask(ids, self.tokenizer.eos_token_id) if self.cfg.text_mask == "words" else None
        return self.text_encoder(ids)[0], mask

    def _unet_step(self, step: int) -> float:
        cfg = self.cfg
        rng = batch_rng(cfg.seed, 2, step)
        images, captions = shapes.training_batch(cfg.unet_batch, rng, relation_boost=cfg.relation_boost,
                                                 counterfactual=cfg.counterfactual)
        captions = ["" if u < cfg.p_uncond else c for u, c in zip(rng.random(len(captions)), captions)]
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        with torch.no_grad():
            post = self.vae.encode(images * 2 - 1).latent_dist
            x = (post.mean + post.std * torch.randn(post.mean.shape, generator=gen)) * self.state["scaling_factor"]
        eps = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x.shape[0],), generator=gen)
        z = self.scheduler.add_noise(x, eps, t)
        emb, mask = self._encode_text(captions)
        eps_hat = self.unet(z, t, emb, encoder_attention_mask=mask).sample
        loss = F.mse_loss(eps_hat, eps)
        for g in self.unet_opt.param_groups:
            g["lr"] = lr_at(step, cfg.unet_lr, cfg.warmup, total=cfg.unet_steps, decay=cfg.lr_decay,
                            final=cfg.lr_final)
        self.unet_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.unet.parameters()) + list(self.text_encoder.parameters()), 1.0)
        self.unet_opt.step()
        self._update_ema()
        return loss.item()

    def _params(self):
        return {**{"unet." + k: v for k, v in self.unet.state_dict().items()},
                **{"text." + k: v for k, v in self.text_encoder.state_dict().items()}}

    @torch.no_grad()
    def _update_ema(self):
        current = self._params()
        if self.ema is None:
            self.ema = {k: v.detach().clone().float() for k, v in current.items()}
            return
        # Warm the decay up ((1 + n) / (10 + n), as is usual): a fixed 0.999 from step 0 would still hold
        # 0.999**1250 ≈ 29% of the random initial weights after 1,250 steps (measured: such an EMA draws noise).
        n = self.state["step"]
        d = min(self.cfg.ema_decay, (1 + n) / (10 + n))
        for k, v in current.items():
            if v.dtype.is_floating_point:
                self.ema[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
            else:
                self.ema[k].copy_(v)

    def train(self):
        cfg = self.cfg
        stages = [("vae", cfg.vae_steps, self._vae_step), ("unet", cfg.unet_steps, self._unet_step)]
        for name, total, step_fn in stages:
            if self.state["stage"] != name:
                if [s for s, *_ in stages].index(self.state["stage"]) > [s for s, *_ in stages].index(name):
                    continue
            if name == "unet":
                self.vae.eval().requires_grad_(False)  # frozen in stage 2, also after a resume
                if self.state["scaling_factor"] is None:
                    self.state["scaling_factor"] = self._latent_scale()
            self.state["stage"] = name
            bar = tqdm(range(self.state["step"], total), initial=self.state["step"], total=total, desc=name)
            t0 = time.perf_counter()
            for step in bar:
                loss = step_fn(step)
                self.state["losses"].append((name, step, loss))
                self.state["step"] = step + 1
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}")
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                    self.state["wall"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self._save()
            self.state["wall"] += time.perf_counter() - t0
            if name == "vae":
                self.state.update(stage="unet", step=0)
                self.state["scaling_factor"] = None
                self.vae.eval()
                self.state["scaling_factor"] = self._latent_scale()
                self._save()
        return self

    def export(self, out: Path, *, use_ema: bool = True, note: str = ""):
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        if use_ema and self.ema is not None:
            self.unet.load_state_dict({k[5:]: v for k, v in self.ema.items() if k.startswith("unet.")})
            self.text_encoder.load_state_dict({k[5:]: v for k, v in self.ema.items() if k.startswith("text.")})
        self.vae.register_to_config(scaling_factor=self.state["scaling_factor"])
        scheduler = DDIMScheduler(**SD_BETAS, prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False,
                                  steps_offset=1, timestep_spacing="leading")
        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
        # How the package must run this UNet (read by infodecomp.models.load_model; diffusers ignores the file).
        (Path(out) / MODEL_SETTINGS_FILE).write_text(json.dumps(
            {"cross_attention_tokens": "words" if self.cfg.text_mask == "words" else "all"}, indent=1) + "\n")
        init = Path(self.cfg.init_from) / "training.json" if self.cfg.init_from else None
        (Path(out) / "training.json").write_text(json.dumps(
            {"config": asdict(self.cfg), "wall_seconds": self.state["wall"], "weights": "ema" if use_ema else "raw",
             "provenance": note,
             "init_training": json.loads(init.read_text()) if init and init.exists() else None,
             "final_losses": [r for r in self.state["losses"] if r[0] == "unet"][-50:]}, indent=1))
        return pipe


# ─────────────────────────────────────────── evaluation ────────────────────────────────────────────

def _binomial(hits: int, n: int) -> dict:
    p = hits / n
    return {"value": p, "stderr": math.sqrt(max(p * (1 - p), 1e-12) / n), "n": n}


def _scene_key(objects) -> list:
    return sorted((o.colour, o.shape, o.size) for o in objects)


def _as_tensor(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in images])


@torch.no_grad()
def vae_recovery(model, n: int = 500, seed: int = 12_345, batch: int = 100) -> dict:
    """Fraction of held-out scenes that ``parse_scene`` recovers exactly (colour, shape, size of every
    object) from the VAE reconstruction (posterior mean, decoded)."""
    rng = np.random.default_rng([seed, 1])
    hits = 0
    for start in range(0, n, batch):
        samples = [shapes.random_sample(rng) for _ in range(min(batch, n - start))]
        recon = model.decode(model.encode_images(_as_tensor([s.image for s in samples])), output_type="np")
        hits += sum(_scene_key(shapes.parse_scene(r)) == _scene_key(s.scene.objects) for s, r in zip(samples, recon))
    return _binomial(hits, n)


@torch.no_grad()
def generate_images(model, prompts: list[str], *, steps: int = 50, guidance: float = 4.0, seed: int = 0,
                    batch: int = 32, stock: bool = False) -> list[np.ndarray]:
    """Images ``[32, 32, 3]`` in [0, 1] from DDIM with classifier-free guidance through the model's denoiser
    (:func:`infodecomp.editing.sample`; the stock pipeline's algorithm, with the model's token mask). Batch
    ``k`` draws its noise from a generator seeded ``seed + k·batch``. ``stock=True``: the diffusers
    pipeline's own ``__call__`` instead (what a user of a stock ``StableDiffusionPipeline`` gets: no token
    mask), with the same noise."""
    from .editing import sample

    out = []
    for start in range(0, len(prompts), batch):
        g = torch.Generator().manual_seed(seed + start)
        if stock:
            res = model.pipeline(prompts[start:start + batch], height=shapes.IMAGE_SIZE, width=shapes.IMAGE_SIZE,
                                 num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="np")
            out.extend(list(res.images))
            continue
        latents = sample(model, prompts[start:start + batch], steps=steps, guidance_scale=guidance, generator=g,
                         batch_size=batch)
        out.extend(list(model.decode(latents, output_type="np")))
    return out


def generation_accuracy(model, n: int = 192, *, steps: int = 50, guidance: float = 4.0, seed: int = 0,
                        stock: bool = False) -> dict:
    """Single-object prompts ("a red circle", every colour × shape in turn): the image parses as exactly one
    object of the prompted colour and shape. Two-object relational prompts (held-out ShapesWorld captions,
    sizes sometimes named): both objects right (colour, shape, and size where named) and the relation true
    (loose rule: the axis of the larger centre offset decides). ``stock``: sample with the diffusers
    pipeline's own call (see :func:`generate_images`)."""
    singles = [f"a {c} {s}" for c in shapes.COLOURS for s in shapes.SHAPES]
    singles = (singles * (n // len(singles) + 1))[:n]
    imgs = generate_images(model, singles, steps=steps, guidance=guidance, seed=seed, stock=stock)
    single_hits = 0
    for p, im in zip(singles, imgs):
        parsed = shapes.parse_scene(im)
        single_hits += len(parsed) == 1 and shapes.caption_matches(p, parsed, check_size=False)
    rng = np.random.default_rng([seed, 777])
    relational = [shapes.sample_kind(rng, "relation", 2).caption for _ in range(n)]
    imgs = generate_images(model, relational, steps=steps, guidance=guidance, seed=seed + 100_000, stock=stock)
    reports = [shapes.match_report(p, shapes.parse_scene(im)) for p, im in zip(relational, imgs)]
    return {
        "single_object": _binomial(single_hits, n),
        "relational": _binomial(sum(r["match"] for r in reports), n),
        "relational_objects_only": _binomial(sum(r["objects"] for r in reports), n),
        "relational_two_objects": _binomial(sum(r["count"] for r in reports), n),
        # the relation alone, where both objects were drawn right (None when no prompt got that far)
        "relational_relation_if_objects": (_binomial(sum(r["objects"] and r["relation"] for r in reports),
                                                     sum(r["objects"] for r in reports))
                                           if any(r["objects"] for r in reports) else None),
        "steps": steps, "guidance": guidance,
    }


@torch.no_grad()
def cmi_mass_inside(model, n: int = 140, *, n_samples: int = 64, seed: int = 0, batch: int = 14) -> dict:
    """Pixel CMI i^o_j(x; w | c) of a colour or shape word (the coco100-it twin; cond = caption, ref = caption
    with the word deleted): the fraction of the map's mass inside the word's object mask, against the mask's
    area fraction. On the latent grid (16×16: the 32×32 mask average-pooled to it; ``mass_inside``) and at
    pixel resolution (the map upsampled bilinearly to 32×32, clamped at 0, against the exact mask;
    ``mass_inside_pixels``)."""
    from .estimators import pointwise_information
    from .metrics import upsample_bilinear

    rows = shapes.twin("coco100-it", n, seed=seed)
    inside, inside_px, area = [], [], []
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        chunk = [rows[i] for i in range(start, min(n, start + batch))]
        x = model.encode_images(_as_tensor([r["image"] for r in chunk]))
        cond = model.encode_prompts([r["caption"] for r in chunk])
        ref = model.encode_prompts([r["context"] for r in chunk])
        est = pointwise_information(model.denoiser, x, cond, ref, n_samples=n_samples, pixelwise=True, generator=g)
        masks = torch.stack([torch.from_numpy(np.array(r["mask"])).float() for r in chunk])[:, None]
        m = F.avg_pool2d(masks, masks.shape[-1] // est.value.shape[-1])[:, 0]
        v = est.value.clamp_min(0)
        inside += (v * m).flatten(1).sum(1).div(v.flatten(1).sum(1)).tolist()
        vp = upsample_bilinear(est.value, tuple(masks.shape[-2:])).clamp_min(0)
        inside_px += (vp * masks[:, 0]).flatten(1).sum(1).div(vp.flatten(1).sum(1)).tolist()
        area += m.flatten(1).mean(1).tolist()
    inside, inside_px, area = np.array(inside), np.array(inside_px), np.array(area)
    return {
        "mass_inside": {"value": float(inside.mean()), "stderr": float(inside.std(ddof=1) / math.sqrt(n)), "n": n},
        "mass_inside_pixels": {"value": float(inside_px.mean()), "stderr": float(inside_px.std(ddof=1) / math.sqrt(n)),
                               "n": n},
        "area_fraction": {"value": float(area.mean()), "stderr": float(area.std(ddof=1) / math.sqrt(n)), "n": n},
        "rows_with_majority_inside": _binomial(int((inside > 0.5).sum()), n),
        "n_samples": n_samples,
    }


def word_reading(model, *, n: int = 96, seed: int = 0, daam_steps: int = 50) -> dict:
    """The "does the model read its words?" battery (:mod:`infodecomp.experiments.word_reading`) at the
    model card's sizes: attention mass per token kind, the swap test, ε̂ sensitivity to edits, word maps."""
    from .experiments import word_reading as wr

    mass = wr.attention_mass(model, n=max(16, n // 3), seed=seed)
    return {
        "attention_mass": {"overall": mass["overall"], "n": mass["n"],
                           "by_layer": {k: v for k, v in mass["by_layer"].to_dict("index").items()},
                           "by_logsnr": {str(k): v for k, v in mass["by_logsnr"].to_dict("index").items()}},
        "swap": wr.swap_test(model, n=n, seed=seed),
        "sensitivity": wr.edit_sensitivity(model, n=n, seed=seed),
        "word_maps": wr.word_map_quality(model, n=max(16, 2 * n // 3), n_localization=max(16, 2 * n // 3),
                                         seed=seed, steps=daam_steps),
    }


def evaluate(model_dir: str | Path, *, n: int = 192, steps: int = 50, guidance: float = 3.0, seed: int = 0,
             reading: bool = True) -> dict:
    """Everything the model card reports, on held-out draws seeded by ``seed``: VAE recovery, generation
    accuracy, pixel CMI inside the word's object and (``reading``) the word-reading battery."""
    from .models import load_model

    model = load_model(str(model_dir))
    t0 = time.perf_counter()
    result = {
        "vae_recovery": vae_recovery(model, n=max(n, 500)),
        "generation": generation_accuracy(model, n=n, steps=steps, guidance=guidance, seed=seed),
        "cmi": cmi_mass_inside(model, seed=seed),
        "cross_attention_tokens": model.cross_attention_tokens,
    }
    if reading:
        result["reading"] = word_reading(model, n=n, seed=seed)
    if model.cross_attention_tokens == "words":  # what a stock diffusers pipeline call makes of it
        result["stock_pipeline"] = generation_accuracy(model, n=min(n, 96), steps=steps, guidance=guidance,
                                                       seed=seed, stock=True)
    result["seconds"] = time.perf_counter() - t0
    return result


def recipe_text(cfg: dict) -> str:
    """A recipe in words, from a training config: what differs from the v1 recipe."""
    parts = []
    if cfg.get("text_mask", "none") == "words":
        parts.append("end token and padding hidden")
    if cfg.get("relation_boost", 0.0):
        b, c = cfg["relation_boost"], cfg.get("counterfactual", 0.0)
        r = shapes.NATURAL_RELATION_SHARE
        share = (b * (1 + c) + (1 - b) * r) / (b * (1 + c) + 1 - b)
        parts.append(f"{100 * share:.0f}% relational captions" + (f", counterfactual pairs ({c:g})" if c else ""))
    if cfg.get("attention_16"):
        parts.append("cross-attention at 16×16")
    return "; ".join(parts) if parts else "v1 recipe (all tokens attended, natural mix)"


def _pct(d: dict | None) -> str:
    return "—" if not d else f"{100 * d['value']:.1f} ± {100 * d['stderr']:.1f}"


def _num(d: dict | None, digits: int = 2) -> str:
    return "—" if not d else f"{d['value']:.{digits}f} ± {d['stderr']:.{digits}f}"


#: The columns of :func:`ablation_table`: (header, how to read it off an evaluation).
ABLATION_COLUMNS = (
    ("single object %", lambda q: _pct(q["generation"]["single_object"])),
    ("relational, fully correct %", lambda q: _pct(q["generation"]["relational"])),
    ("relation right if objects right %", lambda q: _pct(q["generation"].get("relational_relation_if_objects"))),
    ("swap test: follows words %", lambda q: _pct(q["reading"]["swap"]["follows_words"])),
    ("relation flip / colour swap (ε̂)", lambda q: _num(q["reading"]["sensitivity"]["ratio_relation"], 3)),
    ("AUROC colour: own vs other", lambda q: _num(q["reading"]["word_maps"]["auroc"]["colour"]["other"])),
    ("AUROC shape: own vs other", lambda q: _num(q["reading"]["word_maps"]["auroc"]["shape"]["other"])),
    ("AUROC object vs background (colour / shape)", lambda q: "{:.2f} / {:.2f}".format(
        q["reading"]["word_maps"]["auroc"]["colour"]["background"]["value"],
        q["reading"]["word_maps"]["auroc"]["shape"]["background"]["value"])),
    ("DAAM mIoU / whole image", lambda q: "{:.1f} / {:.1f} %".format(
        100 * q["reading"]["word_maps"]["daam_miou"]["value"],
        100 * q["reading"]["word_maps"]["whole_image_miou"]["value"])),
    ("CMI mass inside % (latent / pixels)", lambda q: "{:.1f} / {:.1f}".format(
        100 * q["cmi"]["mass_inside"]["value"], 100 * q["cmi"].get("mass_inside_pixels", {"value": float("nan")})["value"])),
    ("attention on words / padding %", lambda q: "{:.0f} / {:.0f}".format(
        100 * q["reading"]["attention_mass"]["overall"]["word"],
        100 * q["reading"]["attention_mass"]["overall"]["padding"])),
)


def ablation_table(entries: list[dict]) -> str:
    """A Markdown table of recipes (rows) × measurements (:data:`ABLATION_COLUMNS`); ``entries``: dicts with
    ``name``, ``config`` (the training config), ``unet_steps``, ``wall_seconds`` and ``quality`` (an
    :func:`evaluate` result)."""
    head = ["recipe", "UNet steps", "CPU min"] + [h for h, _ in ABLATION_COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        cells = [f"{e['name']}: {recipe_text(e['config'])}", str(e["unet_steps"]), f"{e['wall_seconds'] / 60:.0f}"]
        cells += [f(e["quality"]) for _, f in ABLATION_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_recipes(pipeline_dirs: list[str], *, n: int = 96, seed: int = 1, steps: int = 50,
                    guidance: float = 3.0, out: str | Path | None = None) -> list[dict]:
    """Evaluate exported pipelines side by side (same prompts, seeds and settings), caching each result in
    ``<dir>/evaluation-seed<seed>-n<n>.json``; write the list to ``out`` (JSON) if given."""
    entries = []
    for d in pipeline_dirs:
        d = Path(d)
        cache = d / f"evaluation-seed{seed}-n{n}.json"
        if cache.exists():
            quality = json.loads(cache.read_text())
        else:
            quality = evaluate(d, n=n, steps=steps, guidance=guidance, seed=seed)
            quality["seed"] = seed
            cache.write_text(json.dumps(quality, indent=1))
        info = json.loads((d / "training.json").read_text())
        entries.append({"name": d.parent.name if d.name == "pipeline" else d.name, "config": info["config"],
                        "unet_steps": info["config"]["unet_steps"], "wall_seconds": info["wall_seconds"],
                        "quality": quality})
        print(f"evaluated {d} ({quality['seconds']:.0f} s)", flush=True)
    if out is not None:
        Path(out).write_text(json.dumps({"n": n, "seed": seed, "steps": steps, "guidance": guidance,
                                         "entries": entries}, indent=1))
    return entries


def _fmt(d: dict) -> str:
    return f"{100 * d['value']:.1f}% ± {100 * d['stderr']:.1f} (n = {d['n']})"


def _schedule_text(cfg: dict) -> str:
    warm = f"warm-up {cfg['warmup']} steps"
    if cfg.get("lr_decay", "none") == "cosine":
        return f"{warm}, then a cosine down to {cfg['lr_final']} × the peak at the last step"
    return f"{warm}, then constant"


def _weights_text(info: dict) -> str:
    cfg = info["config"]
    return ("their EMA (decay " + str(cfg["ema_decay"]) + ", warmed up)" if info.get("weights") == "ema"
            else "the raw weights of the last step, not their EMA")


def _train_cmd(cfg: dict, work_dir: str) -> str:
    cmd = (f"python -m infodecomp.training train --work-dir {work_dir} --seed {cfg['seed']} "
           f"--vae-steps {cfg['vae_steps']} --unet-steps {cfg['unet_steps']}")
    if cfg.get("unet_lr", 5e-4) != TrainConfig.unet_lr:
        cmd += f" --unet-lr {cfg['unet_lr']}"
    if cfg.get("lr_decay", "none") != "none":
        cmd += f" --lr-decay {cfg['lr_decay']} --lr-final {cfg['lr_final']}"
    if cfg.get("init_from"):
        cmd += f" --init-from {cfg['init_from']}"
    if cfg.get("vae_from"):
        cmd += f" --vae-from {cfg['vae_from']}"
    if cfg.get("text_mask", "none") != "none":
        cmd += f" --text-mask {cfg['text_mask']}"
    for key in ("relation_boost", "counterfactual"):
        if cfg.get(key, 0.0):
            cmd += f" --{key.replace('_', '-')} {cfg[key]}"
    if cfg.get("attention_16"):
        cmd += " --attention-16"
    return cmd


def _optional_rows(gen: dict) -> str:
    """Rows of the quality table that older measurements lack."""
    rows = [("… exactly two objects drawn", gen.get("relational_two_objects")),
            ("… the relation right, of the prompts with both objects right", gen.get("relational_relation_if_objects"))]
    return "".join(f"| {what} | {_fmt(d)} | — |\n" for what, d in rows if d)


def _training_text(info: dict, quality: dict) -> str:
    """The model card's Training section: one phase, or a first phase from scratch and its continuation."""
    cfg, first = info["config"], info.get("init_training")
    phases = [first, info] if first else [info]
    lines = []
    for k, ph in enumerate(phases):
        c = ph["config"]
        head = (f"Phase {k + 1}" if len(phases) > 1 else "Training") + f" (seed {c['seed']}). "
        if not c.get("init_from") and c.get("vae_from") and not c["vae_steps"]:
            body = (f"VAE: not trained here, taken from the pipeline in `{c['vae_from']}` (its weights as they "
                    f"were exported). UNet and text encoder jointly from scratch: ")
        elif not c.get("init_from"):
            body = (f"Stage 1, VAE: {c['vae_steps']} steps, batch {c['vae_batch']}, AdamW lr {c['vae_lr']}, "
                    f"MSE + {c['vae_kl_weight']} · KL. Stage 2, UNet and text encoder jointly from scratch: ")
        else:
            body = ("The VAE, UNet and text encoder of phase 1 (its exported float16 weights), the UNet and text "
                    "encoder trained further with a fresh optimiser and a new data stream: ")
        body += (f"{c['unet_steps']} steps, batch {c['unet_batch']}, AdamW peak lr {c['unet_lr']} "
                 f"({_schedule_text(c)}), ε-prediction loss with uniform timesteps, the caption replaced by the null "
                 f"prompt \"\" with probability {c['p_uncond']} (classifier-free training); exported weights: "
                 f"{_weights_text(ph)}. Wall time: {ph['wall_seconds'] / 60:.0f} minutes on 2 CPU cores. Final "
                 f"ε-prediction loss (mean of the last {len(ph['final_losses'])} UNet steps): "
                 f"{np.mean([l for *_, l in ph['final_losses']]):.4f}.")
        if ph.get("provenance"):
            body += " " + ph["provenance"]
        lines.append(head + body)
    lines.append("Data: fresh ShapesWorld draws for every batch (`infodecomp.data.shapes.training_batch`), from a "
                 "generator seeded by (seed, stage, step), so a resumed run sees the batches an uninterrupted one would.")
    work = ["runs/train/shapes-tiny-phase1", "runs/train/shapes-tiny"] if first else ["runs/train/shapes-tiny"]
    cmds = []
    for k, (ph, w) in enumerate(zip(phases, work)):
        c = dict(ph["config"])
        if k == 1:
            c["init_from"] = "runs/train/shapes-tiny-phase1/pipeline"
        out = "runs/train/shapes-tiny-phase1/pipeline" if k + 1 < len(phases) else "infodecomp/assets/shapes-tiny"
        cmds.append(_train_cmd(c, w))
        cmds.append(_train_cmd(c, w).replace(" train ", " export ", 1)
                    + ("" if ph.get("weights") == "ema" else " --no-ema") + f" --out {out}")
    gen = quality["generation"]
    cmds.append(f"python -m infodecomp.training evaluate infodecomp/assets/shapes-tiny --write-card "
                f"--n {gen['single_object']['n']} --steps {gen['steps']} --guidance {gen['guidance']} "
                f"--seed {seed_of(quality)}")
    lines.append("Retrain from scratch (`bash scripts/train_shapes_tiny.sh` runs exactly these; checkpoints go to the "
                 "work directories every 250 steps, and rerunning a command resumes it):\n\n```bash\n"
                 + "\n".join(cmds) + "\n```")
    return "\n\n".join(lines)


def _get(d: dict, path: str):
    for k in path.split("."):
        if d is None:
            return None
        d = d.get(k)
    return d


#: The project's bars for the embedded model (issue "shapes-tiny v2"): (name, path in an :func:`evaluate`
#: result, bar, unit). A value is a dict with "value" and "stderr" (a float for ratios without one).
BARS = (
    ("VAE: `parse_scene` recovers the scene from reconstructions", "vae_recovery", 0.98, "%"),
    ("generation, single-object prompts: the prompted colour and shape", "generation.single_object", 0.95, "%"),
    ("generation, two-object relational prompts fully correct", "generation.relational", 0.70, "%"),
    ("… the relation right, of the prompts with both objects right",
     "generation.relational_relation_if_objects", 0.85, "%"),
    ("swap test: the image follows the word tokens (words of A, end token and padding of B)",
     "reading.swap.follows_words", 0.90, "%"),
    ("DAAM word maps, COCO-IT twin: mIoU ÷ the whole-image baseline", "reading.word_maps.miou_ratio", 2.0, "×"),
    ("DAAM map of a colour word: AUROC own object vs the other object", "reading.word_maps.auroc.colour.other",
     0.75, ""),
    ("DAAM map of a shape word: AUROC own object vs the other object", "reading.word_maps.auroc.shape.other",
     0.75, ""),
    ("pixel CMI of a colour/shape word: mass inside its object (latent grid)", "cmi.mass_inside", 0.50, "%"),
    ("… at pixel resolution (map upsampled bilinearly to 32×32)", "cmi.mass_inside_pixels", 0.50, "%"),
    ("ε̂ change of a relation flip ÷ that of a colour swap", "reading.sensitivity.ratio_relation", 0.10, "×"),
)


def _value_text(v, unit: str) -> str:
    if v is None:
        return "not measured"
    if not isinstance(v, dict):
        return f"{v:.2f}{unit}"
    if unit == "%":
        return f"{100 * v['value']:.1f}% ± {100 * v['stderr']:.1f} (n = {v['n']})"
    return f"{v['value']:.3g}{unit} ± {v['stderr']:.2g} (n = {v['n']})"


def bar_rows(quality: dict) -> list[dict]:
    """The :data:`BARS` measured in ``quality``: name, text of the result, bar, and ``met`` (the point
    estimate at or above the bar; None when not measured)."""
    rows = []
    for name, path, bar, unit in BARS:
        v = _get(quality, path)
        value = None if v is None else (v["value"] if isinstance(v, dict) else float(v))
        bar_text = f"≥ {100 * bar:.0f}%" if unit == "%" else f"≥ {bar:g}{unit}"
        rows.append({"name": name, "path": path, "result": _value_text(v, unit), "bar": bar_text,
                     "value": value, "met": None if value is None else value >= bar})
    return rows


def _reading_text(quality: dict) -> str:
    r = quality.get("reading")
    if not r:
        return "Not measured for this model (`evaluate` without the word-reading battery)."
    mass = r["attention_mass"]
    lines = ["Attention mass per kind of token (mean over images, heads and query positions; "
             f"n = {mass['n']} scenes × {len(mass['by_logsnr'])} noise levels):", "",
             "| layer | start | words | end | padding |", "|---|---|---|---|---|"]
    for layer, row in mass["by_layer"].items():
        lines.append(f"| `{layer.replace('.transformer_blocks.0.attn2', '')}` | " +
                     " | ".join(f"{100 * row[k]:.0f}%" for k in ("start", "word", "end", "padding")) + " |")
    o = mass["overall"]
    lines.append("| **all** | " + " | ".join(f"**{100 * o[k]:.0f}%**" for k in ("start", "word", "end", "padding"))
                 + " |")
    sw, se, wm = r["swap"], r["sensitivity"], r["word_maps"]
    lines += ["",
              f"Swap test (n = {sw['follows_words']['n']} pairs, {sw['steps']} DDIM steps, guidance {sw['guidance']}): "
              f"the image follows the word tokens {_pct(sw['follows_words'])}%, the padding "
              f"{_pct(sw['follows_padding'])}%, neither {_pct(sw['neither'])}%; in ε̂ space the hybrid is nearer the "
              f"words' prediction for {_pct(sw['eps_follows_words'])}% of pairs.",
              "",
              f"ε̂ sensitivity (n = {se['relation_flip']['n']} relational scenes, {se['n_samples']} shared draws each): "
              f"E‖Δε̂‖² for a relation flip {_num(se['relation_flip'], 3)}, an exchange of the two colours "
              f"{_num(se['attribute_swap'], 3)}, one colour changed {_num(se['colour_swap'], 3)}; ratios to the colour "
              f"change: relation {_num(se['ratio_relation'], 3)}, attribute {_num(se['ratio_attribute'], 3)}.",
              "",
              f"DAAM word maps ({wm['steps']} DDIM steps each way): AUROC own object vs background — colour "
              f"{_num(wm['auroc']['colour']['background'])}, shape {_num(wm['auroc']['shape']['background'])}; own "
              f"object vs the other object — colour {_num(wm['auroc']['colour']['other'])}, shape "
              f"{_num(wm['auroc']['shape']['other'])}. COCO-IT twin mIoU {_pct(wm['daam_miou'])}% (oracle τ "
              f"{wm['daam_miou']['threshold']:.2f}) against {_pct(wm['whole_image_miou'])}% for the whole image."]
    return "\n".join(lines)


def _stock_text(quality: dict) -> str:
    st = quality.get("stock_pipeline")
    if quality.get("cross_attention_tokens", "all") != "words":
        return ("This model attends to every token, like a stock Stable Diffusion; a stock diffusers pipeline "
                "call runs it as it was trained.")
    text = ("**Run it through infodecomp, or pass the mask yourself.** This model was trained with the end token "
            "`<|endoftext|>` and the padding after it hidden from cross-attention (`infodecomp.json`: "
            '`"cross_attention_tokens": "words"`). `load_model("shapes-tiny")` reads that file; then '
            "`Model.encode_prompts` zeroes those rows and every UNet call of the package (the denoiser, the "
            "sampler `infodecomp.editing.sample`, inversion and interventions, attention recording, the probe) "
            "hides zero rows with the UNet's `encoder_attention_mask`. The directory still loads with diffusers' "
            "`StableDiffusionPipeline.from_pretrained`, but a stock `pipe(prompt)` call passes no mask, so its "
            "UNet attends to embeddings it never saw in training")
    if st:
        gen = quality["generation"]
        text += (f": measured with the same prompts and noise, single-object generation {_pct(st['single_object'])}% "
                 f"(against {_pct(gen['single_object'])}% with the mask) and relational prompts fully correct "
                 f"{_pct(st['relational'])}% (against {_pct(gen['relational'])}%). With diffusers directly, call the "
                 "UNet as `unet(z, t, encoder_hidden_states=emb, encoder_attention_mask=mask)` with `mask` True for "
                 "the start token and the word tokens (`infodecomp.text.word_token_mask`).")
    else:
        text += "."
    return text


def _ablation_text(model_dir: Path) -> str:
    path = model_dir / "ablations.json"
    if not path.exists():
        return "No ablations recorded for this model."
    a = json.loads(path.read_text())
    head = (f"Short runs from scratch on the same data seed, each measured by `python -m infodecomp.training compare` "
            f"on held-out seed {a['seed']} (n = {a['n']} prompts or scenes per measurement; generation: "
            f"{a['steps']} DDIM steps, guidance {a['guidance']}; ± one standard error). "
            + a.get("note", ""))
    if a.get("entries"):
        return head + "\n\n" + ablation_table(a["entries"])
    if a.get("table"):  # measurements transcribed from the runs' logs (their evaluation files are not kept)
        return head + "\n\n" + a["table"]
    raise ValueError(f"{path}: an ablation record needs 'entries' (compare's output) or a 'table'; it has "
                     f"{sorted(a)}")


def write_model_card(model_dir: str | Path, quality: dict) -> Path:
    model_dir = Path(model_dir)
    info = json.loads((model_dir / "training.json").read_text())
    cfg = info["config"]
    n_params = {}
    for part in ("unet", "text_encoder", "vae"):
        from safetensors import safe_open

        with safe_open(str(next((model_dir / part).glob("*.safetensors"))), "pt") as f:
            n_params[part] = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    gen, cmi = quality["generation"], quality["cmi"]
    attn = "16×16, 8×8 and 4×4" if cfg.get("attention_16") else "8×8 and 4×4"
    bars = bar_rows(quality)
    bar_lines = "\n".join(f"| {b['name']} | {b['result']} | {b['bar']} | "
                           f"{'—' if b['met'] is None else ('met' if b['met'] else '**not met**')} |" for b in bars)
    card = f"""# shapes-tiny

A miniature Stable Diffusion trained from scratch by infodecomp on ShapesWorld (`infodecomp.data.shapes`):
32×32 RGB images of one to three flat-coloured shapes (circle, square, triangle; red, green, blue, yellow;
small, big) on black, with captions such as "a small blue square left of a big yellow triangle",
"a red circle and a green square", "two yellow triangles". It is a diffusers `StableDiffusionPipeline`
directory, loaded by `infodecomp.models.load_model("shapes-tiny")`, and the default model of every notebook.

Recipe: {recipe_text(cfg)}.

## Architecture

| part | class | parameters | notes |
|---|---|---|---|
| VAE | AutoencoderKL | {n_params['vae'] / 1e6:.2f} M | 32×32×3 → 16×16×4 (one downsampling), scaling factor {json.loads((model_dir / 'vae' / 'config.json').read_text())['scaling_factor']:.4f} (1/std of the latents) |
| UNet | UNet2DConditionModel | {n_params['unet'] / 1e6:.2f} M | channels {tuple(cfg['unet_channels'])}, 1 layer per block, cross-attention at {attn} |
| text encoder | CLIPTextModel | {n_params['text_encoder'] / 1e6:.2f} M | hidden {cfg['text_hidden']}, {cfg['text_layers']} layers, {cfg['max_length']} positions (most parameters are the 49,408-token embedding) |
| tokenizer | CLIPTokenizer | — | OpenAI/OpenCLIP BPE built offline (`infodecomp.tokenizer`), model_max_length {cfg['max_length']}, pads with "!" as SD 2.x |
| scheduler | DDIMScheduler | — | SD 2.1-base's scaled-linear betas 0.00085 → 0.012, 1000 steps, ε-prediction: log-SNR range [−5.364, +7.069] |

Weights are stored in float16 (safetensors) and load as float32 unless another dtype is asked for.

{_stock_text(quality)}

## Training

{_training_text(info, quality)}

## Ablations: how the recipe was chosen

{_ablation_text(model_dir)}

## Measured quality

On held-out ShapesWorld draws (`python -m infodecomp.training evaluate`, seed {seed_of(quality)}, apart from the
ablations' seed); ± is one standard error (binomial for rates). Bars are those of the project's issue; "met"
means the point estimate reaches the bar.

| what | result | bar | |
|---|---|---|---|
{bar_lines}
| … generation: of the relational prompts, both objects right (relation aside) | {_fmt(gen['relational_objects_only'])} | — | |
{_optional_rows(gen).replace(' — |', ' — | |')}| … the word's object area fraction, for the CMI mass | {100 * cmi['area_fraction']['value']:.1f}% ± {100 * cmi['area_fraction']['stderr']:.1f} | — | |
| … CMI: rows with more than half of the mass inside (latent grid) | {_fmt(cmi['rows_with_majority_inside'])} | — | |

Generation: DDIM, {gen['steps']} steps, classifier-free guidance scale {gen['guidance']}. CMI maps: i^o with
{cmi['n_samples']} log-SNR draws (truncated logistic, loc 1, scale 2, clip 3) per image.

## Does it read its words?

{_reading_text(quality)}
"""
    path = model_dir / "README.md"
    path.write_text(card)
    (model_dir / "quality.json").write_text(json.dumps(quality, indent=1))
    return path


def record_quality(quality: dict, model_dir: str | Path, *, root: str | Path = "figures") -> Path:
    """Record the model card's headline numbers in ``figures/shapes-tiny/00_model_quality.json``, from which
    the README's results tables are generated."""
    from .results import Recorder

    gen, cmi = quality["generation"], quality["cmi"]
    from .digest import weights_digest

    rec = Recorder("00_model_quality", Path(model_dir).name, root=root, protocol="corrected",
                   revision=f"sha256:{weights_digest(model_dir)[:16]}",
                   seed=quality.get("seed", 0),
                   n_samples=(f"{quality['vae_recovery']['n']} scenes (VAE), {gen['single_object']['n']} prompts per "
                              f"kind (generation), {cmi['mass_inside']['n']} images (CMI)"),
                   settings={"ddim_steps": gen["steps"], "guidance": gen["guidance"],
                             "cmi_logsnr_draws": cmi["n_samples"]})
    for _, key, _, _ in BARS:
        v = _get(quality, key)
        if v is None:
            continue
        name = key.replace("reading.", "").replace(".", "_")
        path = rec.record(name, v["value"] if isinstance(v, dict) else float(v),
                          v.get("stderr") if isinstance(v, dict) else None)
    path = rec.record("word_mask_area_fraction", cmi["area_fraction"]["value"], cmi["area_fraction"]["stderr"])
    return path


def seed_of(quality: dict) -> int:
    return quality.get("seed", 0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        print(ablation_table(compare_recipes(a.pipeline_dirs, n=a.n, seed=a.seed, out=a.out)))
        return
    if a.cmd == "sweep":
        from .models import load_model

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
                      attention_16=a.attention_16, threads=a.threads)
    trainer = Trainer(cfg, Path(a.work_dir))
    if a.cmd == "train":
        trainer.train()
    else:
        trainer.export(Path(a.out), use_ema=not a.no_ema, note=a.note)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
