"""What a reader of the executed notebooks sees (issue 28): transformers' harmless torchvision fallback notices are
silenced at their source (``infodecomp.quiet``) while every other message still shows."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path

import pytest

import infodecomp  # noqa: F401  (installs the filter, as any notebook's import does)
from infodecomp import quiet
from infodecomp.precision import ReducedPrecisionWarning, warn_reduced_precision

ROOT = Path(__file__).resolve().parents[1]
NOTICE = ("`{0}` requires torchvision (not installed); falling back to `{0}Pil` for backward compatibility. "
          "Install torchvision to use the default backend, or import `{0}Pil` directly to silence this warning.")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def collected():
    """The messages that pass transformers' import logger (its filters run before any handler)."""
    logger = logging.getLogger(quiet.FALLBACK_LOGGER)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        yield logger, handler.messages
    finally:
        logger.removeHandler(handler)


def test_the_fallback_notices_are_dropped_and_nothing_else(collected):
    logger, messages = collected
    quiet.silence_known_fallbacks()  # a second call adds no second filter
    assert sum(isinstance(f, quiet.KnownFallbackFilter) for f in logger.filters) == 1
    for name in ("CLIPImageProcessor", "SiglipImageProcessor"):
        logger.warning(NOTICE.format(name))
    others = ["`ViTImageProcessor` requires torchvision (not installed); falling back to `ViTImageProcessorPil` "
              "for backward compatibility.",
              "`CLIPImageProcessor` requires torchvision (not installed); falling back to `SiglipImageProcessorPil` "
              "for backward compatibility.",
              "Could not load PIL fallback CLIPImageProcessorPil: a real error"]
    for message in others:
        logger.warning(message)
    logger.error("a real error of the same logger")
    assert messages == others + ["a real error of the same logger"]


def test_transformers_own_fallback_is_silent(collected):
    """The notice as transformers itself logs it, through its own logger (torchvision is not installed here)."""
    transformers = pytest.importorskip("transformers")
    from transformers.utils import logging as hf_logging

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: transformers does not fall back")
    _, messages = collected
    hf_logging.get_logger(quiet.FALLBACK_LOGGER).warning_once(NOTICE.format("CLIPImageProcessor"))
    assert transformers.SiglipImageProcessor.__name__ == "SiglipImageProcessorPil"
    assert not any("requires torchvision" in m for m in messages), messages


def test_reduced_precision_warning_still_shows():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_reduced_precision("float16", "a test result")
    assert [w.category for w in caught] == [ReducedPrecisionWarning]

