"""What the model card of shapes-tiny reports, measured on held-out ShapesWorld draws (generators seeded apart
from the training stream): the VAE's scene recovery (``parse_scene`` of reconstructions), generation accuracy of
single-object and two-object relational prompts (DDIM, classifier-free guidance), how much of the pixel CMI of a
colour or shape word lies inside that word's object mask, and the word-reading battery; the project's bars for
these numbers (:data:`BARS`), and their record for the README (:func:`record_quality`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import shapes
from ..digest import weights_digest
from ..editing import sample
from ..experiments import word_reading as wr
from ..estimators import pointwise_information
from ..metrics import binomial, upsample_bilinear
from ..models import load_model
from ..results import Recorder

__all__ = ["BARS", "bar_rows", "cmi_mass_inside", "compare_recipes", "evaluate", "generate_images",
           "generation_accuracy", "record_quality", "vae_recovery", "word_reading"]


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
    return binomial(hits, n)


@torch.no_grad()
def generate_images(model, prompts: list[str], *, steps: int = 50, guidance: float = 4.0, seed: int = 0,
                    batch: int = 32, stock: bool = False) -> list[np.ndarray]:
    """Images ``[32, 32, 3]`` in [0, 1] from DDIM with classifier-free guidance through the model's denoiser
    (:func:`infodecomp.editing.sample`; the stock pipeline's algorithm, with the model's token mask). Batch
    ``k`` draws its noise from a generator seeded ``seed + k·batch``. ``stock=True``: the diffusers
    pipeline's own ``__call__`` instead (what a user of a stock ``StableDiffusionPipeline`` gets: no token
    mask), with the same noise."""
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
        "single_object": binomial(single_hits, n),
        "relational": binomial(sum(r["match"] for r in reports), n),
        "relational_objects_only": binomial(sum(r["objects"] for r in reports), n),
        "relational_two_objects": binomial(sum(r["count"] for r in reports), n),
        # the relation alone, where both objects were drawn right (None when no prompt got that far)
        "relational_relation_if_objects": (binomial(sum(r["objects"] and r["relation"] for r in reports),
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
        "rows_with_majority_inside": binomial(int((inside > 0.5).sum()), n),
        "n_samples": n_samples,
    }


def word_reading(model, *, n: int = 96, seed: int = 0, daam_steps: int = 50) -> dict:
    """The "does the model read its words?" battery (:mod:`infodecomp.experiments.word_reading`) at the
    model card's sizes: attention mass per token kind, the swap test, ε̂ sensitivity to edits, word maps."""
    mass = wr.attention_mass(model, n=max(16, n // 3), seed=seed)
    return {
        "attention_mass": {"overall": mass["overall"], "n": mass["n"],
                           "by_layer": {k: v for k, v in mass["by_layer"].to_dict("index").items()},
                           "by_logsnr": {str(k): v for k, v in mass["by_logsnr"].to_dict("index").items()}},
        "swap": wr.swap_test(model, n=n, seed=seed),
        "sensitivity": wr.edit_sensitivity(model, n=n, seed=seed),
        "text_sensitivity": wr.text_sensitivity(model, n=n, seed=seed),
        "word_maps": wr.word_map_quality(model, n=max(16, 2 * n // 3), n_localization=max(16, 2 * n // 3),
                                         seed=seed, steps=daam_steps),
    }


def evaluate(model_dir: str | Path, *, n: int = 192, steps: int = 50, guidance: float = 3.0, seed: int = 0,
             reading: bool = True) -> dict:
    """Everything the model card reports, on held-out draws seeded by ``seed``: VAE recovery, generation
    accuracy, pixel CMI inside the word's object and (``reading``) the word-reading battery."""
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


def compare_recipes(pipeline_dirs: list[str], *, n: int = 96, seed: int = 1, steps: int = 50,
                    guidance: float = 3.0, out: str | Path | None = None, note: str = "") -> list[dict]:
    """Evaluate exported pipelines side by side (same prompts, seeds and settings), caching each result in
    ``<dir>/evaluation-seed<seed>-n<n>.json``; write the list to ``out`` (JSON) if given, with ``note`` (what the
    table shows, in words; the model card prints it above the table)."""
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
                                         "note": note, "entries": entries}, indent=1))
    return entries


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
    ("text encoder's token states: change of a relation flip ÷ that of a colour change",
     "reading.text_sensitivity.ratio_relation", 0.10, "×"),
    ("ε̂ change of a relation flip ÷ that of a colour swap", "reading.sensitivity.ratio_relation", 0.10, "×"),
)


def _get(d: dict, path: str):
    for k in path.split("."):
        if d is None:
            return None
        d = d.get(k)
    return d


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


def record_quality(quality: dict, model_dir: str | Path, *, root: str | Path = "figures") -> Path:
    """Record the model card's headline numbers in ``figures/shapes-tiny/00_model_quality.json``, from which
    the README's results tables are generated."""
    gen, cmi = quality["generation"], quality["cmi"]
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
