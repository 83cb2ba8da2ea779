"""The results table of docs/pid.md: notebook 09's partial information decomposition of two words, rendered from
the numbers it recorded (``figures/<model>/09_pid_two_words.json``, written by :class:`infodecomp.results.Recorder`)
between the markers ``<!-- pid-table:start -->`` and ``<!-- pid-table:end -->``.

The record holds, per case kind and estimator (``orthogonal`` is i^o, ``standard`` is i^s), ``{value, stderr}`` in
nats of the averages over rows::

    "<kind>_<estimator>_<quantity>"                for i1, i2, i12, coinformation (the same under every redundancy)
    "<kind>_<estimator>_<redundancy>_<atom>"       for redundancy, unique1, unique2, synergy ("ccs" or "mmi")

and ``unet_evaluations``, with the settings in ``_provenance`` (revision, protocol, seed, ``n_items`` rows per case,
``n_samples`` draws per row, ``kinds``). Records written before notebook 09 recorded the shared quantities once
(shapes-tiny v2's) repeat them under each redundancy: :func:`lookup` reads them there too.

Standard library only, like the rest of tools/ (``scripts/update_readme_results.py`` runs it without torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .markers import replace_block
from .numbers import format_value, read_record

__all__ = ["PID_START", "PID_END", "RECORD", "pid_markdown", "updated_text"]

PID_START = "<!-- pid-table:start -->"
PID_END = "<!-- pid-table:end -->"
#: The record the block is rendered from, relative to the figures folder: notebook 09 on the embedded model.
RECORD = Path("shapes-tiny") / "09_pid_two_words.json"
#: The placeholder when the record is absent (a checkout whose figures were not built).
MISSING = "Notebook 09 has not recorded its numbers on this model yet (`figures/{record}`)."

#: What each of ShapesWorld's case kinds pairs (infodecomp.experiments.pid.CASE_KINDS), as the table's first column.
CASES = {"colour-shape": "colour, shape of one object", "count-plural": "count word, plural noun",
         "relation-object": "relation word, second noun"}
#: The estimators in the record's keys, as the table writes them.
ESTIMATORS = {"orthogonal": "i^o", "standard": "i^s"}
#: The quantities that do not depend on the redundancy, and the atoms that do (infodecomp.pid.ATOMS).
SHARED = ("i1", "i2", "i12", "coinformation")
ATOMS = ("redundancy", "unique1", "unique2", "synergy")
#: The redundancies, in the order of the tables: CCS first (pointwise by construction; docs/pid.md's default).
REDUNDANCIES = {"ccs": "CCS (common change in surprisal)", "mmi": "MMI (minimum mutual information)"}
#: Provenance the heading states, each read from the record.
PROVENANCE = ("revision", "protocol", "seed", "n_items", "n_samples", "kinds")


def lookup(record: Mapping, kind: str, estimator: str, quantity: str, redundancy: str) -> tuple[float, float]:
    """``(value, stderr)`` in nats of one quantity of one case and estimator. A shared quantity (i1, i2, i12,
    coinformation) is read from ``<kind>_<estimator>_<quantity>``, or, in a record that repeats it under each
    redundancy, from ``<kind>_<estimator>_<redundancy>_<quantity>``; an atom from the latter. Raises ``KeyError``
    naming the key expected."""
    keys = [f"{kind}_{estimator}_{redundancy}_{quantity}"]
    if quantity in SHARED:
        keys.insert(0, f"{kind}_{estimator}_{quantity}")
    for key in keys:
        entry = record.get(key)
        if isinstance(entry, Mapping) and "value" in entry and "stderr" in entry:
            return float(entry["value"]), float(entry["stderr"])
    raise KeyError(keys[0])


def _value(value: float, stderr: float) -> str:
    # An atom set to exactly 0 by its definition (CCS's sign rule, MMI's unique information of the smaller
    # term) has no spread: write the 0 the rule gives, not "0 ± 0".
    return "0" if value == 0 and stderr == 0 else format_value(value, stderr)


def _heading(record: Mapping, prov: Mapping) -> str:
    model = prov.get("model_id") or prov.get("model")
    kinds = list(prov["kinds"])
    rows = "held-out ShapesWorld rows" if set(kinds) <= set(CASES) else "rows"
    if prov.get("target_stderr") is not None or prov.get("target_relative") is not None:
        targets = []
        if prov.get("target_stderr") is not None:
            targets.append(f"a standard error of {prov['target_stderr']} nats")
        if prov.get("target_relative") is not None:
            targets.append(f"{prov['target_relative']:.0%} of their value")
        draws = f"log-SNR draws per row until i1, i2 and i12 reach {' or '.join(targets)}, at most {prov['n_samples']}"
        if "rows_met_target" in record:
            draws += f" ({record['rows_met_target']} rows met it)"
    else:
        draws = f"{prov['n_samples']} log-SNR draws per row"
    if prov.get("sampling") == "fitted":
        draws += " from a stratified proposal fitted to i1, i2 and i12"
    dtype = f", dtype {prov['dtype']}" if prov.get("dtype") not in (None, "float32") else ""
    return (f"Model `{model}` (revision {prov['revision']}){dtype}, {prov['protocol']} protocol, seed {prov['seed']}, "
            f"{prov['n_items']} {rows} per case, {draws} ({record['unet_evaluations']:,} UNet evaluations); "
            f"atoms of the averages over rows, nats, ± one standard error over rows "
            f"(`figures/{RECORD.as_posix()}`).")


def pid_markdown(record: Mapping) -> str:
    """The block (without its markers): a heading line with the record's provenance, then one table per
    redundancy — CCS with i1, i2, i12 and the co-information, then MMI's atoms from the same draws — one row
    per case kind and estimator. Raises ``ValueError`` naming every key the record lacks."""
    prov = record.get("_provenance")
    if not isinstance(prov, Mapping):
        raise ValueError("the record has no _provenance: it was not written by infodecomp.results.record")
    missing = [f"_provenance.{k}" for k in PROVENANCE if k not in prov]
    missing += ["unet_evaluations"] if "unet_evaluations" not in record else []
    kinds = list(prov.get("kinds") or [])
    for kind in kinds:
        for estimator in ESTIMATORS:
            for redundancy in REDUNDANCIES:
                for quantity in SHARED + ATOMS:
                    try:
                        lookup(record, kind, estimator, quantity, redundancy)
                    except KeyError as err:
                        missing.append(err.args[0])
    if missing:
        raise ValueError(f"the record lacks {', '.join(dict.fromkeys(missing))} (docs/pid.md's table needs them; "
                         "rerun notebooks/09_pid_two_words.ipynb)")

    def row(kind, estimator, redundancy, quantities):
        cells = [_value(*lookup(record, kind, estimator, q, redundancy)) for q in quantities]
        return f"| {CASES.get(kind, f'`{kind}`')} | {ESTIMATORS[estimator]} | " + " | ".join(cells) + " |"

    lines = [_heading(record, prov)]
    for redundancy, name in REDUNDANCIES.items():
        quantities = (SHARED if redundancy == "ccs" else ()) + ATOMS
        head = ["i1", "i2", "i12", "co"] if redundancy == "ccs" else []
        head += ["R", "U1", "U2", "S"]
        caption = (f"**{name}**" if redundancy == "ccs" else
                   f"**{name}**, from the same draws (i1, i2, i12 and co as above)")
        lines += ["", caption, "", "| case (y1, y2) | estimator | " + " | ".join(head) + " |",
                  "|---|---|" + "---:|" * len(head)]
        lines += [row(kind, estimator, redundancy, quantities) for kind in kinds for estimator in ESTIMATORS]
    return "\n".join(lines)


def render(figures: str | Path) -> str:
    """The block for the record under ``figures`` (the placeholder line when there is none)."""
    path = Path(figures) / RECORD
    if not path.is_file():
        return MISSING.format(record=RECORD.as_posix())
    record = read_record(path)
    try:
        return pid_markdown(record)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def updated_text(text: str, figures: str | Path) -> str:
    """``text`` with the block between :data:`PID_START` and :data:`PID_END` replaced by :func:`render`."""
    return replace_block(text, PID_START, PID_END, render(figures))
