"""ShapesCLIP, the model: a small image–text contrastive pair whose text tower (a ``CLIPTextModel``, the class Stable
Diffusion's pipelines load) shapes-tiny v3's UNet conditions on, frozen, as SD 2.1's UNet conditions on OpenCLIP.
Trained by :mod:`infodecomp.training.shapesclip`; here are its architecture, loading, and the image–caption
cosine scores of the twins' CLIP row of Table 1 (:mod:`infodecomp.experiments.clip_baseline`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from ..data.shapes import IMAGE_SIZE
from ..tokenizer import load_clip_tokenizer

__all__ = ["ClipArchitecture", "ImageTower", "ShapesCLIP", "load_shapesclip", "shapesclip_scores", "image_batch",
           "WEIGHTS_FILE", "CONFIG_FILE", "text_encoder_dir"]

WEIGHTS_FILE = "shapesclip.safetensors"  # the projection and the image tower (the text encoder is text_encoder/)
CONFIG_FILE = "shapesclip.json"


@dataclass(frozen=True)
class ClipArchitecture:
    """The sizes of a ShapesCLIP (the defaults: shapes-tiny's text encoder)."""

    max_length: int = 24  # text context, BOS and EOS included
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 4
    embed_dim: int = 64

    @classmethod
    def of(cls, config: Mapping) -> "ClipArchitecture":
        """The architecture fields of a saved (training) config."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


class ImageTower(nn.Module):
    """``[B, 3, 32, 32]`` images in [0, 1] → ``[B, embed_dim]`` (not normalised)."""

    def __init__(self, embed_dim: int = 64, size: int = IMAGE_SIZE):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GELU(),
        )
        self.proj = nn.Linear(64 * (size // 4) ** 2, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(images * 2 - 1).flatten(1))


class ShapesCLIP(nn.Module):
    """The text tower (``text_encoder``, a ``CLIPTextModel``), its projection, and the image tower."""

    def __init__(self, cfg: ClipArchitecture):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModel  # heavy: loaded with the model, not the module

        self.cfg = cfg
        self.text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49_408, hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
            num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
            max_position_embeddings=cfg.max_length, bos_token_id=49_406, eos_token_id=49_407, pad_token_id=0,
            hidden_act="gelu"))
        self.text_projection = nn.Linear(cfg.text_hidden, cfg.embed_dim, bias=False)
        self.image_tower = ImageTower(cfg.embed_dim)
        self.tokenizer = load_clip_tokenizer(model_max_length=cfg.max_length)

    def tokens(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(list(captions), padding="max_length", max_length=self.cfg.max_length,
                              truncation=True, return_tensors="pt").input_ids

    def embed_text(self, captions: list[str]) -> torch.Tensor:
        """``[N, embed_dim]`` unit vectors."""
        pooled = self.text_encoder(self.tokens(captions)).pooler_output
        return F.normalize(self.text_projection(pooled), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``images [N, 3, H, W]`` in [0, 1] → ``[N, embed_dim]`` unit vectors."""
        return F.normalize(self.image_tower(images), dim=-1)

    def token_states(self, captions: list[str]) -> torch.Tensor:
        """``[N, max_length, text_hidden]``: what a UNet conditioned on this encoder reads."""
        return self.text_encoder(self.tokens(captions)).last_hidden_state


def text_encoder_dir(path: str | Path) -> Path:
    """Where a ShapesCLIP's text tower lives: its own ``text_encoder/``, or, shipped beside a pipeline whose UNet
    conditions on it (``<pipeline>/shapesclip/``), the pipeline's ``text_encoder/`` (one copy of the weights, not two)."""
    path = Path(path)
    for candidate in (path / "text_encoder", path.parent / "text_encoder"):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no text_encoder/ there or beside it (in {path.parent}); a ShapesCLIP export "
                            "holds one, and one shipped inside a pipeline shares the pipeline's")


def load_shapesclip(path: str | Path) -> ShapesCLIP:
    """A ShapesCLIP written by ``python -m infodecomp.training.shapesclip export``, in eval mode."""
    from transformers import CLIPTextModel  # heavy: loaded with the model

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path}: no {CONFIG_FILE} there; expected a folder written by "
                                "`python -m infodecomp.training.shapesclip export`")
    model = ShapesCLIP(ClipArchitecture.of(json.loads((path / CONFIG_FILE).read_text())["config"]))
    model.text_encoder = CLIPTextModel.from_pretrained(text_encoder_dir(path)).float()  # a pipeline stores float16
    rest = load_file(str(path / WEIGHTS_FILE))
    missing = model.load_state_dict(rest, strict=False).missing_keys
    if any(not k.startswith("text_encoder.") for k in missing):
        raise ValueError(f"{path / WEIGHTS_FILE} lacks {[k for k in missing if not k.startswith('text_encoder.')]}")
    return model.eval()


def image_batch(rows) -> torch.Tensor:
    """The rows' PIL images as ``[N, 3, 32, 32]`` in [0, 1] (resized to ShapesWorld's size)."""
    arr = np.stack([np.asarray(r["image"].convert("RGB").resize((IMAGE_SIZE,) * 2)) for r in rows])
    return torch.from_numpy(arr.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)



@torch.no_grad()
def shapesclip_scores(clip: ShapesCLIP, data: Sequence[Mapping], *, batch_size: int = 64) -> np.ndarray:
    """Cosine similarity of each row's image with each of its candidate captions: ``[N, M]`` (higher = better), for
    rows with ``"image"`` and ``"captions"`` (relation testing's rows)."""
    rows = [data[i] for i in range(len(data))]
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        img = clip.embed_images(image_batch(chunk))
        out += [(clip.embed_text(list(r["captions"])) @ img[k]).numpy() for k, r in enumerate(chunk)]
    sizes = {len(s) for s in out}
    if len(sizes) != 1:
        raise ValueError(f"rows have different numbers of captions {sorted(sizes)}; score one dataset at a time")
    return np.stack(out).astype(np.float64)
