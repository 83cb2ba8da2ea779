"""The CLIP rows of Table 1 (paper Sec. 3.1; docs/protocol.md#relation-testing): image–caption cosine similarity
under OpenCLIP (the CLIP whose text encoder SD 2.1 shares) or, for shapes-tiny, under ShapesCLIP (the CLIP whose
text encoder shapes-tiny v3 shares, shipped beside its pipeline in ``shapesclip/``) on the relation-testing rows
(:mod:`infodecomp.experiments.relation_data`), and the accuracy of such external scores, aggregated as relation
testing aggregates its own: the paper's comparison "Stable Diffusion improves over OpenCLIP with the same text
encoder". :func:`shared_encoder_clips` says which CLIPs can run for a model, the one whose text encoder it shares
first; pair i^o with it on the same examples by :func:`~infodecomp.experiments.relation_testing.add_scores` and
:func:`~infodecomp.experiments.relation_testing.compare_methods`.

``open_clip`` (open-clip-torch, which needs torchvision) is an optional dependency, imported only when the baseline
runs; :func:`openclip_status` says whether it can run here, without downloading anything.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..metrics import retrieval_accuracy
from ..models.shapesclip import ShapesCLIP, load_shapesclip, shapesclip_scores
from .relation_data import check_rows

__all__ = ["ClipBaseline", "openclip_scores", "openclip_status", "scores_accuracy", "shared_encoder_clips", "twin_clip",
           "shapesclip_scores"]

#: Where a pipeline folder keeps the ShapesCLIP whose text encoder it conditions on.
SHAPESCLIP_DIR = "shapesclip"


def openclip_status(model: str = "ViT-H-14", pretrained: str = "laion2b_s32b_b79k") -> tuple[bool, str]:
    """Whether the OpenCLIP baseline of Table 1 can run here: ``(available, reason)``.

    Needs the ``open_clip`` package (open-clip-torch, which needs torchvision) and its ``pretrained`` weights in
    the local cache (nothing is downloaded: HF_HUB_OFFLINE is set while checking). Returns the reason when not.
    """
    if importlib.util.find_spec("open_clip") is None:
        return False, "the open_clip package (open-clip-torch) is not installed"
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import open_clip  # optional and heavy: only to check it

        open_clip.create_model_and_transforms(model, pretrained=pretrained)
    except (ImportError, OSError, RuntimeError, ValueError) as err:
        return False, f"open_clip is installed but {model}/{pretrained} cannot be loaded offline: {err}"
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    return True, f"open_clip {model}/{pretrained} is available"


def openclip_scores(data: Sequence[Mapping], *, model: str = "ViT-H-14", pretrained: str = "laion2b_s32b_b79k",
                    device=None, batch_size: int = 16) -> np.ndarray:
    """Cosine similarity of each image with each candidate caption under OpenCLIP: ``[N, M]`` (higher = better).

    The OpenCLIP row of Table 1 (docs/protocol.md#relation-testing: the CLIP whose text encoder SD 2.1 shares,
    [UNVERIFIED] which one the paper used). Runs only where :func:`openclip_status` says it can (it needs ``open_clip``
    and cached weights; this project's CPU environment has neither, so this function is not exercised by its tests).
    """
    ok, reason = openclip_status(model, pretrained)
    if not ok:
        raise ImportError(reason)
    import open_clip  # optional and heavy: only when the baseline runs

    rows = [data[i] for i in range(len(data))]
    check_rows(rows)
    net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained, device=device)
    tokenizer = open_clip.get_tokenizer(model)
    net.eval()
    dev = next(net.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            img = net.encode_image(torch.stack([preprocess(r["image"]) for r in chunk]).to(dev)).float()
            img = img / img.norm(dim=-1, keepdim=True)
            for r, f in zip(chunk, img):
                txt = net.encode_text(tokenizer(list(r["captions"])).to(dev)).float()
                txt = txt / txt.norm(dim=-1, keepdim=True)
                out.append((txt @ f).cpu().numpy())
    sizes = {len(s) for s in out}
    if len(sizes) != 1:
        raise ValueError(f"rows have different numbers of captions {sorted(sizes)}; score one dataset at a time")
    return np.stack(out).astype(np.float64)


def scores_accuracy(scores: np.ndarray, data: Sequence[Mapping], *, aggregate: str = "micro",
                    tie_policy: str = "against_true", exclude_groups: Iterable[str] | None = None,
                    confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(accuracy, ci_low, ci_high)`` of external scores ``[N, M]`` (e.g. :func:`openclip_scores`) on ``data``,
    aggregated as in :func:`accuracy_tables` (``aggregate``: "micro", "macro" or "macro_filtered")."""
    if aggregate not in ("micro", "macro", "macro_filtered"):
        raise ValueError(f"aggregate must be 'micro', 'macro' or 'macro_filtered', got {aggregate!r}")
    truth = np.array([data[i]["true_index"] for i in range(len(data))])
    groups = [str(data[i]["group"]) for i in range(len(data))]
    a = retrieval_accuracy(np.asarray(scores, dtype=np.float64), truth, groups, tie_policy=tie_policy,
                           exclude_groups=exclude_groups if exclude_groups is not None else (),
                           confidence=confidence, seed=seed)
    est = {"micro": a.micro, "macro": a.macro, "macro_filtered": a.macro_filtered}[aggregate]
    return est.value, est.ci_low, est.ci_high


def twin_clip(model) -> ShapesCLIP | None:
    """The ShapesCLIP shipped beside a model's pipeline (``<pipeline folder>/shapesclip/``), or None when the model
    has none (SD 2.1, shapes-tiny before v3, a pipeline built in memory). Score rows with :func:`shapesclip_scores`."""
    source = getattr(model, "source", None)
    if not source or not (Path(source) / SHAPESCLIP_DIR / "shapesclip.json").is_file():
        return None
    return load_shapesclip(Path(source) / SHAPESCLIP_DIR)


@dataclass(frozen=True)
class ClipBaseline:
    """One CLIP row of Table 1: a scorer of relation-testing rows by image–caption cosine similarity."""

    key: str     # "shapesclip" | "openclip": the infix of its recorded accuracies
    name: str    # what it is, recorded beside the paired difference (e.g. "ShapesCLIP", "OpenCLIP ViT-H/14")
    label: str   # its row label in Table 1
    score: Callable[[Sequence[Mapping]], np.ndarray]  # rows -> [N, M] cosine similarities (higher = better)


def shared_encoder_clips(model, *, device=None) -> tuple[list[ClipBaseline], list[str]]:
    """The CLIP rows of Table 1 that can run here, and one line per CLIP saying why it is in or left out.

    The first row is the CLIP whose text encoder ``model`` shares, the one the paper's comparison "Stable Diffusion
    improves over OpenCLIP with the same text encoder" pairs i^o with: the ShapesCLIP shipped beside the model
    (:func:`twin_clip`) when there is one, else OpenCLIP ViT-H/14 (SD 2.1's) when :func:`openclip_status` says it
    can run. An empty list: no CLIP here (e.g. a tiny test pipeline without ``shapesclip/``, and no ``open_clip``).
    """
    clips, why = [], []
    twin = twin_clip(model)
    if twin is not None:
        clips.append(ClipBaseline("shapesclip", "ShapesCLIP", "ShapesCLIP (its text encoder's CLIP)",
                                  lambda rows: shapesclip_scores(twin, rows)))
        why.append("ShapesCLIP row included: the model ships it in shapesclip/")
    else:
        why.append("ShapesCLIP row left out: the model ships no shapesclip/")
    ok, reason = openclip_status()
    if ok:
        clips.append(ClipBaseline("openclip", "OpenCLIP ViT-H/14", "OpenCLIP ViT-H/14",
                                  lambda rows: openclip_scores(rows, device=device)))
    why.append(("OpenCLIP row included: " if ok else "OpenCLIP row left out: ") + reason)
    return clips, why
