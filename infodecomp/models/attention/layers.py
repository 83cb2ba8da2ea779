"""Choosing which attention layers to record: one selection for the UNets' cross-attention (:mod:`.cross`) and
the MMDiT transformers' joint attention (:mod:`.joint`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = ["select_layers"]


def select_layers(available: list[str], layers: Iterable[str] | Callable[[str], bool] | None, *,
                  default: list[str], kind: str, owner: str) -> list[str]:
    """The layer names ``layers`` selects among ``available`` (in the network's order).

    Args:
        available: every layer of its ``kind`` the network has.
        layers: ``None`` (``default``), a predicate on the name, or a list of names (a trailing ``".processor"``
            is ignored).
        default: the selection for ``layers=None``.
        kind, owner: for the errors, e.g. ``"cross-attention"``, ``"this UNet"``.

    Raises ``ValueError`` for a name that is not available, or a selection that matches no layer.
    """
    if layers is None:
        chosen = list(default)
    elif callable(layers):
        chosen = [n for n in available if layers(n)]
    else:
        chosen = [n.removesuffix(".processor") for n in layers]
        unknown = [n for n in chosen if n not in available]
        if unknown:
            raise ValueError(f"unknown {kind} layers {unknown}; {owner} has {available}")
    if not chosen:
        raise ValueError(f"the layer selection matches no {kind} layer; available: {available}")
    return chosen
