"""One conditioning tensor for networks that take several inputs (docs/architecture.md#the-denoiser-interface: ``cond [B, ...]`` is ONE tensor).

The estimators concatenate, index and expand ``cond`` along dim 0 and compare conditions bitwise, so every input a
family's network reads besides the noisy latent must travel in the same tensor. A :class:`CondLayout` packs

    cond [B, L + r, D] = [ token states (L rows)  |  extra rows: cat(vector_1, vector_2, …, zeros) ]

where the token states are what the network attends to (L text tokens of width D) and the ``r = ceil(Σ sizes / D)``
extra rows hold the per-prompt vectors flattened and zero-padded (SDXL: the pooled text embedding and the six
``add_time_ids``; SD3 and Flux: the pooled embedding). The adapter unpacks them before every network call, so the
extra rows are never attended to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CondLayout"]


@dataclass(frozen=True)
class CondLayout:
    """Layout of a packed conditioning tensor ``[B, tokens + rows, width]``.

    tokens: L, the token-state rows (attention keys). width: D. vectors: ``((name, size), …)`` packed in this
    order after the tokens.
    """

    tokens: int
    width: int
    vectors: tuple[tuple[str, int], ...]

    def __post_init__(self):
        if self.tokens < 1 or self.width < 1 or any(size < 1 for _, size in self.vectors):
            raise ValueError(f"a CondLayout needs tokens >= 1, width >= 1 and vector sizes >= 1, got {self}")

    @property
    def rows(self) -> int:
        """Extra rows holding the vectors: ``ceil(Σ sizes / width)``."""
        return math.ceil(sum(size for _, size in self.vectors) / self.width)

    @property
    def length(self) -> int:
        """``tokens + rows``: the size of dim 1 of a packed tensor."""
        return self.tokens + self.rows

    @property
    def shape(self) -> tuple[int, int]:
        """``(length, width)``: a packed tensor is ``[B, *shape]``."""
        return self.length, self.width

    def pack(self, tokens: Tensor, **vectors: Tensor) -> Tensor:
        """``tokens [B, L, D]`` and one ``[B, size]`` tensor per vector → ``cond [B, L + rows, D]`` in
        ``tokens``' dtype (vectors are cast to it)."""
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (self.tokens, self.width):
            raise ValueError(f"token states must be [B, {self.tokens}, {self.width}], got {tuple(tokens.shape)}")
        names = [name for name, _ in self.vectors]
        if sorted(vectors) != sorted(names):
            raise ValueError(f"expected the vectors {names}, got {sorted(vectors)}")
        B = tokens.shape[0]
        flat = []
        for name, size in self.vectors:
            v = vectors[name]
            if v.ndim != 2 or tuple(v.shape) != (B, size):
                raise ValueError(f"vector {name!r} must be [{B}, {size}], got {tuple(v.shape)}")
            flat.append(v.to(device=tokens.device, dtype=tokens.dtype))
        extra = torch.cat(flat, 1)
        pad = self.rows * self.width - extra.shape[1]
        extra = torch.cat([extra, extra.new_zeros(B, pad)], 1).view(B, self.rows, self.width)
        return torch.cat([tokens, extra], 1)

    def check(self, cond: Tensor) -> None:
        """Raise ``ValueError`` unless ``cond`` is ``[B, length, width]``."""
        if not isinstance(cond, Tensor) or cond.ndim != 3 or tuple(cond.shape[1:]) != self.shape:
            got = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a packed conditioning tensor [B, {self.length}, {self.width}] "
                             f"({self.tokens} token rows + {self.rows} rows of {[n for n, _ in self.vectors]}), as "
                             f"Model.encode_prompts returns it; got {got}")

    def unpack(self, cond: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """``cond [B, L + rows, D]`` → ``(tokens [B, L, D], {name: [B, size]})`` (views where possible)."""
        self.check(cond)
        B = cond.shape[0]
        flat = cond[:, self.tokens:].reshape(B, self.rows * self.width)
        out, start = {}, 0
        for name, size in self.vectors:
            out[name] = flat[:, start:start + size]
            start += size
        return cond[:, :self.tokens], out
