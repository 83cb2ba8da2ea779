"""Does the model read its words? Measurements of what a text-to-image UNet takes from its prompt.

Every word-level quantity of the paper (a word's CMI, its attention map, the effect of omitting it) assumes
that the UNet reads a prompt through the tokens of its words. A model can instead read the prompt from
tokens that carry all of it at once — in a causal CLIP text encoder, the end token ``<|endoftext|>`` and the
padding after it have seen the whole caption — and then word-level maps measure something else. These
functions tell the two apart for any model with the :class:`~infodecomp.models.Model` interface (shapes-tiny
here, SD 2.1 on a GPU); :mod:`infodecomp.experiments.word_reading` runs them on ShapesWorld with ground truth.

* :func:`token_kinds`: each token position of a prompt as ``"start"``, ``"word"``, ``"end"`` or ``"padding"``.
* :func:`token_attention_mass`: the cross-attention mass each kind of token receives, per layer and noise level.
* :func:`hybrid_embeddings`: one prompt's word tokens with another prompt's end token and padding (the swap
  test: which of the two does the model follow?), and :func:`swap_distances`, its ε̂-space reading.
* :func:`epsilon_change`: how far ε̂ moves when the prompt is edited (a relation flipped, an attribute swapped,
  a colour changed), on shared noise; :func:`text_change`, how far the text encoder's token states move under
  the same edits (a UNet cannot use what its text encoder erased).
* :func:`pixel_auroc`: how well a map ranks the pixels of one region above those of another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .models.attention import capture_cross_attention
from .logsnr import logistic_quadrature
from .text import prompt_token_ids

__all__ = ["TOKEN_KINDS", "token_kinds", "token_attention_mass", "attention_mass_table", "hybrid_embeddings",
           "swap_distances", "epsilon_change", "text_change", "pixel_auroc"]

#: The kinds of token position, in sequence order.
TOKEN_KINDS = ("start", "word", "end", "padding")


def token_kinds(tokenizer, prompt: str) -> list[str]:
    """``[L]`` kinds of the ``L = tokenizer.model_max_length`` positions the text encoder sees for ``prompt``:
    position 0 ``"start"``, then one ``"word"`` per BPE token of the words, one ``"end"``, then
    ``"padding"`` (SD 2.x pads with ``!``; CLIP 1.x with more end tokens: both count as padding here)."""
    n = len(prompt_token_ids(tokenizer, prompt))  # start + words + end
    L = int(tokenizer.model_max_length)
    return ["start"] + ["word"] * (n - 2) + ["end"] + ["padding"] * (L - n)


def _draw(n: int, loc: float, scale: float, clip: float, generator) -> Tensor:
    """``[n]`` log-SNRs from the paper's truncated logistic (loc ± clip·scale)."""
    return logistic_quadrature(n, loc=loc, scale=scale, clip=clip, generator=generator)[0]


def _noisy(x: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
    shape = (-1,) + (1,) * (x.ndim - 1)
    return torch.sigmoid(logsnr).sqrt().view(shape) * x + torch.sigmoid(-logsnr).sqrt().view(shape) * eps


@torch.no_grad()
def token_attention_mass(model, x: Tensor, prompts: Sequence[str], logsnrs: Sequence[float], *,
                         generator: torch.Generator | None = None) -> pd.DataFrame:
    """Where cross-attention looks: the attention mass of each token position, by layer and noise level.

    For each log-SNR λ of ``logsnrs`` the clean latents ``x [B, C, h, w]`` are noised once (fresh ε from
    ``generator``) and the denoiser is called with ``prompts`` (B captions, through ``model.encode_prompts``, so
    a model that hides tokens hides them here too). Each cross-attention layer's probabilities
    ``[B, heads, N, L]`` are averaged over heads and query positions: the mass of every token, which sums to
    1 over the L positions.

    Returns a long DataFrame, one row per (image, layer, λ, position): ``image``, ``layer``, ``logsnr``,
    ``position``, ``kind`` (:func:`token_kinds`), ``word_index`` (1, 2, … for word tokens, else 0) and
    ``mass``. :func:`attention_mass_table` sums it by kind.
    """
    prompts = list(prompts)
    if x.ndim != 4 or x.shape[0] != len(prompts):
        raise ValueError(f"x must be [B, C, h, w] with one prompt per image: x {tuple(x.shape)}, "
                         f"{len(prompts)} prompts")
    cond = model.encode_prompts(prompts).to(x.device)
    kinds = [token_kinds(model.tokenizer, p) for p in prompts]
    rows: list[dict] = []
    current: dict = {}

    def sink(name: str, probs: Tensor) -> None:
        mass = probs.mean(dim=(1, 2)).cpu().numpy()  # [B, L]
        for b in range(mass.shape[0]):
            words = 0
            for pos, kind in enumerate(kinds[b]):
                words += kind == "word"
                rows.append({"image": b, "layer": name, "logsnr": current["logsnr"], "position": pos,
                             "kind": kind, "word_index": words if kind == "word" else 0,
                             "mass": float(mass[b, pos])})

    with capture_cross_attention(model, sink):
        for lam in logsnrs:
            current["logsnr"] = float(lam)
            logsnr = torch.full((x.shape[0],), float(lam), dtype=torch.float32, device=x.device)
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            model.denoiser(_noisy(x, logsnr, eps), logsnr, cond)
    return pd.DataFrame(rows)


def attention_mass_table(frame: pd.DataFrame, by: Sequence[str] = ("layer",)) -> pd.DataFrame:
    """Mean attention mass per token kind (columns ``start, word, end, padding``; each row sums to 1) from
    :func:`token_attention_mass`'s frame, grouped by ``by`` (e.g. ``("layer",)``, ``("logsnr",)``, ``()``)."""
    by = list(by)
    per_image = frame.groupby(["image", "layer", "logsnr", "kind"], as_index=False)["mass"].sum()
    keys = by + ["kind"]
    table = per_image.groupby(keys)["mass"].mean().unstack("kind") if by else \
        per_image.groupby("kind")["mass"].mean().to_frame().T
    return table.reindex(columns=list(TOKEN_KINDS)).fillna(0.0)


def hybrid_embeddings(model, word_prompts: Sequence[str], padding_prompts: Sequence[str]) -> Tensor:
    """Prompt embeddings ``[N, L, D]``: the start and word tokens of ``word_prompts[i]`` and, from the end
    token on, the rows of ``padding_prompts[i]`` (raw text-encoder rows, then the model's own hiding applied,
    so a model that hides end and padding sees only prompt A). Both prompts of a pair must have the same
    number of tokens, so that the end token sits at the same position."""
    a, b = list(word_prompts), list(padding_prompts)
    if len(a) != len(b) or not a:
        raise ValueError(f"need equally many (≥ 1) word and padding prompts, got {len(a)} and {len(b)}")
    for p, q in zip(a, b):
        na, nb = len(prompt_token_ids(model.tokenizer, p)), len(prompt_token_ids(model.tokenizer, q))
        if na != nb:
            raise ValueError(f"{p!r} has {na} tokens and {q!r} {nb}: a hybrid needs prompts of equal token length")
    ea, eb = model.encode_prompts(a, hide=False), model.encode_prompts(b, hide=False)
    L = ea.shape[1]
    words = torch.tensor([[k < len(prompt_token_ids(model.tokenizer, p)) - 1 for k in range(L)] for p in a])
    hybrid = torch.where(words.to(ea.device)[..., None], ea, eb)
    return model.hide_tokens(hybrid, model.token_mask(a))


@torch.no_grad()
def swap_distances(model, x: Tensor, word_prompts: Sequence[str], padding_prompts: Sequence[str], *,
                   n_samples: int = 8, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                   generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """The swap test read in ε̂ space (no image judge needed, so it runs on any model).

    For each pair i, on shared draws (λ, ε) applied to ``x[i]``: ``d_words = E‖ε̂(hybrid) − ε̂(A)‖²`` and
    ``d_padding = E‖ε̂(hybrid) − ε̂(B)‖²``, where A = ``word_prompts[i]``, B = ``padding_prompts[i]`` and the
    hybrid holds A's word tokens and B's end token and padding. Returns ``{"d_words": [N], "d_padding": [N],
    "follows_words": [N] bool}`` (``d_words < d_padding``: the model reads the words). λ from the paper's
    truncated logistic (loc ± clip·scale)."""
    hyb = hybrid_embeddings(model, word_prompts, padding_prompts)
    ea, eb = model.encode_prompts(list(word_prompts)), model.encode_prompts(list(padding_prompts))
    N = x.shape[0]
    if N != hyb.shape[0]:
        raise ValueError(f"x has {N} images for {hyb.shape[0]} prompt pairs")
    d_words, d_pad = torch.zeros(N, dtype=torch.float64), torch.zeros(N, dtype=torch.float64)
    for _ in range(n_samples):
        lam = _draw(N, loc, scale, clip, generator).to(x.device)
        z = _noisy(x, lam, torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
        e = model.denoiser(torch.cat([z] * 3), torch.cat([lam] * 3), torch.cat([hyb, ea, eb])).float().chunk(3)
        d_words += (e[0] - e[1]).flatten(1).pow(2).sum(1).double().cpu()
        d_pad += (e[0] - e[2]).flatten(1).pow(2).sum(1).double().cpu()
    d_words, d_pad = (d_words / n_samples).numpy(), (d_pad / n_samples).numpy()
    return {"d_words": d_words, "d_padding": d_pad, "follows_words": d_words < d_pad}


@torch.no_grad()
def epsilon_change(model, x: Tensor, prompts: Sequence[str], edited: dict[str, Sequence[str]], *,
                   n_samples: int = 8, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                   generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """How far ε̂ moves under prompt edits: for each kind of edit, ``[N]`` values of
    ``E‖ε̂(z | prompt) − ε̂(z | edited prompt)‖²`` (summed over latent dims), on draws (λ, ε) shared by the
    caption and all its edits. ``x [N, C, h, w]`` clean latents of the captions' images; ``edited``: ``{kind:
    N edited prompts}``. λ from the paper's truncated logistic (loc ± clip·scale); the mean is unweighted (an
    expectation over that distribution, not an information integral)."""
    kinds = list(edited)
    N = x.shape[0]
    if len(prompts) != N or any(len(edited[k]) != N for k in kinds):
        raise ValueError(f"need one prompt and one edit of each kind per image ({N} images)")
    emb = model.encode_prompts(list(prompts) + [p for k in kinds for p in edited[k]]).to(x.device)
    M = 1 + len(kinds)
    out = {k: torch.zeros(N, dtype=torch.float64) for k in kinds}
    for _ in range(n_samples):
        lam = _draw(N, loc, scale, clip, generator).to(x.device)
        z = _noisy(x, lam, torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
        e = model.denoiser(torch.cat([z] * M), torch.cat([lam] * M), emb).float().chunk(M)
        for j, k in enumerate(kinds):
            out[k] += (e[0] - e[j + 1]).flatten(1).pow(2).sum(1).double().cpu()
    return {k: (v / n_samples).numpy() for k, v in out.items()}


@torch.no_grad()
def text_change(encode, prompts: Sequence[str], edited: dict[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """How far a text encoder's output moves under prompt edits: for each kind of edit, ``[N]`` values of
    ``‖h(prompt) − h(edited prompt)‖²``, summed over every token position and hidden dimension: everything the
    UNet's cross-attention can read. ``encode(list[str]) -> [N, L, D]`` token states (``Model.encode_prompts``
    for a pipeline, or a bare text encoder's ``last_hidden_state``); ``edited``: ``{kind: N edited prompts}``."""
    kinds = list(edited)
    N = len(prompts)
    if any(len(edited[k]) != N for k in kinds):
        raise ValueError(f"need one edit of each kind per prompt ({N} prompts), got "
                         f"{ {k: len(v) for k, v in edited.items()} }")
    h = encode(list(prompts)).float()
    out = {}
    for k in kinds:
        out[k] = (h - encode(list(edited[k])).float()).flatten(1).pow(2).sum(1).double().cpu().numpy()
    return out


def pixel_auroc(score: Tensor | np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of ``score [H, W]`` separating the ``positive`` pixels from the ``negative``
    ones (bool ``[H, W]`` each): the probability that a random positive pixel scores above a random negative
    one, ties counted half (the Mann–Whitney statistic). 0.5 is chance; < 0.5 means the map points away.
    Raises ``ValueError`` when either set is empty or the shapes differ."""
    s = np.asarray(score.detach().cpu() if isinstance(score, Tensor) else score, dtype=np.float64)
    pos, neg = np.asarray(positive, dtype=bool), np.asarray(negative, dtype=bool)
    if s.shape != pos.shape or s.shape != neg.shape:
        raise ValueError(f"score {s.shape}, positive {pos.shape} and negative {neg.shape} must have one shape "
                         "(upsample the map to the mask first)")
    if not pos.any() or not neg.any():
        raise ValueError(f"AUROC needs both pixel sets non-empty: {int(pos.sum())} positive, {int(neg.sum())} negative")
    a, b = s[pos], s[neg]
    ranks = pd.Series(np.concatenate([a, b])).rank(method="average").to_numpy()[: a.size]
    return float((ranks.sum() - a.size * (a.size + 1) / 2) / (a.size * b.size))
