"""Train the embedded miniature Stable Diffusion ("shapes-tiny") on ShapesWorld: the config, the components
built from it, and the resumable :class:`Trainer` (``python -m infodecomp.training train|export``).

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
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..data import shapes
from ..text import word_token_mask
from ..tokenizer import load_clip_tokenizer
from .checkpoints import read_checkpoint, write_checkpoint

__all__ = ["MODEL_SETTINGS_FILE", "SD_BETAS", "TEXT_MASKS", "TrainConfig", "Trainer", "batch_rng", "build_components",
           "lr_at"]

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
    # v3: a folder holding text_encoder/ (a ShapesCLIP export): the text encoder is taken from it and frozen, as
    # Stable Diffusion's OpenCLIP encoder is
    text_encoder_from: str = ""

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
    # diffusers and transformers are heavy: imported when a model is built, not with the package
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel  # heavy, as diffusers above

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
        trained = list(self.unet.parameters()) + ([] if cfg.text_encoder_from else list(self.text_encoder.parameters()))
        self.unet_opt = torch.optim.AdamW(trained, lr=cfg.unet_lr, weight_decay=0.01)
        if not self.ckpt_path.exists():  # a resumed run takes every weight from its checkpoint
            if cfg.init_from:
                self._init_from(Path(cfg.init_from))
            elif cfg.vae_from:
                self._init_from(Path(cfg.vae_from), parts=("vae",))
            if cfg.text_encoder_from:
                self._load_weights(self.text_encoder, Path(cfg.text_encoder_from), "text_encoder")
        if cfg.text_encoder_from:
            self.text_encoder.eval().requires_grad_(False)
        self._load()

    @staticmethod
    def _load_weights(module, folder: Path, part: str):
        files = sorted((folder / part).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder}: no {part}/*.safetensors there; expected a pipeline directory written "
                                    "by `python -m infodecomp.training export` or a ShapesCLIP export")
        module.load_state_dict({k: v.float() for k, v in load_file(str(files[0])).items()})

    def _init_from(self, pipeline_dir: Path, parts=("vae", "unet", "text_encoder")):
        """Start from a pipeline directory's weights (as float32): stage 2 continues training them (or, with
        ``parts=("vae",)``, trains a new UNet and text encoder on its VAE)."""
        modules = {"vae": self.vae, "unet": self.unet, "text_encoder": self.text_encoder}
        for part in parts:
            self._load_weights(modules[part], pipeline_dir, part)
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
        write_checkpoint(self.ckpt_path, blob)

    def _load(self):
        if not self.ckpt_path.exists():
            return
        blob = read_checkpoint(self.ckpt_path, "a training checkpoint")
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
        with torch.set_grad_enabled(not self.cfg.text_encoder_from):
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
        from diffusers import DDIMScheduler, StableDiffusionPipeline  # heavy: only to export

        # Only a finished run is exported: a missing checkpoint would otherwise export the initial weights (the
        # --init-from pipeline, or random ones) under the name of the trained model.
        if not self.ckpt_path.exists():
            raise FileNotFoundError(f"{self.ckpt_path}: no checkpoint, so nothing trained to export; run `train` "
                                    f"with the same settings first")
        if self.state["stage"] != "unet" or self.state["step"] < self.cfg.unet_steps:
            raise RuntimeError(f"{self.ckpt_path} stopped at stage {self.state['stage']!r}, step "
                               f"{self.state['step']} of {self.cfg.unet_steps}: run `train` again to finish it (it "
                               f"resumes), or pass the --unet-steps it reached to export it as it is")
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
