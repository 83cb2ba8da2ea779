"""Does the model read its words? The diagnostics of :mod:`infodecomp.diagnostics` on ShapesWorld, with
ground truth, as the model card and notebook 00 report them.

* :func:`attention_mass`: cross-attention mass per token kind (start, words, end, padding) by layer and log-SNR.
* :func:`swap_test`: images generated from hybrid embeddings — one prompt's word tokens with another prompt's
  end token and padding — judged by :func:`~infodecomp.data.shapes.parse_scene`: does the image follow the
  words or the padding? Also the ε̂-space reading (:func:`~infodecomp.diagnostics.swap_distances`).
* :func:`text_sensitivity`: how far the text encoder's token states move under the same edits.
* :func:`edit_sensitivity`: how far ε̂ moves when a relation is flipped and when the two objects' colours are
  exchanged, relative to changing one colour word.
* :func:`sensitivity_ratios`: the two side by side (text encoder and ε̂, relation flip and colour exchange, each
  ÷ one colour changed): where a relation is lost, in the text encoder or in the UNet.
* :func:`word_map_quality`: DAAM word maps of colour and shape words — AUROC object-vs-background and
  own-object-vs-the-other-object, and mIoU on the COCO-IT twin against the whole-image baseline.

Every function takes ``seed`` and draws its scenes and noise from generators seeded by it (apart from the
training stream, whose generators are seeded by (seed, stage, step)); results carry ``n`` and standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data import shapes
from ..diagnostics import attention_mass_table, epsilon_change, pixel_auroc, swap_distances, text_change
from ..diagnostics import token_attention_mass
from ..diagnostics import hybrid_embeddings
from ..editing import sample
from ..metrics import binomial, iou_per_threshold, mean_se, select_threshold, upsample_bilinear, whole_image_iou
from ..text import token_positions
from .heatmaps import daam_maps

__all__ = ["attention_mass", "swap_test", "edit_sensitivity", "text_sensitivity", "text_edit_ratios",
           "sensitivity_ratios", "word_map_quality", "relational_edits", "mean_se", "binomial"]

#: The noise levels :func:`attention_mass` reports (log-SNR, nats): from nearly pure noise to nearly clean.
MASS_LOGSNRS = (-4.0, -2.0, 0.0, 2.0, 4.0, 6.0)


def _tensor(images) -> torch.Tensor:
    """ShapesWorld scenes (32-px uint8) → ``[B, 3, 32, 32]`` in [0, 1]; callers encode them with
    ``resize="bicubic"``, so a model at another resolution (SD 2.1: 512 px) sees them at its own size."""
    return torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in images])


def _scene_size(image) -> np.ndarray:
    """A generated image (``[H, W, 3]`` float in [0, 1] or uint8) at ShapesWorld's 32×32 pixels (area
    averaging), so :func:`~infodecomp.data.shapes.parse_scene`, whose thresholds are in 32-px pixels, reads
    the images of a model of any resolution."""
    im = np.asarray(image)
    if im.dtype == np.uint8:
        im = im.astype(np.float32) / 255
    if im.shape[:2] == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE):
        return im
    t = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(t, size=(shapes.IMAGE_SIZE,) * 2, mode="area")[0].permute(1, 2, 0).numpy()


def _relational_samples(n: int, seed: int, salt: int) -> list[shapes.Sample]:
    rng = np.random.default_rng([seed, salt])
    return [shapes.sample_kind(rng, "relation", 2, both_distinct=True) for _ in range(n)]


# ── attention mass ──────────────────────────────────────────────────────────────────────────────────────

def attention_mass(model, n: int = 32, *, seed: int = 0, logsnrs=MASS_LOGSNRS, batch: int = 16) -> dict:
    """Cross-attention mass per token kind, on ``n`` held-out scenes with their captions (the natural mix).

    Returns ``{"overall": {kind: mass}, "by_layer": DataFrame layer × kind, "by_logsnr": DataFrame λ × kind,
    "n": n}``; masses are means over images, heads and query positions and sum to 1 over the kinds."""
    rng = np.random.default_rng([seed, 31])
    samples = [shapes.random_sample(rng) for _ in range(n)]
    g = torch.Generator().manual_seed(seed)
    frames = []
    for start in range(0, n, batch):
        chunk = samples[start:start + batch]
        x = model.encode_images(_tensor([s.image for s in chunk]), resize="bicubic")
        f = token_attention_mass(model, x, [s.caption for s in chunk], logsnrs, generator=g)
        f["image"] += start
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    overall = attention_mass_table(frame, by=()).iloc[0].to_dict()
    return {"overall": {k: float(v) for k, v in overall.items()}, "by_layer": attention_mass_table(frame, ("layer",)),
            "by_logsnr": attention_mass_table(frame, ("logsnr",)), "n": n}


# ── swap test ───────────────────────────────────────────────────────────────────────────────────────────

def _swap_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` pairs of single-object prompts ("a red circle", "a blue square") differing in colour AND shape."""
    rng = np.random.default_rng([seed, 41])
    cols, shp = tuple(shapes.COLOURS), shapes.SHAPES
    pairs = []
    for _ in range(n):
        ca, cb = rng.choice(len(cols), 2, replace=False)
        sa, sb = rng.choice(len(shp), 2, replace=False)
        pairs.append((f"a {cols[ca]} {shp[sa]}", f"a {cols[cb]} {shp[sb]}"))
    return pairs


def _follows(image, prompt: str) -> bool:
    parsed = shapes.parse_scene(_scene_size(image))
    return len(parsed) == 1 and shapes.caption_matches(prompt, parsed, check_size=False)


@torch.no_grad()
def swap_test(model, n: int = 96, *, seed: int = 0, steps: int = 25, guidance: float = 3.0,
              n_samples: int = 8, batch: int = 32, keep_images: int = 0) -> dict:
    """Generate from hybrids of ``n`` prompt pairs (A's start and word tokens, B's end token and padding;
    A and B differ in colour and shape) and judge each image with ``parse_scene``: it follows the words (one
    object, A's colour and shape), the padding (B's), or neither. Generation: DDIM ``steps``, classifier-free
    guidance ``guidance`` with the null prompt, noise seeded by ``seed``. Also the ε̂-space reading on the
    images of A: the fraction of pairs whose hybrid ε̂ is nearer A's than B's.

    Returns ``{"follows_words", "follows_padding", "neither", "eps_follows_words"}`` as binomial dicts, plus
    ``"d_words"`` / ``"d_padding"`` (mean ± se of the ε̂ distances). ``keep_images``: also return the first
    that many generated images with their pairs and verdicts (``"examples"``), for a gallery."""
    pairs = _swap_pairs(n, seed)
    words = padding = 0
    examples = []
    for start in range(0, n, batch):
        chunk = pairs[start:start + batch]
        hyb = hybrid_embeddings(model, [a for a, _ in chunk], [b for _, b in chunk])
        g = torch.Generator().manual_seed(seed + start)
        images = model.decode(sample(model, hyb, steps=steps, guidance_scale=guidance, generator=g,
                                     batch_size=batch), output_type="np")
        for (a, b), im in zip(chunk, images):
            fa, fb = _follows(im, a), _follows(im, b)
            words += fa
            padding += fb
            if len(examples) < keep_images:
                examples.append({"image": im, "words": a, "padding": b,
                                 "follows": "words" if fa else "padding" if fb else "neither"})
    # ε̂ reading: the images of A (rendered scenes of A's object at a random place)
    rng = np.random.default_rng([seed, 43])
    scenes = [shapes.place(rng, [(a.split()[1], a.split()[2], shapes._pick(rng, tuple(shapes.SIZES)))])
              for a, _ in pairs]
    x = model.encode_images(_tensor([shapes.render(s) for s in scenes]), resize="bicubic")
    d = swap_distances(model, x, [a for a, _ in pairs], [b for _, b in pairs], n_samples=n_samples,
                       generator=torch.Generator().manual_seed(seed + 1))
    return {"follows_words": binomial(words, n), "follows_padding": binomial(padding, n),
            "neither": binomial(n - words - padding, n),
            "eps_follows_words": binomial(int(d["follows_words"].sum()), n),
            "d_words": mean_se(d["d_words"]), "d_padding": mean_se(d["d_padding"]),
            "steps": steps, "guidance": guidance, "examples": examples}


# ── ε̂ sensitivity to edits ─────────────────────────────────────────────────────────────────────────────

def _relational_edits(n: int, seed: int) -> tuple[list[shapes.Sample], list[dict[str, str]]]:
    """The ``n`` relational captions and their edits that :func:`edit_sensitivity` and :func:`text_sensitivity`
    share for a ``seed`` (so the two readings compare the same edits)."""
    samples = _relational_samples(n, seed, 51)
    rng = np.random.default_rng([seed, 52])
    return samples, [shapes.relational_edits(s, rng) for s in samples]


def _edit_ratios(out: dict[str, list]) -> dict:
    """Per-edit changes ``{edit: [n] changes}`` (with ``colour_swap``, ``relation_flip``, ``attribute_swap``) →
    per edit mean ± se, and ``ratio_relation`` / ``ratio_attribute``: the mean over examples ± se of the edit's
    change ÷ the colour change's."""
    res = {k: mean_se(v) for k, v in out.items()}
    colour = np.asarray(out["colour_swap"])
    res["ratio_relation"] = mean_se(np.asarray(out["relation_flip"]) / colour)
    res["ratio_attribute"] = mean_se(np.asarray(out["attribute_swap"]) / colour)
    return res


def edit_sensitivity(model, n: int = 96, *, seed: int = 0, n_samples: int = 8, batch: int = 32) -> dict:
    """``E‖ε̂(z|caption) − ε̂(z|edited)‖²`` for a relation flip, an attribute (colour) swap between the two
    objects and a single colour change, on ``n`` relational scenes (shared draws per scene). Returns, per
    edit, the mean ± se, and ``ratio_relation`` / ``ratio_attribute``: the mean over scenes of the edit's
    change divided by the colour change's (± se over scenes)."""
    samples, edits = _relational_edits(n, seed)
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {k: [] for k in edits[0]}
    for start in range(0, n, batch):
        chunk = range(start, min(n, start + batch))
        x = model.encode_images(_tensor([samples[i].image for i in chunk]), resize="bicubic")
        d = epsilon_change(model, x, [samples[i].caption for i in chunk],
                           {k: [edits[i][k] for i in chunk] for k in out}, n_samples=n_samples, generator=g)
        for k in out:
            out[k].extend(d[k].tolist())
    res = _edit_ratios(out)
    res["n_samples"] = n_samples
    return res


def text_edit_ratios(encode, samples, edits, *, batch: int = 32) -> dict:
    """How far a text encoder's token states move under relational edits, against a colour change: the one
    reading behind :func:`text_sensitivity` (a diffusion model's encoder) and
    :func:`infodecomp.training.shapesclip.text_edit_change` (ShapesCLIP's).

    ``encode(list[str]) -> [N, L, D]`` token states; ``samples``: ShapesWorld samples with relational captions;
    ``edits``: per sample, ``{edit: edited caption}`` of :func:`infodecomp.data.shapes.relational_edits`, with a
    ``colour_swap`` (one colour word changed). Captions are encoded ``batch`` at a time
    (:func:`infodecomp.diagnostics.text_change`, all positions). Returns per edit the mean ± se over captions of
    ``‖Δh‖²``, and ``ratio_relation`` / ``ratio_attribute``: the mean over captions ± se of the relation flip's
    and the attribute swap's change ÷ the colour change."""
    out: dict[str, list] = {k: [] for k in edits[0]}
    for start in range(0, len(samples), batch):
        chunk = range(start, min(len(samples), start + batch))
        d = text_change(encode, [samples[i].caption for i in chunk], {k: [edits[i][k] for i in chunk] for k in out})
        for k in out:
            out[k].extend(d[k].tolist())
    return _edit_ratios(out)


def text_sensitivity(model, n: int = 96, *, seed: int = 0, batch: int = 32) -> dict:
    """How far the text encoder's token states (``model.encode_prompts``, all positions) move under the edits of
    :func:`infodecomp.data.shapes.relational_edits`, on ``n`` relational captions: per edit mean ± se of ``‖Δh‖²``, and
    ``ratio_relation`` / ``ratio_attribute`` against the colour change (mean over captions ± se;
    :func:`text_edit_ratios`). Beside :func:`edit_sensitivity` this locates a lost relation: in the text encoder
    (both ratios ≈ 0) or in the UNet (the encoder's ratio large, ε̂'s ≈ 0). Same captions and edits as
    :func:`edit_sensitivity` for a ``seed``."""
    samples, edits = _relational_edits(n, seed)
    return text_edit_ratios(model.encode_prompts, samples, edits, batch=batch)


#: The readings :func:`sensitivity_ratios` puts side by side: (name, where it reads the prompt).
SENSITIVITY_READINGS = (("text encoder", "token states ‖Δh‖², all positions"),
                        ("ε̂", "E‖Δε̂‖² on shared draws"))


def sensitivity_ratios(text: dict, eps: dict) -> pd.DataFrame:
    """The text encoder's ratios (:func:`text_sensitivity`) beside ε̂'s (:func:`edit_sensitivity`): one row per
    (reading, edit) with the mean over scenes of the edit's change ÷ one colour changed, its standard error and
    ``n``. Edits: ``relation_flip`` ("left of" ↔ "right of", …) and ``attribute_swap`` (the two colours
    exchanged). A relation kept by the encoder but not by ε̂ is lost in the UNet; lost by both, in the encoder."""
    rows = []
    for (reading, what), res in zip(SENSITIVITY_READINGS, (text, eps)):
        for edit, key in (("relation_flip", "ratio_relation"), ("attribute_swap", "ratio_attribute")):
            r = res[key]
            rows.append({"reading": reading, "edit": edit, "ratio": float(r["value"]),
                         "stderr": float(r["stderr"]), "n": int(r["n"]), "measures": what})
    return pd.DataFrame(rows)


# ── word maps ───────────────────────────────────────────────────────────────────────────────────────────

def _map32(m: torch.Tensor) -> np.ndarray:
    return upsample_bilinear(m.float(), (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)).numpy()


@torch.no_grad()
def word_map_quality(model, n: int = 64, *, seed: int = 0, steps: int = 50, n_localization: int = 64,
                     batch: int = 16, progress: bool = False) -> dict:
    """DAAM word maps (DDIM inversion + regeneration, ``steps`` each way, all heads) judged against the
    scenes' masks, upsampled bilinearly to 32×32 pixels.

    1. ``n`` two-object relational scenes (distinct colours and shapes): for each object's colour word and
       shape word, AUROC of its map for its object's pixels against the background (no object), and against
       the other object's pixels. Mean ± se per word type (``colour``, ``shape``), over (scene, object).
    2. ``n_localization`` rows of the COCO-IT twin: mIoU of the DAAM map at the oracle threshold (the paper's
       selection, docs/protocol.md#b25) against the whole-image baseline, and the ratio of the two.
    """
    samples = _relational_samples(n, seed, 61)
    auc: dict[str, dict[str, list]] = {t: {"background": [], "other": []} for t in ("colour", "shape")}
    for start in tqdm(range(0, n, batch), desc="word maps", disable=not progress, leave=False):
        chunk = samples[start:start + batch]
        prompts = [s.caption for s in chunk]
        first_colour = [next(w.text for w in s.words if w.text in shapes.COLOURS) for s in chunk]
        res = daam_maps(model, _tensor([s.image for s in chunk]), prompts, first_colour, steps=steps)
        for k, s in enumerate(chunk):
            om = s.object_masks()
            bg = ~om.any(0)
            for w in s.words:
                kind = "colour" if w.text in shapes.COLOURS else "shape" if w.pos == "noun" else None
                if kind is None:
                    continue
                own = w.objects[0]
                m = _map32(res.tokens[k][token_positions(model.tokenizer, s.caption, w.text)].mean(0))
                auc[kind]["background"].append(pixel_auroc(m, om[own], bg))
                auc[kind]["other"].append(pixel_auroc(m, om[own], om[1 - own]))
    rows = shapes.twin("coco-it", n_localization, seed=seed)
    ious, whole = [], []
    for start in range(0, n_localization, batch):
        chunk = [rows[i] for i in range(start, min(n_localization, start + batch))]
        res = daam_maps(model, [r["image"] for r in chunk], [r["caption"] for r in chunk],
                        [r["word"] for r in chunk], steps=steps)
        masks = torch.from_numpy(np.stack([np.asarray(r["mask"], dtype=bool) for r in chunk]))
        ious.append(iou_per_threshold(upsample_bilinear(res.word, tuple(masks.shape[-2:])), masks))
        whole.extend(whole_image_iou(masks).tolist())
    sel = select_threshold(np.concatenate(ious))
    whole_se = mean_se(whole)
    return {
        "auroc": {t: {against: mean_se(v) for against, v in d.items()} for t, d in auc.items()},
        "daam_miou": {"value": sel.miou, "stderr": sel.stderr, "n": sel.n, "threshold": sel.threshold},
        "whole_image_miou": whole_se,
        "miou_ratio": sel.miou / whole_se["value"],
        "steps": steps,
    }
