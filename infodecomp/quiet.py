"""Silence the known, harmless notices of the libraries below us, and nothing else.

transformers ≥ 5 names its torchvision-backed image processors ``CLIPImageProcessor`` and
``SiglipImageProcessor``; without torchvision (there is no CPU build of it here) it falls back to the PIL ones and
logs, once per class, "`CLIPImageProcessor` requires torchvision (not installed); falling back to
`CLIPImageProcessorPil` …". A diffusers pipeline with a safety checker or an image encoder asks for those classes
on every load, so every executed notebook carried a red stderr block a reader can do nothing about (issue 28):
without torchvision the PIL class is the only one that can run, and the notice says so after the fact.

:func:`silence_known_fallbacks` adds a :class:`logging.Filter` to the one logger that emits the notice
(``transformers.utils.import_utils``), matching exactly those messages: every other record of that logger, every
other logger, and every Python warning (a :class:`~infodecomp.precision.ReducedPrecisionWarning`, say) still show.
``import infodecomp`` installs it (``infodecomp/__init__.py``), before any pipeline is loaded. It needs no import
of transformers: the logger is looked up by name, as transformers itself does.
"""

from __future__ import annotations

import logging
import re

__all__ = ["FALLBACK_LOGGER", "KNOWN_FALLBACK", "KnownFallbackFilter", "is_known_fallback", "silence_known_fallbacks"]

#: The logger of ``transformers.utils.import_utils`` (``transformers.utils.logging.get_logger(__name__)``).
FALLBACK_LOGGER = "transformers.utils.import_utils"
#: The fallback notices, exactly: the two image processors the SD-family pipelines load, falling back to their
#: own ``…Pil`` class (the back-reference ties the two names together).
KNOWN_FALLBACK = re.compile(
    r"`(?P<name>CLIPImageProcessor|SiglipImageProcessor)` requires torchvision \(not installed\); "
    r"falling back to `(?P=name)Pil` for backward compatibility\.")


def is_known_fallback(message: str) -> bool:
    """Whether ``message`` is one of the harmless torchvision fallback notices (it starts with one)."""
    return KNOWN_FALLBACK.match(message) is not None


class KnownFallbackFilter(logging.Filter):
    """Drops the records whose message is a known fallback notice; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge: let its handler report it
            return True
        return not is_known_fallback(message)


def silence_known_fallbacks() -> None:
    """Install :class:`KnownFallbackFilter` on transformers' import logger (once; calling again does nothing)."""
    logger = logging.getLogger(FALLBACK_LOGGER)
    if not any(isinstance(f, KnownFallbackFilter) for f in logger.filters):
        logger.addFilter(KnownFallbackFilter())
