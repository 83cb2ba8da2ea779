"""The paper's claims, checked on a model: each one a paired difference with an interval and a verdict.

Every claim of the paper that this project can test is stated here as a difference that the claim says is
positive — "the information score beats the denoising-error score" is ``accuracy(i^o) − accuracy(−MMSE) > 0`` on
the same examples — read from the numbers the notebooks record (``figures/<model>/<notebook>.json``, written by
:func:`infodecomp.results.record`). The verdict rule is the same for all of them:

* **holds** when the 95 % interval of the difference (value ± 1.96 standard errors) lies above 0;
* **fails** when it lies below 0 (the opposite is shown);
* **inconclusive** when it contains 0, or when the numbers were not recorded.

Differences are paired where both sides come from the same examples (same images, same draws); the MI–CMI
correlation contrast compares two independent sets of images, so its standard error is the root sum of squares.

Standard library only: ``scripts/update_claims.py`` runs it before the package's dependencies exist. Repository
tooling, not part of the package: the numbers it reads are the package's output.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .markers import replace_block

__all__ = ["Claim", "CLAIMS", "Verdict", "verdict", "evaluate_claims", "claims_markdown"]

Z95 = 1.959964


@dataclass(frozen=True)
class Claim:
    """One claim: where the paper makes it, what it says, the paper's numbers, and how to read the
    difference off the recorded results. ``key`` names a recorded ``{value, stderr}`` that IS the
    difference; or ``key`` − ``minus`` of two independent recorded estimates. ``scale`` × for display
    (100 for accuracies and mIoU in points). ``against``: the provenance key that names what the difference was
    measured against, where the notebook chooses it (the CLIP of Table 1), shown in the "measured with" column."""

    source: str
    claim: str
    paper: str
    notebook: str
    key: str
    minus: str | None = None
    scale: float = 1.0
    unit: str = ""
    against: str | None = None


CLAIMS: tuple[Claim, ...] = (
    *(Claim("Table 1 (Sec. 3.1), " + name, "relation testing: the information score i^o beats the denoising-error "
            "score −MMSE (DiffITM)", paper, "02_relation_testing", f"{ds}_info_o_minus_mmse", scale=100,
            unit=" points")
      for ds, name, paper in (("vg-attribution", "VG-Attribution", "72.0 vs 62.9 % (+9.1)"),
                              ("vg-relation", "VG-Relation", "69.1 vs 50.0 % (+19.1)"),
                              ("coco-order", "COCO-Order", "40.1 vs 23.5 % (+16.6)"),
                              ("flickr-order", "Flickr30k-Order", "49.3 vs 33.2 % (+16.1)"))),
    # Sec. 3.1: "Stable Diffusion improves over OpenCLIP with the same text encoder"; the notebook pairs i^o with
    # the CLIP whose text encoder the model shares (ShapesCLIP for shapes-tiny, OpenCLIP ViT-H/14 for SD 2.1) and
    # names it in the provenance; without one the rows are not recorded
    *(Claim("Table 1 (Sec. 3.1), " + name, "relation testing: Stable Diffusion's information score i^o beats the "
            "CLIP whose text encoder it shares", paper, "02_relation_testing", f"{ds}_info_o_minus_clip", scale=100,
            unit=" points", against="clip_baseline_name")
      for ds, name, paper in (("vg-attribution", "VG-Attribution", "72.0 vs 64.6 % (+7.4)"),
                              ("vg-relation", "VG-Relation", "69.1 vs 51.4 % (+17.7)"),
                              ("coco-order", "COCO-Order", "40.1 vs 32.8 % (+7.3)"),
                              ("flickr-order", "Flickr30k-Order", "49.3 vs 40.5 % (+8.8)"))),
    Claim("Fig. 2 (Sec. 3.2)", "CMI is more object-focused than MI: more of a word's pixel CMI than of its pixel MI "
          "lies inside the word's object", "qualitative (the figure)", "05_word_localization",
          "mass_inside_cmi_minus_mi", scale=100, unit=" points"),
    Claim("Table 3 (Sec. 3.2)", "CMI localizes words: its mIoU beats the whole-image mask",
          "32.3 vs 14.9 % (+17.4), 50 steps", "05_word_localization", "miou_cmi_minus_whole_image", scale=100,
          unit=" points"),
    Claim("Table 3 (Sec. 3.2)", "Attention+Information (attention collected under information-style noising) "
          "beats Attention (DAAM)", "42.5 vs 34.5 % (+8.0), 50 steps", "05_word_localization",
          "miou_attn_info_minus_daam", scale=100, unit=" points"),
    Claim("Table 4 (Sec. 3.3), pixel level", "CMI predicts where an omit edit changes the image better than "
          "attention does (Pearson r with the change, mean over images)", "0.27 vs 0.21 (+0.06)",
          "06_prompt_intervention", "pearson_pixel_cmi_minus_attention"),
    Claim("Table 4 (Sec. 3.3), image level", "CMI predicts how much an omit edit changes the image better than "
          "attention does (Pearson r across images)", "0.34 vs 0.24 (+0.10)", "06_prompt_intervention",
          "pearson_image_cmi_minus_attention"),
    Claim("App. C.1", "image-level MI and CMI agree for nouns far more than for abstract words (Pearson r, "
          "nouns minus abstract words)", "0.89 vs 0.17 (+0.72)", "07_image_level_information",
          "pearson_mi_cmi_noun", minus="pearson_mi_cmi_abstract"),
)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    value: float | None       # the difference (unscaled), None when not recorded
    stderr: float | None
    verdict: str              # "holds" | "fails" | "inconclusive"
    provenance: dict


def verdict(value: float | None, stderr: float | None) -> str:
    """The rule of the module docstring: ``"holds"``, ``"fails"`` or ``"inconclusive"``."""
    if value is None or stderr is None or not math.isfinite(value) or not math.isfinite(stderr):
        return "inconclusive"
    if value - Z95 * stderr > 0:
        return "holds"
    if value + Z95 * stderr < 0:
        return "fails"
    return "inconclusive"


def _entry(numbers: dict, key: str) -> tuple[float | None, float | None]:
    e = numbers.get(key)
    if isinstance(e, dict):
        return float(e["value"]), (None if e.get("stderr") is None else float(e["stderr"]))
    return None, None


def evaluate_claims(figures: str | Path, claims=CLAIMS) -> list[Verdict]:
    """Read ``figures/<notebook>.json`` (one model's folder) and judge every claim."""
    out, cache = [], {}
    for c in claims:
        if c.notebook not in cache:
            path = Path(figures) / f"{c.notebook}.json"
            cache[c.notebook] = json.loads(path.read_text()) if path.exists() else {}
        numbers = cache[c.notebook]
        value, se = _entry(numbers, c.key)
        if c.minus is not None:
            v2, se2 = _entry(numbers, c.minus)
            value = None if value is None or v2 is None else value - v2
            se = None if se is None or se2 is None else math.hypot(se, se2)
        out.append(Verdict(c, value, se, verdict(value, se), numbers.get("_provenance", {})))
    return out


def _number(v: Verdict) -> str:
    if v.value is None:
        return "not recorded"
    s, d = v.claim.scale, 1 if v.claim.scale == 100 else 3
    text = f"{s * v.value:+.{d}f}"
    if v.stderr is not None:
        lo, hi = s * (v.value - Z95 * v.stderr), s * (v.value + Z95 * v.stderr)
        text += f" ± {s * v.stderr:.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}]"
    return text + v.claim.unit


def _prov(p: dict, against: str | None = None) -> str:
    parts = [str(p.get("revision", "")) or None, p.get("protocol"),
             None if p.get("seed") is None else f"seed {p['seed']}",
             None if p.get("n_items") is None else f"n = {p['n_items']}",
             None if p.get("dtype") in (None, "float32", "torch.float32") else str(p["dtype"]),
             None if against is None or not p.get(against) else f"against {p[against]}"]
    return ", ".join(str(x) for x in parts if x)


def claims_markdown(verdicts: list[Verdict], model: str, current: str | None = None) -> str:
    """The claims table: claim, the paper's numbers, the model's difference ± se [95 % interval], verdict.

    ``current``: the version of the model's weights as committed now (``"sha256:…"``, see
    :func:`infodecomp.digest.weights_version`). A row recorded on other weights is marked so, and a line above
    the table says which rows are stale and how to rebuild them: a retrained model never passes off the
    previous weights' numbers as its own."""
    lines = []
    stale = sorted({str(v.provenance.get("revision")) for v in verdicts
                    if current is not None and v.provenance and v.provenance.get("revision") not in (None, current)})
    if stale:
        lines += [f"**Recorded on earlier weights** ({', '.join(stale)}); the committed {model} is {current}. "
                  "The rows marked *earlier weights* describe that model, not this one, until `make reproduce` "
                  "records them again.", ""]
    lines += [f"| where | claim | paper | {model}: difference ± se [95 % interval] | verdict | measured with |",
              "|---|---|---|---|---|---|"]
    for v in verdicts:
        mark = {"holds": "**holds**", "fails": "**fails**", "inconclusive": "inconclusive"}[v.verdict]
        old = (current is not None and v.provenance and v.provenance.get("revision") not in (None, current))
        lines.append(f"| {v.claim.source} | {v.claim.claim} | {v.claim.paper} | {_number(v)} | {mark} | "
                     f"`{v.claim.notebook}`{', ' + _prov(v.provenance, v.claim.against) if v.provenance else ''}"
                     f"{' (*earlier weights*)' if old else ''} |")
    lines.append("")
    lines.append("Verdict rule: a claim **holds** when the 95 % interval of its difference (± 1.96 standard errors, "
                 "paired on the same examples) lies above 0, **fails** when it lies below 0, and is inconclusive "
                 "otherwise (`tools/claims.py`).")
    return "\n".join(lines)


CLAIMS_START = "<!-- claims-table:start -->"
CLAIMS_END = "<!-- claims-table:end -->"


def updated_text(text: str, figures_root: str | Path, models: tuple[str, ...] = ("shapes-tiny",),
                 current: dict[str, str] | None = None) -> str:
    """``text`` with the block between :data:`CLAIMS_START` and :data:`CLAIMS_END` replaced by one claims table
    per model of ``models`` that has recorded numbers under ``figures_root/<model>/``; ``current`` maps a model
    to the version of its committed weights (rows recorded on others are marked). Raises ``ValueError``
    unless the markers occur exactly once each, in order."""
    replace_block(text, CLAIMS_START, CLAIMS_END, "")  # checks the markers before any work (ValueError)
    blocks = []
    for m in models:
        folder = Path(figures_root) / m
        if folder.is_dir() and any(folder.glob("*.json")):
            blocks.append(claims_markdown(evaluate_claims(folder), m, (current or {}).get(m)))
    body = "\n\n".join(blocks) if blocks else "No results are recorded yet."
    return replace_block(text, CLAIMS_START, CLAIMS_END, body)
