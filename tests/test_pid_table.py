"""docs/pid.md's generated table (tools/pid_table.py, written by scripts/update_readme_results.py) from notebook 09's
record: the rows it renders, the keys it refuses to do without, and the record the notebook's last cell writes."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tools import pid_table

REPO = Path(__file__).resolve().parent.parent
KINDS = ["colour-shape", "count-plural", "relation-object"]
PROVENANCE = {"model": "shapes-tiny", "model_id": "shapes-tiny", "revision": "sha256:0123456789abcdef",
              "dtype": None, "protocol": "corrected", "seed": 3, "n_samples": 48, "n_items": 20, "kinds": KINDS,
              "target_stderr": None, "target_relative": None, "date": "2027-01-01T00:00:00+00:00"}
DOC = "# PID\n\nBefore.\n\n<!-- pid-table:start -->\nstale\n<!-- pid-table:end -->\n\nAfter.\n"


def _record(shared_under_redundancy: bool = False) -> dict:
    """A record in notebook 09's layout: every case × estimator, i1 = 10 + k, i2 = 5, i12 = 12, co = i1 + i2 −
    i12 and CCS/MMI atoms worked out by hand for the colour-shape row (k = 0: co = 3 > 0 with every sign
    positive, so CCS's R = co)."""
    record = {}
    for k, kind in enumerate(KINDS):
        for estimator in ("orthogonal", "standard"):
            i1, i2, i12 = 10.0 + k, 5.0, 12.0
            co = i1 + i2 - i12
            shared = {"i1": (i1, 0.5), "i2": (i2, 0.25), "i12": (i12, 1.0), "coinformation": (co, 0.75)}
            atoms = {"ccs": {"redundancy": (co, 0.75), "unique1": (i1 - co, 0.6), "unique2": (i2 - co, 0.4),
                             "synergy": (0.0, 0.0)},
                     "mmi": {"redundancy": (i2, 0.25), "unique1": (i1 - i2, 0.55), "unique2": (0.0, 0.0),
                             "synergy": (i12 - i1, 1.1)}}
            for redundancy, values in atoms.items():
                if shared_under_redundancy:  # the layout of records written before the shared ones were deduplicated
                    values = {**shared, **values}
                for q, (v, se) in values.items():
                    record[f"{kind}_{estimator}_{redundancy}_{q}"] = {"value": v, "stderr": se}
            if not shared_under_redundancy:
                for q, (v, se) in shared.items():
                    record[f"{kind}_{estimator}_{q}"] = {"value": v, "stderr": se}
    record["unet_evaluations"] = 11_520
    record["_provenance"] = dict(PROVENANCE)
    return record


def _write(figures: Path, record: dict) -> Path:
    path = figures / pid_table.RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _load_script():
    path = REPO / "scripts" / "update_readme_results.py"
    spec = importlib.util.spec_from_file_location("update_readme_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_renders_each_row_and_a_heading_read_from_the_record():
    text = pid_table.pid_markdown(_record())
    heading = text.splitlines()[0]
    assert heading.startswith("Model `shapes-tiny` (revision sha256:0123456789abcdef), corrected protocol, seed 3, "
                              "20 held-out ShapesWorld rows per case, 48 log-SNR draws per row "
                              "(11,520 UNet evaluations);"), heading
    # CCS: i1, i2, i12, co, then R = co, U1 = i1 − R, U2 = i2 − R, S = 0 exactly (written as the rule's 0)
    assert "| colour, shape of one object | i^o | 10.00 ± 0.50 | 5.00 ± 0.25 | 12.0 ± 1.0 | 3.00 ± 0.75 | " \
           "3.00 ± 0.75 | 7.00 ± 0.60 | 2.00 ± 0.40 | 0 |" in text
    # MMI: R = min(i1, i2), U2 = 0, S = i12 − i1, from the same draws
    assert "| relation word, second noun | i^s | 5.00 ± 0.25 | 7.00 ± 0.55 | 0 | 0.0 ± 1.1 |" in text
    assert text.count("| i^o |") == text.count("| i^s |") == 2 * len(KINDS)


def test_a_record_that_repeats_the_shared_quantities_gives_the_same_table():
    """shapes-tiny v2's record repeats i1, i2, i12 and co under each redundancy; it renders as the new layout."""
    assert pid_table.pid_markdown(_record(shared_under_redundancy=True)) == pid_table.pid_markdown(_record())


def test_a_record_missing_a_key_is_refused_naming_it():
    record = _record()
    del record["relation-object_standard_ccs_synergy"], record["count-plural_orthogonal_i12"]
    del record["unet_evaluations"], record["_provenance"]["revision"]
    with pytest.raises(ValueError) as err:
        pid_table.pid_markdown(record)
    msg = str(err.value)
    for key in ("relation-object_standard_ccs_synergy", "count-plural_orthogonal_i12", "unet_evaluations",
                "_provenance.revision", "09_pid_two_words.ipynb"):
        assert key in msg, msg
    with pytest.raises(ValueError, match="no _provenance"):
        pid_table.pid_markdown({k: v for k, v in _record().items() if k != "_provenance"})


def test_a_target_and_another_dtype_are_said_in_the_heading():
    record = _record()
    record["_provenance"].update(target_stderr=0.5, dtype="bfloat16")
    record["rows_met_target"] = 57
    heading = pid_table.pid_markdown(record).splitlines()[0]
    assert "dtype bfloat16" in heading
    assert "until i1, i2 and i12 reach a standard error of 0.5 nats, at most 48 (57 rows met it)" in heading
    record["_provenance"].update(target_stderr=None, sampling="fitted")
    heading = pid_table.pid_markdown(record).splitlines()[0]
    assert "48 log-SNR draws per row from a stratified proposal fitted to i1, i2 and i12" in heading


def test_the_script_writes_and_checks_the_block(tmp_path):
    script = _load_script()
    doc, figures = tmp_path / "pid.md", tmp_path / "figures"
    doc.write_text(DOC, encoding="utf-8")
    args = ["--doc", str(doc), "--figures", str(figures)]
    assert script.main(args) == 0  # no record yet: a line saying so
    assert "has not recorded its numbers" in doc.read_text(encoding="utf-8")
    _write(figures, _record())
    assert script.main(args + ["--check"]) == 1 and "has not recorded" in doc.read_text(encoding="utf-8")
    assert script.main(args) == 0 and script.main(args + ["--check"]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# PID\n\nBefore.\n\n<!-- pid-table:start -->\nModel `shapes-tiny`")
    assert text.endswith("<!-- pid-table:end -->\n\nAfter.\n") and "stale" not in text
    # a new number makes it stale; an incomplete record is refused with the document and the key named
    record = _record()
    record["colour-shape_orthogonal_i1"]["value"] = 11.0
    _write(figures, record)
    assert script.main(args + ["--check"]) == 1
    del record["colour-shape_orthogonal_i1"]
    _write(figures, record)
    with pytest.raises(SystemExit, match=r"pid\.md.*colour-shape_orthogonal_i1"):
        script.main(args + ["--check"])


def test_the_notebooks_record_cell_writes_each_quantity_once_in_the_layout_the_table_reads(tmp_path):
    """Notebook 09's last cell, run on a summary of pid.summary's shape: the shared quantities are recorded once per
    case and estimator, the atoms once per redundancy, and the table renders from the file it wrote."""
    from infodecomp import plotting, proposals, results

    nb = nbformat.read(str(REPO / "notebooks" / "09_pid_two_words.ipynb"), as_version=4)
    cell = nb.cells[-1]
    assert "Recorder(" in cell.source, "the record cell is the notebook's last"
    rows = []
    for kind in KINDS:
        for estimator in ("orthogonal", "standard"):
            for redundancy in ("mmi", "ccs"):
                for q in pid_table.SHARED + pid_table.ATOMS:
                    rows.append({"kind": kind, "estimator": estimator, "redundancy": redundancy, "quantity": q,
                                 "value": 1.5, "stderr": 0.5, "n": 20})
    namespace = {"results": results, "plotting": plotting, "proposals": proposals, "SAMPLING": "auto",
                 "summary": pd.DataFrame(rows), "OUT_DIR": str(tmp_path),
                 "model_name": "shapes-tiny", "MODEL": "shapes-tiny", "model": types.SimpleNamespace(version="sha"),
                 "N_ITEMS": 20, "N_SAMPLES": 48, "SEED": 0, "TARGET_STDERR": None, "TARGET_RELATIVE": None,
                 "run": types.SimpleNamespace(evaluations=11_520, target_met=None)}
    exec(cell.source, namespace)
    record = json.loads((tmp_path / pid_table.RECORD).read_text(encoding="utf-8"))
    numbers = [k for k in record if not k.startswith("_")]
    assert len(numbers) == len(KINDS) * 2 * (len(pid_table.SHARED) + 2 * len(pid_table.ATOMS)) + 1
    assert "colour-shape_orthogonal_i1" in record and "colour-shape_orthogonal_ccs_i1" not in record
    assert "| colour, shape of one object | i^o | 1.50 ± 0.50 |" in pid_table.pid_markdown(record)
    assert record["_provenance"]["sampling"] == "fitted"  # "auto" is recorded as what it resolved to


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object")])
def test_a_record_that_is_not_a_json_object_is_refused_naming_the_file(tmp_path, text, match):
    path = tmp_path / "shapes-tiny" / "09_pid_two_words.json"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"09_pid_two_words\.json: {match}"):
        pid_table.render(tmp_path)
