"""infodecomp: information decomposition for diffusion models.

A reproduction of *Interpretable Diffusion via Information Decomposition* (Kong, Liu, Li, Yogatama,
Ver Steeg, ICLR 2024). ``import infodecomp as idc`` is all a notebook imports; submodules load on first use::

    idc.estimators.pointwise_information(denoiser, x, cond, ref)
    model = idc.models.load_model("shapes-tiny")

Information is always in nats. See docs/architecture.md for the layout and the design.
"""

from __future__ import annotations

import importlib

from infodecomp.quiet import silence_known_fallbacks

__version__ = "0.1.0"

_SUBMODULES = (
    "analytic", "data", "editing", "estimators", "experiments", "logsnr", "metrics", "models", "pid",
    "plotting", "results", "text", "tokenizer", "training", "widgets", "diagnostics",
)

# transformers' harmless torchvision-fallback notices, silenced before any pipeline loads (infodecomp/quiet.py)
silence_known_fallbacks()


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'infodecomp' has no attribute {name!r}; submodules: {', '.join(_SUBMODULES)}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
