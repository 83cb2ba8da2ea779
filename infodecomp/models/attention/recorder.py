"""What an attention recording collects, and how it is aggregated (DAAM; Tang et al. 2023,
docs/protocol.md#daam): :class:`CrossAttentionRecorder`, shared by the UNets' cross-attention (:mod:`.cross`)
and the MMDiT transformers' joint attention (:mod:`.joint`), and :func:`word_map`.

At every network call, each layer's map of each head is upsampled to the latent grid and clamped at ≥ 0; maps
are averaged over all (layer, head) pairs and summed over calls (denoising steps), giving per-token maps
``[B, L, h, w]`` at latent resolution. A word's map is the mean over its token positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...text import token_positions

__all__ = ["CrossAttentionRecorder", "word_map"]


class CrossAttentionRecorder:
    """What one :func:`record_cross_attention` block recorded; aggregate with :meth:`token_maps`.

    State per recorded layer ``name``: ``sums[name] [B, L, h, w]`` float32 — the sum over calls and kept heads
    of the clamped, upsampled maps; ``heads[name]`` kept heads; ``calls[name]`` calls; ``grid[name]`` the
    layer's own (h', w').
    """

    def __init__(self, layers: Sequence[str], *, resolutions: Iterable[int] | None = None,
                 faithful_half_heads: bool = False, upsample: str = "bicubic"):
        self.layers = list(layers)
        self.resolutions = None if resolutions is None else {int(r) for r in resolutions}
        self.faithful_half_heads = faithful_half_heads
        self.upsample = upsample
        self.sums: dict[str, Tensor] = {}
        self.heads: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.grid: dict[str, tuple[int, int]] = {}
        self.latent_hw: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return (f"CrossAttentionRecorder({len(self.sums)} layers recorded of {len(self.layers)} hooked, "
                f"calls={self.n_calls}, faithful_half_heads={self.faithful_half_heads})")

    # -- hooks -------------------------------------------------------------------------------------------
    def _capture_shape(self, module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        if not isinstance(sample, Tensor) or sample.ndim != 4:
            raise ValueError("attention recording needs the UNet's sample [B, C, h, w] as its first argument")
        self.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    def _layer_grid(self, n: int) -> tuple[int, int]:
        if self.latent_hw is None:
            raise RuntimeError("no UNet call seen: the recorder learns the latent size from the UNet's input")
        H, W = self.latent_hw
        f = 1
        while f <= max(H, W):
            h, w = -(-H // f), -(-W // f)
            if h * w == n:
                return h, w
            f *= 2
        raise ValueError(f"cannot place {n} query positions on a grid downsampled from latents {H}×{W}")

    def __call__(self, name: str, probs: Tensor) -> None:
        B, heads, N, L = probs.shape
        h, w = self._layer_grid(N)
        if self.resolutions is not None and h not in self.resolutions:
            return
        if self.faithful_half_heads:
            probs = probs[:, heads // 2:]  # DAAM's CFG assumption (docs/protocol.md#b10)
        k = probs.shape[1]
        H, W = self.latent_hw
        maps = probs.permute(0, 1, 3, 2).reshape(B, k * L, h, w)
        if (h, w) != (H, W):
            maps = F.interpolate(maps, size=(H, W), mode=self.upsample, align_corners=False)
        maps = maps.clamp_(min=0).view(B, k, L, H, W).sum(dim=1)
        if name in self.sums:
            if self.sums[name].shape != maps.shape:
                raise ValueError(f"layer {name}: map shape changed from {tuple(self.sums[name].shape)} to "
                                 f"{tuple(maps.shape)} (batch or prompt length changed); record each batch in "
                                 "its own record_cross_attention block")
            self.sums[name] += maps
            self.calls[name] += 1
        else:
            self.sums[name] = maps
            self.calls[name] = 1
            self.heads[name] = k
            self.grid[name] = (h, w)

    # -- results -----------------------------------------------------------------------------------------
    @property
    def n_calls(self) -> int:
        """UNet calls recorded (0 before any)."""
        return max(self.calls.values(), default=0)

    def token_maps(self) -> Tensor:
        """Per-token maps ``[B, L, h, w]`` (float32, latent grid): the mean over every recorded (layer, head)
        pair, summed over calls (DAAM's global heat map, before truncation and normalisation)."""
        if not self.sums:
            raise RuntimeError("nothing was recorded: run the UNet inside the record_cross_attention block, and "
                               "check the layer/resolution selection")
        counts = set(self.calls.values())
        if len(counts) != 1:
            raise RuntimeError(f"layers were called different numbers of times: {self.calls}")
        total_heads = sum(self.heads.values())
        return sum(self.sums.values()) / total_heads

    def layer_maps(self) -> dict[str, Tensor]:
        """``{layer: [B, L, h, w]}`` each layer's mean over its kept heads, summed over calls."""
        return {k: v / self.heads[k] for k, v in self.sums.items()}

    def word_maps(self, tokenizer, prompts: str | Sequence[str], words: str | Sequence[str], *,
                  rows: slice | None = None) -> Tensor:
        """``[B, h, w]`` word maps for the recorded batch: row i is the mean of :meth:`token_maps` over the
        token positions of ``words[i]`` in ``prompts[i]`` (a single prompt or word applies to every row).
        ``rows``: only these rows of the recorded batch, e.g. ``slice(B, None)`` for the conditional half of a
        classifier-free-guidance batch ``[uncond, cond]``."""
        maps = self.token_maps()
        if rows is not None:
            maps = maps[rows]
        B = maps.shape[0]
        prompts = [prompts] * B if isinstance(prompts, str) else list(prompts)
        words = [words] * B if isinstance(words, str) else list(words)
        if len(prompts) != B or len(words) != B:
            raise ValueError(f"{len(prompts)} prompts and {len(words)} words for a recorded batch of {B}")
        return torch.stack([word_map(maps[i], token_positions(tokenizer, p, w))
                            for i, (p, w) in enumerate(zip(prompts, words))])


def word_map(token_maps: Tensor, positions: Sequence[int]) -> Tensor:
    """Mean of ``token_maps [..., L, h, w]`` over token ``positions`` → ``[..., h, w]``."""
    if len(positions) == 0:
        raise ValueError("no token positions given")
    L = token_maps.shape[-3]
    bad = [p for p in positions if not 0 <= p < L]
    if bad:
        raise ValueError(f"token positions {bad} are outside the {L} recorded tokens")
    return token_maps[..., list(positions), :, :].mean(dim=-3)
