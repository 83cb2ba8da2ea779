"""Sharded, resumable loops over a dataset (:func:`run_sharded`), and the seeds that make them shard-independent.

:func:`run_sharded` gives process ``p`` of ``P`` (from ``accelerate.PartialState``) the example indices
``p, p + P, p + 2P, ...`` (or, with ``aligned=True``, the aligned batches ``p, p + P, ...`` of ``batch_size``
examples, for experiments whose randomness is drawn per batch); each process writes its own ``rows-p-of-P.jsonl`` of a
:class:`~infodecomp.results.ResultStore`; :meth:`ResultStore.merge` reads all shard files and returns one table
sorted by example index, identical to a one-process run as long as each example's result depends only on the
example (seed per example: :func:`example_seed`), or only on its aligned batch (seed per batch, ``aligned=True``).
"""

from __future__ import annotations

import hashlib
import numbers
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from .store import ResultStore, SettingsMismatchError, check_shard

__all__ = ["aligned_batch", "example_seed", "run_sharded", "shard_indices"]


def example_seed(seed: int, key: int | str) -> int:
    """A 63-bit seed for one example, stable across processes, runs and machines.

    Derived from ``sha256(f"{seed}:{key}")`` (Python's ``hash`` is salted per process, so it would not do).
    Use it as ``torch.Generator(device).manual_seed(example_seed(SEED, example_id))`` so that an example's
    result does not depend on its batch or shard.
    """
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard_indices(n_examples: int, process_index: int, num_processes: int, *, block: int = 1) -> Sequence[int]:
    """The example indices of process ``process_index`` of ``num_processes``: ``p, p + P, p + 2P, ...``.

    Strided (not contiguous) so that every shard sees a similar mix of examples. With ``block`` > 1 the unit is
    the aligned block ``b`` of examples ``b·block … (b + 1)·block − 1``: process ``p`` takes blocks ``p, p + P, …``
    (whole), so the examples of one block are always computed together, whatever the number of processes.
    """
    check_shard(process_index, num_processes)
    if n_examples < 0:
        raise ValueError(f"n_examples must be >= 0; got {n_examples}")
    if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1:
        raise ValueError(f"block must be an int >= 1; got {block!r}")
    if block == 1:
        return range(process_index, n_examples, num_processes)
    n_blocks = -(-n_examples // block)
    return [i for b in range(process_index, n_blocks, num_processes)
            for i in range(b * block, min((b + 1) * block, n_examples))]


def aligned_batch(data: Sequence, todo: Sequence[int], given: Sequence, batch_size: int
                  ) -> tuple[int, list[int], list]:
    """``(b, indices, rows)`` of the aligned batch ``b`` that holds the example indices ``todo`` (as
    :func:`run_sharded` with ``aligned=True`` gives them, with their rows ``given``): the
    whole batch is computed, so that a resumed or sharded run draws what an uninterrupted one-process run
    draws; the rows not given are read from ``data``."""
    b = int(todo[0]) // batch_size
    if any(int(i) // batch_size != b for i in todo):
        raise ValueError(f"indices {list(todo)} are not of one aligned batch of {batch_size}")
    idx = list(range(b * batch_size, min((b + 1) * batch_size, len(data))))
    have = dict(zip((int(i) for i in todo), given))
    return b, idx, [have[i] if i in have else data[i] for i in idx]


def _env_world_size() -> int:
    for key in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(key, "").strip():
            return int(os.environ[key])
    return 1


def _partial_state():
    """``accelerate.PartialState()``, made to see a multi-process CPU launch.

    On a machine without CUDA, ``accelerate launch --multi_gpu --num_processes P`` starts P processes, but
    ``PartialState()`` (cpu=False) then reports one process each (index 0 of 1): every process would compute
    every example. If the launcher says there are several processes and there is no CUDA, ask for the
    multi-CPU (gloo) state instead. An already initialised state is used as it is.
    """
    from accelerate import PartialState  # heavy (imports torch): only when a loop runs

    if PartialState._shared_state != {}:  # initialised by the caller (or by an Accelerator): respect it
        return PartialState()
    import torch  # heavy: only when a loop runs

    cpu = _env_world_size() > 1 and not torch.cuda.is_available()
    return PartialState(cpu=cpu)


def _example_id(examples: Any, i: int) -> str | None:
    """The id an example will be stored under, read cheaply where the dataset can (``text_row``: no image)."""
    text_row = getattr(examples, "text_row", None)
    ex = text_row(i) if callable(text_row) else examples[i]
    return str(ex["id"]) if isinstance(ex, Mapping) and "id" in ex else None


def _check_done_ids(store: "ResultStore", examples: Any, indices: list[int]) -> None:
    """A resumed run skips the examples that have a row; that is only right if each row is of the example now at
    its index. Other data under the same settings (another subset, order or version of a dataset) would otherwise
    keep the old rows beside new ones: refuse, naming the first rows that differ."""
    if not indices:
        return
    want = set(indices)
    stored = {row["index"]: row["id"] for row in store._iter_rows() if row["index"] in want}
    wrong = []
    for i in indices:
        given = _example_id(examples, i)
        if given is not None and i in stored and stored[i] != given:
            wrong.append((i, stored[i], given))
            if len(wrong) == 3:
                break
    if wrong:
        listed = "; ".join(f"index {i}: row of {s!r}, example now {g!r}" for i, s, g in wrong)
        raise SettingsMismatchError(
            f"the result store at {store.path} holds rows of other examples than those given at the same indices "
            f"({listed}): the data changed under the same settings (another subset, order or version of the "
            "dataset). Use another store folder for these examples, or move this one aside to recompute.")


def run_sharded(
    examples: Sequence[Any] | int,
    fn_batch: Callable[..., Sequence[Mapping[str, Any]]],
    store: ResultStore,
    batch_size: int,
    *,
    state: Any = None,
    process_index: int | None = None,
    num_processes: int | None = None,
    with_indices: bool = False,
    aligned: bool = False,
    indices: Iterable[int] | None = None,
    desc: str | None = None,
    progress: bool = True,
    wait: bool = True,
) -> int:
    """Run ``fn_batch`` over this process's share of ``examples``, streaming rows into ``store``; resumable.

    Args:
        examples: a sequence of examples (``len`` + ``__getitem__``, e.g. a dataset of dicts) or an int ``n``
            (then the examples are the indices ``0 .. n-1``).
        fn_batch: ``fn_batch(batch) -> rows`` (or ``fn_batch(batch, indices)`` with ``with_indices=True``), one
            row dict per example, in order. ``index`` is filled in; ``id`` defaults to ``example["id"]`` for dict
            examples, else ``str(index)``. For results that do not depend on the sharding, an example's result
            must depend only on that example (seed it with :func:`example_seed`, never share noise across a batch).
        store: where rows go; examples that already have a row (in any shard) are skipped. The shard's writer's
            lock is held for the whole call (:meth:`ResultStore.writing`): while another run writes the same
            examples, this one raises :class:`StoreBusyError` before computing anything.
        batch_size: examples per ``fn_batch`` call; rows are written (and fsynced) after every call.
        state: an ``accelerate.PartialState`` (default: :func:`_partial_state`), giving ``process_index`` and
            ``num_processes``; or give both ints explicitly.
        aligned: shard and batch by aligned batches (:func:`shard_indices` with ``block=batch_size``): batch
            ``b`` holds the examples ``b·batch_size … (b + 1)·batch_size − 1`` and process ``p`` takes batches
            ``p, p + P, …``; ``fn_batch`` gets the examples of one aligned batch that have no row yet. For
            experiments that draw their randomness per batch (seeded by the batch's number): a batch is then the
            same batch in every run and every launch, so the rows do not depend on the number of processes.
        indices: compute only these example indices (default: all); the others are left as they are.
        desc, progress: the tqdm bar (examples per second), shown on process 0 only.
        wait: with several processes, wait for all of them at the end (so process 0 can merge).

    Process ``p`` of ``P`` takes indices ``p, p+P, ...`` (:func:`shard_indices`) in fixed batches of its share
    (or the aligned batches ``p, p+P, ...`` with ``aligned``);
    a resumed run recomputes only missing examples. Exceptions from ``fn_batch`` propagate; the batches written
    before stay on disk.

    Returns:
        the number of examples computed by this call in this process.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if (process_index is None) != (num_processes is None):
        raise ValueError("give both process_index and num_processes, or neither (then accelerate decides)")
    if process_index is None:
        if state is None:
            state = _partial_state()
        process_index, num_processes = state.process_index, state.num_processes
        if num_processes == 1 and _env_world_size() > 1:
            raise RuntimeError(
                f"the launcher started {_env_world_size()} processes but accelerate's state sees only one "
                f"(distributed type {getattr(state, 'distributed_type', '?')}); every process would compute every "
                "example. On CPU, create accelerate.PartialState(cpu=True) before calling run_sharded."
            )
    elif state is not None:
        raise ValueError("give either state or process_index/num_processes, not both")
    if isinstance(examples, numbers.Integral) and not isinstance(examples, bool):
        n, get = int(examples), None
    else:
        n, get = len(examples), examples.__getitem__
    mine = shard_indices(n, process_index, num_processes, block=batch_size if aligned else 1)
    if indices is not None:
        wanted = {int(i) for i in indices}
        mine = [i for i in mine if i in wanted]
    if aligned:  # one batch per aligned block (a subset of indices may leave a block partly wanted)
        batches: list[list[int]] = []
        for i in mine:
            if batches and batches[-1][0] // batch_size == i // batch_size:
                batches[-1].append(i)
            else:
                batches.append([i])
    else:
        batches = [list(mine[k:k + batch_size]) for k in range(0, len(mine), batch_size)]
    computed = 0

    # The writer's lock for the whole run: a second run on the same examples stops at once (StoreBusyError)
    # instead of computing and writing them twice; what is on disk is read under the lock.
    with store.writing((process_index, num_processes)):
        done = store.done_indices()
        if get is not None:
            _check_done_ids(store, examples, [i for i in mine if i in done])
        n_done = sum(1 for i in mine if i in done)
        with tqdm(total=len(mine), initial=n_done, unit="ex", desc=desc or store.path.name,
                  disable=not progress or process_index != 0, smoothing=0.1) as bar:
            for batch_idx in batches:
                todo = [i for i in batch_idx if i not in done]
                if not todo:
                    continue
                batch = todo if get is None else [get(i) for i in todo]
                rows = fn_batch(batch, todo) if with_indices else fn_batch(batch)
                rows = list(rows) if rows is not None else None
                if rows is None or len(rows) != len(todo):
                    raise ValueError(f"fn_batch must return one row per example: got "
                                     f"{None if rows is None else len(rows)} rows for {len(todo)} examples")
                out = []
                for i, ex, row in zip(todo, batch, rows):
                    if not isinstance(row, Mapping):
                        raise TypeError(f"fn_batch must return dicts; got {type(row).__name__} for example {i}")
                    if "index" in row and row["index"] != i:
                        raise ValueError(f"fn_batch returned index {row['index']} for example {i}")
                    default_id = ex["id"] if isinstance(ex, Mapping) and "id" in ex else i
                    out.append({"index": i, "id": str(row.get("id", default_id)),
                                **{k: v for k, v in row.items() if k not in ("index", "id")}})
                store.append(out, shard=(process_index, num_processes))
                computed += len(todo)
                bar.update(len(todo))
    if wait and state is not None and num_processes > 1:
        state.wait_for_everyone()
    return computed
