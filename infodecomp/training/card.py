"""The model card of an exported shapes-tiny pipeline (``README.md`` beside its weights): architecture, training
(with the commands that redo it), the ablations that chose the recipe, the measured quality against the project's
bars, and whether the model reads its words. Text only: the numbers come from :func:`~infodecomp.training.evaluate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from ..data import shapes
from .evaluate import bar_rows
from .train import TrainConfig

__all__ = ["ABLATION_COLUMNS", "ablation_table", "recipe_text", "seed_of", "training_phases", "write_model_card"]


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
    if cfg.get("text_encoder_from"):
        parts.append(f"frozen text encoder from {cfg['text_encoder_from']}")
    if cfg.get("init_from"):
        parts.append(f"UNet started from {cfg['init_from']}")
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
    ("relation flip / colour change (text encoder)",
     lambda q: _num(q["reading"].get("text_sensitivity", {}).get("ratio_relation"), 3)),
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
    if cfg.get("text_encoder_from"):
        cmd += f" --text-encoder-from {cfg['text_encoder_from']}"
    return cmd


def _optional_rows(gen: dict) -> str:
    """Rows of the quality table that older measurements lack."""
    rows = [("… exactly two objects drawn", gen.get("relational_two_objects")),
            ("… the relation right, of the prompts with both objects right", gen.get("relational_relation_if_objects"))]
    return "".join(f"| {what} | {_fmt(d)} | — |\n" for what, d in rows if d)


def training_phases(info: dict) -> list[dict]:
    """The training records of a pipeline, oldest first: each export keeps the record of the pipeline it started
    from (``init_training``), so a model continued from another carries its whole history."""
    chain = []
    while info:
        chain.append(info)
        info = info.get("init_training")
    return chain[::-1]


def _phase_start(c: dict, previous: dict | None, k: int) -> str:
    """What a phase starts from, in words (``k``: the previous phase's number)."""
    frozen = c.get("text_encoder_from")
    encoder = f"the text encoder of the ShapesCLIP in `{frozen}`, frozen" if frozen else ""
    if not c.get("init_from"):
        vae = (f"VAE: not trained here, taken from the pipeline in `{c['vae_from']}` (its weights as they were "
               "exported). " if c.get("vae_from") and not c["vae_steps"] else
               f"Stage 1, VAE: {c['vae_steps']} steps, batch {c['vae_batch']}, AdamW lr {c['vae_lr']}, MSE + "
               f"{c['vae_kl_weight']} · KL. Stage 2, ")
        return vae + (f"UNet from scratch on {encoder}: " if frozen else "UNet and text encoder jointly from scratch: ")
    if not frozen:
        return ("The VAE, UNet and text encoder of phase {k} (its exported float16 weights), the UNet and text encoder "
                "trained further with a fresh optimiser and a new data stream: ").format(k=k)
    if previous is not None and previous["config"].get("text_encoder_from") == frozen:
        return (f"The VAE and UNet of phase {k} (its exported float16 weights) on the same frozen text encoder, the "
                "UNet trained further with a fresh optimiser and a new data stream: ")
    return (f"The VAE and UNet of phase {k} (its exported float16 weights); its text encoder replaced by {encoder}; "
            "the UNet trained further with a fresh optimiser and a new data stream: ")


def _training_text(info: dict, quality: dict) -> str:
    """The model card's Training section: every phase, from the first from scratch to the exported one."""
    phases = training_phases(info)
    lines = []
    for k, ph in enumerate(phases):
        c = ph["config"]
        head = (f"Phase {k + 1}" if len(phases) > 1 else "Training") + f" (seed {c['seed']}). "
        body = _phase_start(c, phases[k - 1] if k else None, k)
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
    n = len(phases)
    work = [f"runs/train/shapes-tiny-phase{k + 1}" for k in range(n - 1)] + ["runs/train/shapes-tiny"]
    cmds = []
    for k, (ph, w) in enumerate(zip(phases, work)):
        c = dict(ph["config"])
        if k:
            c["init_from"] = f"{work[k - 1]}/pipeline"
        out = f"{w}/pipeline" if k + 1 < n else "infodecomp/assets/shapes-tiny"
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


def _clip_row(name: str, e: dict) -> str:
    r, t = e["retrieval"], e["text_change"]["ratio_relation"]
    return (f"| {name} | " + " | ".join(_pct(r[k]) for k in ("vg-relation", "vg-attribution", "coco-order",
                                                              "flickr-order"))
            + f" | {_num(t, 3)} |")


def _shapesclip_text(model_dir: Path) -> str:
    """The card's ShapesCLIP section: the contrastive model whose text tower the UNet conditions on, when shipped."""
    folder = model_dir / "shapesclip"
    if not (folder / "shapesclip.json").is_file():
        return ""
    meta = json.loads((folder / "shapesclip.json").read_text())
    c = meta["config"]
    negs = ", ".join(n.replace("_", " ") for n in c["negatives"]) or "none"
    text = ["## The text encoder: ShapesCLIP", "",
            "As Stable Diffusion 2.1 conditions on OpenCLIP's text encoder, pretrained contrastively and frozen, this "
            "UNet conditions on the text tower of ShapesCLIP, a small image–text contrastive model trained on "
            "ShapesWorld (`infodecomp.models.shapesclip`, trained by `python -m infodecomp.training.shapesclip`). Its "
            "image tower and projection ship in `shapesclip/` (the text tower is this pipeline's `text_encoder/`), so "
            "notebook 02 adds the twins' CLIP row to Table 1 — the paper's comparison of SD with the CLIP whose text "
            "encoder it shares.", "",
            f"Training: {meta['steps']} steps, batch {c['batch']} images with their captions, AdamW lr {c['lr']} "
            f"(warm-up {c['warmup']}), seed {c['seed']}, a symmetric InfoNCE loss with temperature 1/{c['logit_scale']:g}; "
            f"{100 * c['relation_boost']:.0f}% of the examples two-object relational captions, the rest ShapesWorld's natural "
            f"mix; hard negatives (extra captions each image "
            f"must rank below its own): {negs}. Wall time: {meta['wall_seconds'] / 60:.0f} minutes on 1 CPU thread."]
    evals = {p.stem.removeprefix("shapesclip-"): json.loads(p.read_text())
             for p in sorted((model_dir / "ablations").glob("shapesclip-*.json"))}
    if (folder / "evaluation.json").is_file():
        evals.setdefault("shipped", json.loads((folder / "evaluation.json").read_text()))
    if evals:
        n = next(iter(evals.values()))["n"]
        text += ["", f"Retrieval by cosine similarity on the ARO twins (held-out seed "
                 f"{next(iter(evals.values()))['seed']}, n = {n} rows each, ± one standard error), and how far a "
                 "relation flip moves the text encoder's token states against a colour change (summed over tokens):",
                 "", "| recipe | VG-Relation % | VG-Attribution % | COCO-Order % | Flickr-Order % | text relation flip "
                 "/ colour change |", "|---|---|---|---|---|---|"]
        text += [_clip_row(name, e) for name, e in evals.items()]
    return "\n".join(text) + "\n\n"


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
    head = (f"Short runs on the same data seed, each measured by `python -m infodecomp.training compare` "
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

{_shapesclip_text(model_dir)}## Training

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


def seed_of(quality: dict) -> int:
    return quality.get("seed", 0)
