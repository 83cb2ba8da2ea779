"""Where results live: headline numbers of the notebooks, and resumable, shardable per-example tables.

Two mechanisms, both plain files that a person can read:

1. **Headline numbers** (:mod:`~infodecomp.results.records`: :func:`record`, :class:`Recorder`): a notebook's last
   cell records a few numbers in ``figures/<model>/<notebook-stem>.json``.
2. **Per-example results** (:mod:`~infodecomp.results.store`: :class:`ResultStore`; :mod:`~infodecomp.results.sharding`:
   :func:`run_sharded`): an experiment streams one row per example to disk after every batch, so a killed run
   resumes; shards of a multi-process run merge into the table of a one-process run.

Beside them: :mod:`~infodecomp.results.tables` (Markdown/CSV tables), :mod:`~infodecomp.results.check` (check and
repair a damaged store: ``python -m infodecomp.results check|repair PATH``), :mod:`~infodecomp.results.files`
(JSON values and atomic writes).

This layer is given the model's identity as data (a mapping: :func:`infodecomp.models.identity.model_identity`
makes it of a loaded model) and imports no model code.
"""

from __future__ import annotations

from .check import StoreProblem, check_store, repair_store
from .files import to_jsonable
from .records import PROTOCOLS, PROVENANCE_KEY, Recorder, load_record, model_slug, record
from .sharding import example_seed, run_sharded, shard_indices
from .store import (
    STORE_FORMAT,
    IncompleteResultsError,
    ResultStore,
    SettingsMismatchError,
    StoreBusyError,
    StoreDamagedError,
    identity_data,
)
from .tables import markdown_table, save_tables

__all__ = [
    "PROTOCOLS",
    "PROVENANCE_KEY",
    "STORE_FORMAT",
    "IncompleteResultsError",
    "Recorder",
    "ResultStore",
    "SettingsMismatchError",
    "StoreBusyError",
    "StoreDamagedError",
    "StoreProblem",
    "check_store",
    "example_seed",
    "identity_data",
    "load_record",
    "markdown_table",
    "model_slug",
    "record",
    "repair_store",
    "run_sharded",
    "save_tables",
    "shard_indices",
    "to_jsonable",
]
