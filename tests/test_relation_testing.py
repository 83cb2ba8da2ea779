"""Relation testing (paper Sec. 3.1, Tables 1–2): scoring on shared noise, the store loop, ties, tables.

Numbers from the tiny untrained pipelines are meaningless; those tests check mechanics. The analytic
Gaussian-mixture world checks the numbers: there the exact answer of every score is known.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from infodecomp import analytic
from infodecomp.experiments import clip_baseline
from infodecomp.experiments import relation_testing as rt
from infodecomp.logsnr import LogSNRSampling
from infodecomp.proposals import FittedLogSNRSampling, fitted_proposal
from infodecomp.models.identity import model_identity
from infodecomp.results import ResultStore, SettingsMismatchError
from infodecomp.testing import RecordingDenoiser, free_port

REPO = Path(__file__).resolve().parents[1]
FAST = dict(n_samples=8, blocks=2)  # tiny-pipeline mechanics tests


# ─────────────────────────────────────────────── settings ───────────────────────────────────────────────

def test_protocols_fill_in_clip_posterior_and_tie_policy():
    f, c = rt.RelationSettings(protocol="faithful"), rt.RelationSettings(protocol="corrected")
    assert (f.effective_clip, f.effective_posterior, f.effective_tie_policy) == (4.0, "sample", "against_true")
    assert (c.effective_clip, c.effective_posterior, c.effective_tie_policy) == (3.0, "mean", "fractional")
    assert f.sampling == LogSNRSampling.faithful("nll") and c.sampling == LogSNRSampling.corrected()
    assert (f.n_samples, f.loc, f.scale, f.score) == (100, 1.0, 2.0, "orthogonal")  # the paper's defaults
    own = rt.RelationSettings(protocol="faithful", clip=3.0, posterior="mean", tie_policy="exclude")
    assert own.resolved()["clip"] == 3.0 and own.resolved()["tie_policy"] == "exclude"


@pytest.mark.parametrize("kwargs, match", [
    (dict(protocol="paper"), "protocol"), (dict(score="mmse"), "score"), (dict(n_samples=10, blocks=3), "divide"),
    (dict(n_samples=0), "n_samples"), (dict(posterior="mode"), "posterior"), (dict(tie_policy="coin"), "tie_policy"),
    (dict(clip=-1.0), "clip"), (dict(resize="area"), "resize"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rt.RelationSettings(**kwargs)


# ────────────────────────────────── scores against the exact answers ──────────────────────────────────

def _mixture_examples(world, n, seed):
    """x [n, d] from the joint; candidates [n, 2, F]: factor a flipped (the 'swap'), then the truth."""
    g = torch.Generator().manual_seed(seed)
    x, labels = world.sample(n, generator=g)
    wrong = labels.clone()
    wrong[:, 0] = 1 - wrong[:, 0]
    return x, torch.stack([wrong, labels], 1), g


@pytest.mark.parametrize("proposal", ["paper", "fitted"])
def test_scores_agree_with_the_exact_estimands(mworld, proposal):
    """Each candidate's i^o and i^s agree with the exact value on the clipped range within their standard
    errors, and the paired margin's stderr is calibrated (checked as a z-score): with the paper's truncated logistic
    and with a proposal fitted to the i^o margin on other examples (the corrected protocol's, exact weights)."""
    x, conds, g = _mixture_examples(mworld, 4, seed=3)
    sampling = LogSNRSampling(clip=3.0)
    if proposal == "fitted":
        xp, cp, _ = _mixture_examples(mworld, 8, seed=30)
        sampling = fitted_proposal(mworld, xp, cp, mworld.null(8), quantity="margin_o", n_points=48,
                                   generator=torch.Generator().manual_seed(31))
        assert sampling.support == LogSNRSampling(clip=3.0).support and sampling.rule == "fitted"
    lo, hi = sampling.support
    null = mworld.null(1)[0]
    z_o, z_s, z_margin = [], [], []
    for b in range(x.shape[0]):
        s = rt.score_candidates(mworld, x[b], conds[b], null, n_samples=400, blocks=20, sampling=sampling,
                                generator=g)
        ex_s, ex_o = zip(*[mworld.truncated_pointwise(x[b:b + 1], conds[b, j][None], null[None], lo, hi,
                                                      nodes=12) for j in range(2)])
        ex_s, ex_o = torch.cat(ex_s), torch.cat(ex_o)
        z_o += ((s.orthogonal - ex_o) / s.orthogonal_stderr).tolist()
        z_s += ((s.standard - ex_s) / s.standard_stderr).tolist()
        d = s.orthogonal[1] - s.orthogonal[0]
        z_margin.append(float((d - (ex_o[1] - ex_o[0])) / s.difference_stderr("info_o", 1, 0)))
        assert s.n_evaluations == 400 * 3
    assert max(map(abs, z_o)) < 4.5 and max(map(abs, z_s)) < 4.5 and max(map(abs, z_margin)) < 4.5


def test_the_likelihood_scores_pick_the_true_caption_and_io_follows_its_own_estimand(mworld):
    """In the mixture world the Bayes rule (argmax log p(x|y)) is known. i^s (= log p(x|y) − log p(x) on the
    clipped range) and −MMSE pick the true caption as often as it does; the scorer's i^o choice equals the choice
    of the *exact* i^o estimand wherever the exact margin is clear. (With exact denoisers i^o is not a likelihood
    ratio: a caption that contradicts x changes the denoiser a lot, so i^o tends to prefer it — recorded here
    so the notebooks' evidence is read with that in mind.)"""
    x, conds, g = _mixture_examples(mworld, 40, seed=0)
    null = mworld.null(1)[0]
    sampling = LogSNRSampling(clip=3.0)
    lo, hi = sampling.support
    pred = {m: [] for m in rt.METHODS}
    margin_se = []
    for b in range(x.shape[0]):
        s = rt.score_candidates(mworld, x[b], conds[b], null, n_samples=200, blocks=10, sampling=sampling,
                                generator=g)
        for m in rt.METHODS:
            pred[m].append(int(s.score(m).argmax()))
        margin_se.append(s.difference_stderr("info_o", 1, 0))
    bayes = torch.stack([mworld.log_ratio(x, conds[:, j], mworld.null(len(x))) for j in range(2)], 1).argmax(1)
    bayes_acc = float((bayes == 1).double().mean())
    assert bayes_acc > 0.85
    for m in ("info_s", "mmse"):
        acc = float(np.mean(np.array(pred[m]) == 1))
        assert acc >= bayes_acc - 0.1, (m, acc, bayes_acc)
    # 8 Gauss–Hermite nodes per dimension: the exact values agree with 24 nodes to ~1e-3 nats here
    _, ex_o = zip(*[mworld.truncated_pointwise(x, conds[:, j], mworld.null(len(x)), lo, hi, nodes=8)
                    for j in range(2)])
    exact_margin = ex_o[1] - ex_o[0]
    clear = exact_margin.abs() > 4 * torch.tensor(margin_se)
    assert int(clear.sum()) >= 30
    exact_choice = (exact_margin > 0).long()
    assert torch.equal(torch.tensor(pred["info_o"])[clear], exact_choice[clear])
    assert float((exact_choice == 1).double().mean()) < 0.5  # i^o prefers the contradicting caption here


def test_separated_world_likelihood_scores_are_always_right():
    world = analytic.MixtureWorld(torch.tensor([[-3.0], [0.0], [3.0]]), torch.full((3, 1, 1), 0.25),
                                  torch.tensor([0.3, 0.3, 0.4]))
    g = torch.Generator().manual_seed(1)
    x, labels = world.sample(20, generator=g)
    conds = torch.stack([(labels + 1) % 3, (labels + 2) % 3, labels], 1)  # true last, as the reference
    for b in range(20):
        s = rt.score_candidates(world, x[b], conds[b], world.null(1)[0], n_samples=40, blocks=4, generator=g)
        assert int(s.score("info_s").argmax()) == 2 and int(s.score("mmse").argmax()) == 2


# ──────────────────────────────────────────── shared noise ────────────────────────────────────────────


@pytest.mark.parametrize("chunk_size", [4, 9, 256])
def test_null_is_evaluated_once_per_draw_and_every_condition_sees_the_same_noise(mworld, chunk_size):
    x, _, g = _mixture_examples(mworld, 1, seed=5)
    conds = mworld.component_labels[[0, 1, 3]]  # M = 3 candidates
    null = mworld.null(1)[0]
    den = RecordingDenoiser(mworld)
    s = rt.score_candidates(den, x[0], conds, null, n_samples=12, blocks=3, chunk_size=chunk_size, generator=g)
    z = torch.cat([c[0] for c in den.calls])
    lam = torch.cat([c[1] for c in den.calls])
    cond = torch.cat([c[2] for c in den.calls])
    assert len(z) == 12 * 4 == s.n_evaluations
    assert int((cond == null).all(1).sum()) == 12  # the null condition: once per draw
    draws = {}
    for zi, li, ci in zip(z, lam, cond):
        draws.setdefault((tuple(zi.tolist()), float(li)), []).append(tuple(ci.tolist()))
    assert len(draws) == 12  # 12 distinct (λ, ε) draws ...
    for seen in draws.values():  # ... each evaluated for every candidate and the null exactly once
        assert sorted(seen) == sorted([tuple(c.tolist()) for c in conds] + [tuple(null.tolist())])
    for call in den.calls:  # and all conditions of a draw are in the same denoiser call
        assert len(call[0]) % 4 == 0


def test_results_do_not_depend_on_chunk_size(mworld):
    x, conds, _ = _mixture_examples(mworld, 1, seed=2)
    out = [rt.score_candidates(mworld, x[0], conds[0], mworld.null(1)[0], n_samples=20, blocks=5, chunk_size=c,
                               generator=torch.Generator().manual_seed(9)) for c in (3, 256)]
    for m in rt.METHODS:
        torch.testing.assert_close(out[0].score(m), out[1].score(m), rtol=0, atol=1e-12)


def test_score_candidates_rejects_bad_shapes(mworld):
    x, conds, _ = _mixture_examples(mworld, 1, seed=2)
    with pytest.raises(ValueError, match="conds must be"):
        rt.score_candidates(mworld, x[0], conds[0], mworld.null(2))
    with pytest.raises(ValueError, match="divide"):
        rt.score_candidates(mworld, x[0], conds[0], mworld.null(1)[0], n_samples=10, blocks=3)
    with pytest.raises(TypeError, match="floating-point"):
        rt.score_candidates(mworld, x[0].long(), conds[0], mworld.null(1)[0])


# ──────────────────────────────────────── rows, ties and tables ────────────────────────────────────────

def _image(colour=(255, 0, 0)):
    return Image.new("RGB", (32, 32), colour)


def _row(i, captions, true_index, group="left of", image=None):
    return {"id": f"r{i}", "image": image or _image(), "captions": captions, "true_index": true_index, "group": group}


@pytest.mark.parametrize("mutate, match", [
    (lambda r: r.pop("group"), "lacks"),
    (lambda r: r.update(true_index=2), "true_index"),
    (lambda r: r.update(captions=["only one"]), "captions"),
    (lambda r: r.update(captions=["a", ""]), "non-empty"),
    (lambda r: r.update(image=Image.new("L", (32, 32))), "RGB"),
    (lambda r: r.update(id=3), "id"),
])
def test_bad_rows_get_clear_errors(mutate, match):
    row = _row(0, ["a red circle", "a blue circle"], 1)
    mutate(row)
    with pytest.raises(ValueError, match=match):
        rt.check_rows([row])


def test_identical_captions_tie_exactly_and_ties_are_counted(tiny_model):
    rows = [_row(0, ["a red circle", "a red circle"], 1), _row(1, ["a red circle", "a blue square"], 0)]
    raw = rt.score_rows(tiny_model, rows, rt.RelationSettings(**FAST), seed=0)
    assert raw[0]["info_o"][0] == raw[0]["info_o"][1] and raw[0]["mmse"][0] == raw[0]["mmse"][1]
    assert raw[0]["n_evaluations"] == 8 * 2  # the duplicate is evaluated once: 1 unique caption + null
    faithful = rt.example_frame(raw, tie_policy="against_true")
    corrected = rt.example_frame(raw, tie_policy="fractional")
    assert bool(faithful["tied_info_o"][0]) and faithful["correct_info_o"][0] == 0.0
    assert corrected["correct_info_o"][0] == 0.5 and faithful["pred_info_o"][0] == 0
    tables = rt.accuracy_tables(corrected)
    assert tables.value("info_o", "micro")["n_ties"] == 1


def test_example_frame_and_tables_on_known_scores():
    """Hand-made scores: micro, macro and the filtered macro (one group excluded), per group, and ties."""
    raw = []
    spec = {"on": [1, 1, 1, 0], "near": [0, 0], "above": [1, 0, 0, 0]}  # info_o right (1) or wrong (0)
    for g, rights in spec.items():
        for k, right in enumerate(rights):
            io = [0.0, 1.0] if right else [1.0, 0.0]
            raw.append({"id": f"{g}{k}", "group": g, "true_index": 1, "info_o": io, "info_s": [0.0, 0.0],
                        "mmse": [5.0, 4.0]})
    frame = rt.example_frame(raw, tie_policy="against_true")
    t = rt.accuracy_tables(frame, exclude_groups={"near", "not-in-data"})
    assert t.value("info_o", "micro")["accuracy"] == pytest.approx(4 / 10)
    assert t.value("info_o", "macro")["accuracy"] == pytest.approx((3 / 4 + 0 + 1 / 4) / 3)
    assert t.value("info_o", "macro_filtered")["accuracy"] == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert t.excluded_groups == ("near",)
    assert t.value("info_s", "micro")["accuracy"] == 0.0 and t.value("info_s", "micro")["n_ties"] == 10
    assert t.value("mmse", "micro")["accuracy"] == 1.0  # lower MMSE for the true caption
    low = t.value("info_o", "micro")
    assert low["ci_low"] < 0.4 < low["ci_high"]
    pg = t.per_group.set_index(["group", "method"])
    assert pg.loc[("on", "info_o"), "accuracy"] == 0.75 and pg.loc[("near", "info_o"), "n"] == 2
    cmp = rt.compare_methods(frame, "info_o", "mmse")
    assert cmp["diff"] == pytest.approx(-0.6) and cmp["b_only"] == 6 and cmp["a_only"] == 0
    assert cmp["p_mcnemar"] == pytest.approx(2 * 0.5 ** 6) and cmp["ci_high"] < 0
    g2 = rt.group_table(t, method="info_o", baseline="mmse", threshold=0.3)
    assert dict(zip(g2.group, g2.highlight)) == {"on": "", "above": "▼", "near": "▼"}
    rel = rt.group_table(t, method="mmse", baseline="info_o", threshold=0.5, relative=True)
    assert dict(zip(rel.group, rel.highlight)) == {"on": "", "above": "▲", "near": ""}  # near: baseline 0
    wide, long = rt.table1({"vg-relation": t, "coco-order": t})
    assert list(wide.columns) == ["vg-relation", "coco-order"]
    assert wide.loc[rt.METHOD_LABELS["info_o"], "vg-relation"].startswith("50.0 [")  # macro without "near"
    assert wide.loc[rt.METHOD_LABELS["info_o"], "coco-order"].startswith("40.0 [")  # micro
    assert "| method |" in rt.markdown_table(long)
    # the paper's rows sit below ours, without intervals, and only for the datasets shown
    wide, long = rt.table1({"vg-relation": t, "coco-order": t}, extra_rows=rt.paper_rows(["vg-relation", "coco-order"]))
    assert wide.loc["paper: Info (SD 2.1-base)", "vg-relation"] == "69.1"
    assert wide.loc["paper: DiffITM (SD 2.1)", "coco-order"] == "23.5"
    assert list(wide.index[:3]) == [rt.METHOD_LABELS[m] for m in rt.METHODS]
    assert set(long.loc[long["method_key"].isna(), "dataset"]) == {"vg-relation", "coco-order"}
    from matplotlib.container import BarContainer, ErrorbarContainer

    from infodecomp import plotting

    ax = plotting.accuracy_bars(long).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 + len(rt.PAPER_TABLE1)  # one bar series per method, ours and the paper's
    assert len([c for c in ax.containers if isinstance(c, ErrorbarContainer)]) == 3  # intervals only where we have them


def _known_frame(tie_policy="against_true"):
    """Six examples in two groups, two candidates each (the true one second): i^o right on rows 0-3."""
    raw = [{"id": f"r{k}", "index": k, "group": "on" if k < 4 else "near", "true_index": 1,
            "info_o": [0.0, 1.0] if k < 4 else [1.0, 0.0], "info_s": [0.0, 0.0], "mmse": [5.0, 4.0]}
           for k in range(6)]
    return rt.example_frame(raw, tie_policy=tie_policy)


def test_an_external_scorer_is_paired_with_io_on_the_same_examples():
    """The CLIP's correctness as one more method of the frame: a known paired difference, its discordant
    examples and McNemar's p; the rows follow the frame's index column; the table's excluded groups are left out."""
    frame = _known_frame()
    # a CLIP right on rows 0, 1, 4 and 5 and wrong on 2 and 3: i^o 4/6, CLIP 4/6, discordant 2 and 2
    clip = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.3, 0.5], [0.0, 0.2]])
    f = rt.add_scores(frame, "clip", clip)
    assert list(f["correct_clip"]) == [1, 1, 0, 0, 1, 1] and list(f["pred_clip"]) == [1, 1, 0, 0, 1, 1]
    assert "correct_clip" not in frame.columns  # a copy
    cmp = rt.compare_methods(f, "info_o", "clip", n_bootstrap=500)
    assert (cmp["n"], cmp["acc_a"], cmp["acc_b"], cmp["diff"]) == (6, 4 / 6, 4 / 6, 0.0)
    assert (cmp["a_only"], cmp["b_only"]) == (2, 2) and cmp["p_mcnemar"] == 1.0
    assert cmp["ci_low"] < 0 < cmp["ci_high"] and cmp["stderr"] > 0
    # the table's filter: without the "near" rows i^o is right on all 4, the CLIP on 2
    cmp = rt.compare_methods(f, "info_o", "clip", exclude_groups={"near"}, n_bootstrap=500)
    assert (cmp["n"], cmp["diff"], cmp["a_only"], cmp["b_only"]) == (4, 0.5, 2, 0)
    # rows stored out of order are matched to the dataset's rows by their index
    shuffled = rt.add_scores(frame.iloc[::-1].reset_index(drop=True), "clip", clip)
    assert list(shuffled["correct_clip"]) == [1, 1, 0, 0, 1, 1][::-1]
    # the frame's tie policy: a tied CLIP counts against the true caption (faithful) or 1/2 (corrected)
    tied = np.array([[0.5, 0.5]] * 6)
    assert rt.add_scores(frame, "clip", tied)["correct_clip"].eq(0).all()
    assert rt.add_scores(_known_frame("fractional"), "clip", tied)["correct_clip"].eq(0.5).all()


@pytest.mark.parametrize("name, scores, match", [
    ("clip", np.zeros((5, 2)), r"N = 6"),                         # a row missing
    ("clip", np.zeros((6, 3)), "3 candidates per example"),       # another dataset's captions
    ("clip", np.zeros(6), r"\[N, M\]"),
    ("clip", np.full((6, 2), np.nan), "NaN"),
    ("info_o", np.zeros((6, 2)), "identifier other than"),         # would overwrite a method of the frame
    ("the clip", np.zeros((6, 2)), "identifier other than"),
])
def test_external_scores_that_do_not_fit_the_frame_are_refused(name, scores, match):
    with pytest.raises(ValueError, match=match):
        rt.add_scores(_known_frame(), name, scores)


def test_compare_methods_refuses_a_method_the_frame_does_not_have():
    with pytest.raises(ValueError, match="unknown method 'clip'"):
        rt.compare_methods(_known_frame(), "info_o", "clip")
    broken = _known_frame()
    broken["index"] = [0, 0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="not a permutation"):
        rt.add_scores(broken, "clip", np.zeros((6, 2)))


def test_without_a_shipped_shapesclip_or_open_clip_no_clip_row_runs(tiny_pipeline_dir):
    """A tiny pipeline without shapesclip/ (and no open_clip here): no CLIP to pair with, each reason said."""
    from infodecomp.models import load_model

    clips, why = clip_baseline.shared_encoder_clips(load_model(str(tiny_pipeline_dir)))
    assert why[0] == "ShapesCLIP row left out: the model ships no shapesclip/" and len(why) == 2
    if not clip_baseline.openclip_status()[0]:
        assert clips == [] and why[1].startswith("OpenCLIP row left out: ")


def test_load_dataset_and_relation_list(tmp_path):
    data = rt.load_dataset("vg-relation", 3, seed=0)
    assert len(data) == 3 and data[0]["true_index"] == 1
    rt.check_rows([data[i] for i in range(3)])
    with pytest.raises(ValueError, match="unknown relation-testing dataset"):
        rt.load_dataset("vg-relations", 3)
    f = tmp_path / "sym.txt"
    f.write_text("# symmetric\nnear\n\nnext to  # comment\n")
    assert rt.read_relation_list(f) == {"near", "next to"} and rt.read_relation_list(None) is None
    with pytest.raises(FileNotFoundError):
        rt.read_relation_list(tmp_path / "missing.txt")


def test_openclip_status_says_why_it_is_unavailable():
    ok, reason = clip_baseline.openclip_status()
    assert isinstance(ok, bool) and reason
    if not ok:
        with pytest.raises(ImportError, match="open_clip"):
            clip_baseline.openclip_scores(rt.load_dataset("vg-relation", 2))


# ─────────────────────────────────────── the store loop (tiny SD) ───────────────────────────────────────

SCORE_COLS = ["id", "group", "true_index", "info_o", "info_o_se", "info_s", "mmse", "mmse_se", "margin_info_o",
              "margin_info_o_se", "correct_info_o", "correct_mmse", "tied_info_o"]


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a[SCORE_COLS].reset_index(drop=True), b[SCORE_COLS].reset_index(drop=True))


def test_end_to_end_on_shapes_twins_through_the_store(tiny_model, tmp_path):
    settings = rt.RelationSettings(protocol="corrected", **FAST)
    tables = {}
    for name, m in (("vg-relation", 2), ("coco-order", 5)):
        data = rt.load_dataset(name, 3, seed=0)
        frame = rt.run(tiny_model, data, dataset=name, settings=settings, seed=0, store_root=tmp_path,
                       batch_size=2, progress=False)
        assert len(frame) == 3 and list(frame["id"]) == [data[i]["id"] for i in range(3)]
        assert (frame["n_evaluations"] == 8 * (m + 1)).all() and frame["info_o"].map(len).eq(m).all()
        assert frame["blocks_info_o"][0].shape == (2, m)
        assert np.isfinite(np.stack(frame["info_o_se"])).all() and (np.stack(frame["info_o"]) >= 0).all()
        assert frame.attrs["tie_policy"] == "fractional"
        tables[name] = rt.accuracy_tables(frame)
    path = rt.store_path(tmp_path, tiny_model, "vg-relation", settings, 0, "shapes-twin:vg-relation:seed=0")
    assert (path / "manifest.json").exists() and list(path.glob("rows-*.jsonl"))
    wide, _ = rt.table1(tables)
    assert list(wide.columns) == ["vg-relation", "coco-order"] and len(wide) == 3
    # the same store with other settings is refused, not mixed
    with pytest.raises(SettingsMismatchError):
        rt.run(tiny_model, rt.load_dataset("vg-relation", 3), dataset="vg-relation", store=path,
               settings=rt.RelationSettings(protocol="faithful", **FAST), progress=False)


def test_the_corrected_protocol_draws_from_a_proposal_fitted_to_its_margin(tiny_model, tmp_path, capsys):
    data = rt.load_dataset("coco-order", 3, seed=0)
    faithful = rt.RelationSettings(**FAST)
    assert rt.with_proposal(tiny_model, data, faithful, "auto") == faithful  # faithful: the paper's sampling
    corrected = rt.RelationSettings(protocol="corrected", score="standard", **FAST)
    assert rt.with_proposal(tiny_model, data, corrected, "paper").sampling == LogSNRSampling.corrected()
    fitted = rt.with_proposal(tiny_model, data, corrected, "auto", dataset="coco-order", n_rows=2,
                              store_root=tmp_path)
    q = fitted.proposal
    assert isinstance(q, FittedLogSNRSampling) and fitted.sampling is q and q.quantity == "margin_s"
    assert q.support == corrected.sampling.support and q.rule == "fitted"
    first = capsys.readouterr().out
    assert "a pilot on 2 rows, 1,152 UNet evaluations" in first  # 2 rows × 96 log-SNRs × (5 captions + null)
    again = rt.with_proposal(tiny_model, data, corrected, "fitted", dataset="coco-order", n_rows=2,
                             store_root=tmp_path)
    assert again.proposal == q and "cached in" in capsys.readouterr().out
    # the proposal is part of the store's identity, and the rows are scored with it
    assert rt.store_path(tmp_path, tiny_model, "coco-order", fitted, 0) != \
        rt.store_path(tmp_path, tiny_model, "coco-order", corrected, 0)
    frame = rt.run(tiny_model, data, dataset="coco-order", settings=fitted, seed=0, store_root=tmp_path,
                   batch_size=2, progress=False)
    assert len(frame) == 3 and np.isfinite(np.stack(frame["info_s"])).all()


@pytest.mark.parametrize("call, match", [
    (lambda m, d: rt.with_proposal(m, d, rt.RelationSettings(**FAST), "fitted"), "corrected protocol"),
    (lambda m, d: rt.with_proposal(m, d, rt.RelationSettings(protocol="corrected", **FAST), "mmg"), "one of"),
    (lambda m, d: rt.RelationSettings(proposal=_uniform_proposal(3.0), **FAST), "corrected protocol"),
    (lambda m, d: rt.RelationSettings(protocol="corrected", proposal=_uniform_proposal(4.0), **FAST), "covers"),
])
def test_a_proposal_the_settings_cannot_use_is_refused(tiny_model, call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_model, rt.load_dataset("vg-relation", 2, seed=0))


def _uniform_proposal(clip):
    lo, hi = 1.0 - 2.0 * clip, 1.0 + 2.0 * clip
    return FittedLogSNRSampling(rule="fitted", clip=clip, edges=(lo, 1.0, hi), probs=(0.5, 0.5))


class Interrupted(Exception):
    pass


class FlakyModel:
    """The tiny model, but encoding images raises after ``fail_after`` images (a killed run)."""

    def __init__(self, model, fail_after=None):
        self.model, self.fail_after, self.encoded = model, fail_after, 0
        self.name, self.revision, self.denoiser, self.resolution = model.name, model.revision, model.denoiser, \
            model.resolution

    def encode_prompts(self, *a, **k):
        return self.model.encode_prompts(*a, **k)

    def encode_images(self, *a, **k):
        if self.fail_after is not None and self.encoded >= self.fail_after:
            raise Interrupted("killed")
        self.encoded += 1
        return self.model.encode_images(*a, **k)


def test_interrupted_run_resumes_to_the_same_table(tiny_model, tmp_path):
    settings = rt.RelationSettings(protocol="faithful", **FAST)  # faithful: the VAE sample is seeded too
    data = rt.load_dataset("vg-relation", 5, seed=1)
    whole = rt.run(tiny_model, data, dataset="vg-relation", settings=settings, seed=4, store=tmp_path / "a",
                   batch_size=2, progress=False)
    flaky = FlakyModel(tiny_model, fail_after=3)
    with pytest.raises(Interrupted):
        rt.run(flaky, data, dataset="vg-relation", settings=settings, seed=4, store=tmp_path / "b", batch_size=2,
               progress=False)
    ident = rt.store_identity(settings, "vg-relation", "shapes-twin:vg-relation:seed=1")
    assert len(ResultStore(tmp_path / "b", ident, model=model_identity(flaky), seed=4)) == 2
    resumed_model = FlakyModel(tiny_model)
    resumed = rt.run(resumed_model, data, dataset="vg-relation", settings=settings, seed=4, store=tmp_path / "b",
                     batch_size=2, progress=False)
    assert resumed_model.encoded == 3  # only the missing examples were computed
    _same(whole, resumed)
    for m in rt.METHODS:
        np.testing.assert_array_equal(np.stack(whole[f"blocks_{m}"]), np.stack(resumed[f"blocks_{m}"]))


class ToyModel:
    """A model-shaped object without diffusers (fast to start in subprocesses): latents [4, 2, 2] from the image's
    colours (plus a seeded posterior draw), prompt embeddings [6] from a seeded table of words, and a smooth
    denoiser that depends on the prompt."""

    name, revision, resolution = "toy", None, (8, 8)

    def __init__(self):
        self.table = torch.randn(64, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.mix = torch.randn(6, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def encode_prompts(self, prompts, truncate=False):
        out = torch.zeros(len(prompts), 6, dtype=torch.float64)
        for i, p in enumerate(prompts):
            for k, w in enumerate(p.split()):
                out[i] += self.table[sum(map(ord, w)) % 64] * (1 + 0.5 * k)
        return out

    def encode_images(self, images, posterior="mean", generator=None, resize=None, size=None):
        x = torch.stack([torch.as_tensor(np.asarray(im.resize((2, 2)), dtype=np.float64) / 255.0)
                         .permute(2, 0, 1).repeat(2, 1, 1)[:4] for im in images])
        if posterior == "sample":
            x = x + 0.1 * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x

    def denoiser(self, z, logsnr, cond):
        a = torch.sigmoid(logsnr).sqrt().view(-1, 1, 1, 1)
        shift = torch.tanh(cond @ self.mix).view(-1, 4, 2, 2)
        return torch.sigmoid(-logsnr).sqrt().view(-1, 1, 1, 1) * z + a * 0.3 * shift * torch.tanh(z)


def test_toy_model_separates_captions():
    scores = rt.score_rows(ToyModel(), rt.load_dataset("vg-relation", 2), rt.RelationSettings(n_samples=8, blocks=2))
    assert all(len(set(r["info_o"])) == 2 and min(r["info_o"]) > 0 for r in scores)


SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from infodecomp.experiments import relation_testing as rt
from test_relation_testing import ToyModel

data = rt.load_dataset("coco-order", 6, seed=2)
frame = rt.run(ToyModel(), data, dataset="coco-order", settings=rt.RelationSettings(protocol="faithful", n_samples=8,
               blocks=2), seed=7, store=sys.argv[1], batch_size=2, progress=False)
from accelerate import PartialState
state = PartialState()
print(f"process {{state.process_index}} of {{state.num_processes}} sees {{len(frame)}} rows", flush=True)
if state.is_main_process:
    frame.to_pickle(sys.argv[2])
"""


@pytest.mark.slow
def test_two_process_accelerate_run_equals_one_process_run(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("exercises the CPU-only launch path")
    one = rt.run(ToyModel(), rt.load_dataset("coco-order", 6, seed=2), dataset="coco-order",
                 settings=rt.RelationSettings(protocol="faithful", n_samples=8, blocks=2), seed=7,
                 store=tmp_path / "one", batch_size=2, progress=False)
    script = tmp_path / "relation_script.py"
    script.write_text(SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(free_port()), str(script), str(tmp_path / "two"), str(tmp_path / "two.pkl")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "process 0 of 2 sees 6 rows" in proc.stdout and "process 1 of 2 sees 6 rows" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "two").glob("rows-*.jsonl")) == ["rows-000-of-002.jsonl",
                                                                                "rows-001-of-002.jsonl"]
    two = pd.read_pickle(tmp_path / "two.pkl")
    for col in SCORE_COLS:
        a, b = one[col].tolist(), two[col].tolist()
        if col in ("correct_info_o", "correct_mmse", "tied_info_o", "true_index"):
            assert [float(v) for v in a] == [float(v) for v in b], col
        elif isinstance(a[0], list):
            np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-12, atol=0, err_msg=col)
        elif isinstance(a[0], float):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=col)
        else:
            assert a == b, col


def test_real_aro_format_rows_run_through_the_same_loop(tiny_model, tmp_path):
    """VG-Relation rows from ARO's file format (the fixture annotations, images drawn here) go through the same
    loop; their store is not the twin's."""
    import shutil

    shutil.copytree(REPO / "tests" / "fixtures" / "aro", tmp_path / "aro")
    (tmp_path / "aro/vg/images").mkdir()
    for name, size in (("2315375.jpg", (32, 24)), ("498202.jpg", (20, 16))):
        Image.new("RGB", size, (200, 40, 40)).save(tmp_path / "aro/vg/images" / name)
    data = rt.load_dataset("vg-relation", 2, data_dir=tmp_path, size=16)
    assert len(data) == 2 and data[0]["captions"][data[0]["true_index"]] == "the cup is on the table"
    settings = rt.RelationSettings(protocol="corrected", **FAST)
    frame = rt.run(tiny_model, data, dataset="vg-relation", settings=settings, store_root=tmp_path / "stores",
                   progress=False)
    assert list(frame["group"]) == ["on", "to the left of"]
    t = rt.accuracy_tables(frame, exclude_groups={"to the left of"})
    assert t.excluded_groups == ("to the left of",) and t.value("info_o", "macro_filtered")["n"] == 1
    twin = rt.run(tiny_model, rt.load_dataset("vg-relation", 2), dataset="vg-relation", settings=settings,
                  store_root=tmp_path / "stores", progress=False)
    assert len(list((tmp_path / "stores" / "tiny" / "relation_testing").iterdir())) == 2  # two stores
    assert list(twin["group"]) != list(frame["group"])


# ─────────────────────────────────────────────── issue 14 ───────────────────────────────────────────────

def test_a_bfloat16_run_never_resumes_a_float32_store(tiny_model, tmp_path):
    """Item 1: a bfloat16 run resumed a float32 store (rows 0-9 fp32, 10-23 bf16) and a bfloat16 notebook run
    returned the cached float32 table."""
    import copy

    from infodecomp.models import Model

    settings = rt.RelationSettings(protocol="corrected", **FAST)
    data = rt.load_dataset("vg-relation", 2, seed=0)
    fp32 = tiny_model
    a = rt.run(fp32, data, dataset="vg-relation", settings=settings, store=tmp_path / "s", progress=False)
    bf16 = Model(copy.deepcopy(tiny_model.pipeline), name="tiny").to(dtype="bfloat16")
    with pytest.raises(SettingsMismatchError, match=r"model\['dtype'\]: saved 'float32', now 'bfloat16'"):
        rt.run(bf16, data, dataset="vg-relation", settings=settings, store=tmp_path / "s", progress=False)
    # the notebooks' default: a store per identity under store_root, so the bf16 run computes its own rows
    rt.run(fp32, data, dataset="vg-relation", settings=settings, store_root=tmp_path / "root", progress=False)
    b = rt.run(bf16, data, dataset="vg-relation", settings=settings, store_root=tmp_path / "root", progress=False)
    stores = sorted((tmp_path / "root" / "tiny" / "relation_testing").iterdir())
    assert len(stores) == 2
    assert {json.loads((s / "manifest.json").read_text())["model"]["dtype"] for s in stores} == \
        {"float32", "bfloat16"}
    assert not np.array_equal(np.stack(a["info_o"]), np.stack(b["info_o"]))  # not the cached float32 numbers


@pytest.mark.parametrize("n_samples, blocks", [(25, 5), (32, 8), (7, 7), (100, 10), (1, 1), (48, 12)])
def test_blocks_follow_n_samples(n_samples, blocks):
    """Item 10: notebook 02 accepted only multiples of 10 for N_SAMPLES (blocks=10 fixed, not a parameter)."""
    s = rt.RelationSettings(n_samples=n_samples)
    assert s.effective_blocks == blocks == rt.default_blocks(n_samples)
    assert s.resolved()["blocks"] == blocks and n_samples % blocks == 0
    assert rt.RelationSettings(n_samples=n_samples, blocks=1).effective_blocks == 1  # still a parameter


def test_any_n_samples_runs_through_the_notebook_call(tiny_model, tmp_path):
    for n in (7, 25):  # what notebook 02 does with N_SAMPLES = n
        settings = rt.RelationSettings(protocol="faithful", n_samples=n)
        frame = rt.run(tiny_model, rt.load_dataset("vg-relation", 1, seed=0), dataset="vg-relation",
                       settings=settings, seed=0, store_root=tmp_path, progress=False)
        assert frame["blocks_info_o"][0].shape[0] == rt.default_blocks(n)
        assert np.isfinite(frame["margin_info_o_se"]).all()


def test_min_group_size_keeps_25_vg_attribution_pairs_on_the_real_data_only():
    """ARO keeps the VG-A attribute pairs with >= 25 examples (docs/protocol.md#relation-testing-aggregation); the
    twins and the other datasets keep every group."""
    assert rt.min_group_size("vg-attribution", "datasets") == 25
    assert rt.min_group_size("vg-attribution", None) == 1
    assert rt.min_group_size("vg-relation", "datasets") == 1 and rt.min_group_size("coco-order", None) == 1


def test_store_path_is_the_experiments_common_naming_rule(tiny_model, tmp_path):
    """relation testing names its stores with the rule every experiment uses (experiments.stores.store_path)."""
    from infodecomp.experiments import stores

    settings = rt.RelationSettings(protocol="corrected", n_samples=4)
    ident = rt.store_identity(settings, "vg-relation", "src")
    path = rt.store_path(tmp_path, tiny_model, "vg-relation", settings, 3, "src")
    assert path == stores.store_path(tmp_path, tiny_model, "relation_testing", "vg-relation", ident, 3,
                                     protocol="corrected")
    assert path.parent == tmp_path / "tiny" / "relation_testing" and path.name.startswith("vg-relation-corrected-")
