"""Click latency of the interactive probe (issue 8: a click gives a CMI map in under 3 s on a CPU).

On the embedded shapes-tiny model on the CPU, with the probe as the notebook builds it (background worker), it
times a click on a word button until the MI, CMI and attention maps and the image-level values are displayed
(``button.click()`` → :meth:`Probe.wait`; the widget values are set when the wait returns):

* the first click after loading (cold: first UNet calls, attention hooks),
* fresh clicks: a new (image, word) each time with the cache cleared — median and 90th percentile,
* cache hits: the same clicks again (only the drawing),
* one "intervene" (invert + regenerate with the word omitted) at the default ODE steps,

for each number of log-SNR draws in ``--samples`` (default: the probe's default, 16), and prints the figures
with the machine's load, since a CPU shared with other work is slower.

    PYTHONPATH=. python benchmarks/probe_latency.py
    PYTHONPATH=. python benchmarks/probe_latency.py --samples 8 16 32 --clicks 12
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def _click(probe, button) -> float:
    t0 = time.perf_counter()
    button.click()
    if not probe.wait(600):
        raise RuntimeError("the probe did not finish a click within 600 s")
    if probe.result is None or "probe-error" in probe.message.value:
        raise RuntimeError(f"the click failed: {probe.message.value}")
    return time.perf_counter() - t0


def _buttons(probe, item: int) -> list:
    probe.load_item(item)
    return [b for b in probe.word_buttons]


def main(argv=None) -> None:
    from infodecomp.experiments.probe import DEFAULT_SAMPLES
    from infodecomp.models import load_model
    from infodecomp.widgets import Probe, ProbeSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, nargs="+", default=[DEFAULT_SAMPLES], help="log-SNR draws per map")
    ap.add_argument("--clicks", type=int, default=10, help="fresh clicks per setting (distinct image and word)")
    ap.add_argument("--steps", type=int, default=20, help="ODE steps of the timed intervention")
    args = ap.parse_args(argv)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    t0 = time.perf_counter()
    model = load_model("shapes-tiny")
    print(f"load_model('shapes-tiny'): {time.perf_counter() - t0:.2f} s")

    for n in args.samples:
        probe = Probe(model, settings=ProbeSettings(n_samples=n), intervention_steps=args.steps)
        cold = _click(probe, _buttons(probe, 0)[-1])
        fresh, clicked = [], []
        item = 1
        while len(fresh) < args.clicks:
            for b in _buttons(probe, item % len(probe.dataset)):
                if len(fresh) == args.clicks:
                    break
                probe.clear_cache()
                fresh.append(_click(probe, b))
                clicked.append((item % len(probe.dataset), b.description))
            item += 1
        hits = []
        for it, word in clicked[:5]:  # fill the cache with these five, then click them again
            probe.load_item(it)
            _click(probe, next(b for b in probe.word_buttons if b.description == word))
            hits.append(_click(probe, next(b for b in probe.word_buttons if b.description == word)))
        probe.load_item(0)
        _click(probe, next(b for b in probe.word_buttons if b.description == probe.dataset[0]["word"]))
        t1 = time.perf_counter()
        probe.intervene()
        probe.wait(600)
        iv = time.perf_counter() - t1
        q90 = sorted(fresh)[max(0, int(round(0.9 * len(fresh))) - 1)]
        print(f"\n{n} log-SNR draws per map (attention: {n} passes), {len(fresh)} fresh clicks:")
        print(f"  first click after loading: {cold:.2f} s")
        print(f"  click -> maps shown, fresh: median {statistics.median(fresh):.2f} s, 90th percentile {q90:.2f} s, "
              f"max {max(fresh):.2f} s")
        print(f"  click -> maps shown, cache hit: median {statistics.median(hits):.3f} s")
        print(f"  intervene ({args.steps} ODE steps, omit/swap + reconstruction): {iv:.2f} s")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
