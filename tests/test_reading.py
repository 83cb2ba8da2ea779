"""What a reader of the executed notebooks and the book sees (issue 28): transformers' harmless torchvision
fallback notices are silenced at their source (``infodecomp.quiet``) while every other message still shows, and
the book's formulas are found (not dollar amounts, not code) and typeset as MathML, or the build names the page and
the formula it cannot typeset (``scripts/build_book.py``)."""

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


# ───────────────────────────────────────────── the book's formulas ─────────────────────────────────────────────

def _build_book():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, formulas", [
    ("It costs $5 and $10 more, or US$ 3.", []),
    ("from $5 to $6", []),
    ("a literal \\$x$ and a $ sign", []),
    ("code: `$x$` and\n```\n$y$\n```\nnot formulas", []),
    ("inline $x^2$, display $$\\frac{a}{b}$$.", [("x^2", False), ("\\frac{a}{b}", True)]),
    ("$i^o_j(x; y^*)$ and $i^o_j(x; y^*|c)$", [("i^o_j(x; y^*)", False), ("i^o_j(x; y^*|c)", False)]),
    ("$$\na = b\n$$", [("\na = b\n", True)]),
    ("no $formula\n\nacross$ paragraphs", []),
])
def test_formulas_are_found_outside_code_and_dollar_amounts(text, formulas):
    assert _build_book().find_math(text) == formulas


def test_formulas_become_mathml_and_code_stays():
    bb = _build_book()
    out = bb.typeset_math("The score $i^o(x; y)$ costs $5, `$keep$` and $$\\tfrac12 \\int f \\, d\\lambda$$", "p.md")
    assert out.count("<math ") == 2 and 'display="block"' in out and "`$keep$`" in out and "costs $5," in out
    assert "\\" not in out.replace("`$keep$`", "")


@pytest.mark.parametrize("tex", ["\\notacommand{x}", "\\frac{a}{b"])
def test_a_formula_that_cannot_be_typeset_names_page_and_formula(tex):
    with pytest.raises(SystemExit, match=r"docs/protocol\.md: cannot typeset the formula \$.*"):
        _build_book().typeset_math(f"text ${tex}$ text", "docs/protocol.md")


def test_every_formula_of_the_sources_typesets():
    """The formulas of the notebooks' text, docs/ and the README all convert (the book build would fail)."""
    import nbformat

    bb = _build_book()
    n = 0
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        bb.typeset_notebook(nb, f"notebooks/{path.name}")
        n += sum(c.source.count("<math ") for c in nb.cells if c.cell_type == "markdown")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        n += bb.typeset_math(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))).count("<math ")
    assert n > 0
