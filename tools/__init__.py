"""The repository's own tooling, outside the ``infodecomp`` package: what keeps the README and docs/ up to date.

* :mod:`tools.markers`: generated blocks in Markdown files (the text between ``<!-- name:start -->`` and
  ``<!-- name:end -->``), rewritten atomically and checked for staleness;
* :mod:`tools.numbers`: how a recorded ``value ± stderr`` is written in the generated tables;
* :mod:`tools.pid_table`: notebook 09's partial information decomposition as the table of docs/pid.md
  (``scripts/update_readme_results.py``, beside docs/results.md's results block);
* :mod:`tools.claims`: the paper's claims as paired differences with a verdict, rendered as the claims table of
  the README and docs/results.md (``scripts/update_claims.py``);
* :mod:`tools.cost_plan`: the cost plan of ``infodecomp.experiments.costs`` as the table of docs/running.md, with
  GPU-hours at a throughput measured by ``benchmarks/sd21_throughput.py`` (``scripts/cost_plan.py``).

Standard library only (``tools.cost_plan`` also reads ``infodecomp.experiments.costs``, which imports only the
standard library at its top), so that the scripts that write the documents run without torch. Scripts import it
normally: the editable install provides it (pyproject.toml), as it provides ``infodecomp``.
"""
