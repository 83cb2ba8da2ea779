"""SD 2.1-base UNet throughput on a GPU: UNet evaluations per second for the cost plan (scripts/cost_plan.py).

A random-weight UNet of SD 2.1-base's architecture (``infodecomp.testing.sd21_unet``: block channels
320/640/1280/1280, 5/10/20/20 heads, cross-attention width 1024, linear projections) at 64×64×4 latents with
77 × 1024 prompt states, timed as the experiments call it (``unet(z, t, encoder_hidden_states=cond)``, no grad,
a spread of timesteps), over dtype (float32 / float16 / bfloat16) × batch size × attention (PyTorch SDPA,
``AttnProcessor2_0``, or the classic ``AttnProcessor``) × ``torch.compile`` on or off. Weights do not change the
speed, so random ones measure what SD 2.1-base costs. One evaluation = one batch row.

    python benchmarks/sd21_throughput.py --out benchmarks/results/sd21_throughput.json   # a GPU, ≤ --max-minutes
    python scripts/cost_plan.py --throughput-json benchmarks/results/sd21_throughput.json --readme

Without CUDA it says so and exits 0 without measuring anything. ``--cpu-smoke`` instead runs ONE float32 call at
batch 1 (``--smoke-width-divisor`` / ``--smoke-sample-size`` shrink it) to show that the script works; its JSON
is marked ``smoke`` and the cost plan refuses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DTYPES = ("float32", "float16", "bfloat16")  # torch.<name>; torch is imported after the arguments are checked


def _ints(text: str, name: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--{name} must be comma-separated integers, got {text!r}") from None
    if not out or any(v < 1 for v in out):
        raise SystemExit(f"--{name} must list integers >= 1, got {text!r}")
    return out


def _choices(text: str, name: str, allowed) -> list:
    out = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in out if v not in allowed]
    if not out or bad:
        raise SystemExit(f"--{name}: {bad or text!r} not in {sorted(allowed)}")
    return out


def _switch(text: str, name: str) -> list[bool]:
    return [v == "on" for v in _choices(text, name, ("on", "off"))]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_attention(unet, sdpa: bool) -> None:
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0() if sdpa else AttnProcessor())


def time_cell(unet, batch: int, dtype, device, *, min_time: float, warmup: int, seed: int = 0) -> dict:
    """Median seconds of one call on ``batch`` rows after ``warmup`` calls (for a compiled UNet, the first
    warm-up call compiles; its seconds are reported as ``first_call_s``)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(batch, 4, unet.config.sample_size, unet.config.sample_size, generator=g).to(device, dtype)
    cond = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g).to(device, dtype)
    t = torch.linspace(0, 999, batch).round().long().to(device)
    with torch.no_grad():
        t0 = time.perf_counter()
        unet(z, t, encoder_hidden_states=cond, return_dict=False)
        _sync(device)
        first = time.perf_counter() - t0
        for _ in range(max(0, warmup - 1)):
            unet(z, t, encoder_hidden_states=cond, return_dict=False)
        _sync(device)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < min_time or len(times) < 3:
            t0 = time.perf_counter()
            unet(z, t, encoder_hidden_states=cond, return_dict=False)
            _sync(device)
            times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return {"seconds_per_call": med, "evals_per_second": batch / med, "first_call_s": first, "timed_calls": len(times)}


def _meta(device) -> dict:
    import diffusers
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores, " \
        f"{torch.get_num_threads()} threads)"
    return {"benchmark": "sd21_throughput", "device": name, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "latent": [4, 64, 64], "tokens": 77,
            "unit": "UNet evaluations (batch rows) per second, median call"}


def _write(path: Path | None, data: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def smoke(args) -> int:
    import torch

    from infodecomp.testing import sd21_unet

    device = torch.device("cpu")
    unet = sd21_unet(sample_size=args.smoke_sample_size, width_divisor=args.smoke_width_divisor, device=device)
    set_attention(unet, True)
    with torch.no_grad():
        z = torch.randn(1, 4, args.smoke_sample_size, args.smoke_sample_size)
        t0 = time.perf_counter()
        out = unet(z, torch.tensor([500]), encoder_hidden_states=torch.randn(1, 77, 1024), return_dict=False)[0]
        sec = time.perf_counter() - t0
    if tuple(out.shape) != tuple(z.shape) or not torch.isfinite(out).all():
        print(f"smoke step FAILED: output {tuple(out.shape)}, finite {bool(torch.isfinite(out).all())}",
              file=sys.stderr)
        return 1
    print(f"CPU smoke step: one float32 call, batch 1, {args.smoke_sample_size}×{args.smoke_sample_size} latents, "
          f"width divisor {args.smoke_width_divisor}: {sec:.2f} s (not a throughput measurement)")
    data = {**_meta(device), "smoke": True, "latent": [4, args.smoke_sample_size, args.smoke_sample_size],
            "width_divisor": args.smoke_width_divisor,
            "rows": [{"dtype": "float32", "batch": 1, "sdpa": True, "compile": False, "seconds_per_call": sec}]}
    _write(args.out, data)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtypes", default="float32,float16,bfloat16")
    p.add_argument("--batches", default="1,8,32,64,128", help="comma-separated batch sizes")
    p.add_argument("--sdpa", default="on,off", help="on, off or on,off: PyTorch SDPA attention or the classic one")
    p.add_argument("--compile", default="off,on", help="torch.compile the UNet: off, on or off,on")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds of timed calls per cell")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per cell (the first one compiles)")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="stop starting new cells after this many minutes (the JSON says which were skipped)")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here (read by scripts/cost_plan.py)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--cpu-smoke", action="store_true", help="without CUDA: one tiny float32 call to show the script runs")
    p.add_argument("--smoke-sample-size", type=int, default=64)
    p.add_argument("--smoke-width-divisor", type=int, default=1)
    args = p.parse_args(argv)
    dtypes = _choices(args.dtypes, "dtypes", DTYPES)
    batches = _ints(args.batches, "batches")
    sdpas, compiles = _switch(args.sdpa, "sdpa"), _switch(args.compile, "compile")
    if args.max_minutes <= 0 or args.min_time <= 0 or args.warmup < 1:
        raise SystemExit(f"--max-minutes and --min-time must be > 0 and --warmup >= 1, got {args.max_minutes}, "
                         f"{args.min_time}, {args.warmup}")
    if args.smoke_sample_size < 8 or args.smoke_sample_size % 8 or args.smoke_width_divisor not in (1, 2, 4, 8):
        raise SystemExit(f"--smoke-sample-size must be a multiple of 8 (>= 8) and --smoke-width-divisor 1, 2, 4 or 8; "
                         f"got {args.smoke_sample_size}, {args.smoke_width_divisor}")
    import torch

    if args.cpu_smoke:
        return smoke(args)
    if not torch.cuda.is_available() or not str(args.device).startswith("cuda"):
        print(f"no CUDA GPU present (device {args.device!r}, torch.cuda.is_available() = "
              f"{torch.cuda.is_available()}): nothing measured. Run this script on a GPU; --cpu-smoke checks that "
              "it runs.")
        return 0

    from diffusers.utils import logging as diffusers_logging

    from infodecomp.testing import sd21_unet

    diffusers_logging.set_verbosity_error()
    device = torch.device(args.device)
    deadline = time.monotonic() + 60 * args.max_minutes
    data = {**_meta(device), "smoke": False, "rows": [], "skipped": []}
    print(f"{data['device']}, torch {data['torch']}, diffusers {data['diffusers']}; {data['unit']}")
    print(f"{'dtype':<9} {'sdpa':>4} {'compile':>7} {'batch':>5} {'evals/s':>9} {'s/call':>8} {'first s':>8}", flush=True)
    base = sd21_unet(device=device)
    for name in dtypes:
        for sdpa in sdpas:
            for comp in compiles:
                cells = [(name, sdpa, comp, b) for b in batches]
                if time.monotonic() > deadline:
                    data["skipped"] += [dict(dtype=n, sdpa=s, compile=c, batch=b, why="--max-minutes")
                                        for n, s, c, b in cells]
                    continue
                base.to(dtype=getattr(torch, name))
                set_attention(base, sdpa)
                torch._dynamo.reset()
                unet = torch.compile(base) if comp else base  # attributes (.config) reach the module
                for i, b in enumerate(batches):
                    if time.monotonic() > deadline:
                        data["skipped"] += [dict(dtype=name, sdpa=sdpa, compile=comp, batch=bb, why="--max-minutes")
                                            for bb in batches[i:]]
                        break
                    try:
                        r = time_cell(unet, b, getattr(torch, name), device, min_time=args.min_time, warmup=args.warmup)
                    except torch.cuda.OutOfMemoryError:
                        torch.cuda.empty_cache()
                        data["skipped"] += [dict(dtype=name, sdpa=sdpa, compile=comp, batch=bb, why="out of memory")
                                            for bb in batches[i:]]
                        print(f"{name:<9} {sdpa!s:>4} {comp!s:>7} {b:>5} out of memory (larger batches skipped)")
                        break
                    except Exception as err:  # a configuration that does not run (e.g. compile) is recorded
                        data["skipped"].append(dict(dtype=name, sdpa=sdpa, compile=comp, batch=b,
                                                    why=f"{type(err).__name__}: {err}"[:300]))
                        print(f"{name:<9} {sdpa!s:>4} {comp!s:>7} {b:>5} failed: {type(err).__name__}: {err}"[:200])
                        break
                    row = dict(dtype=name, sdpa=sdpa, compile=comp, batch=b, **r)
                    if device.type == "cuda":
                        row["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                        torch.cuda.reset_peak_memory_stats(device)
                    data["rows"].append(row)
                    print(f"{name:<9} {sdpa!s:>4} {comp!s:>7} {b:>5} {r['evals_per_second']:>9.1f} "
                          f"{r['seconds_per_call']:>8.4f} {r['first_call_s']:>8.1f}", flush=True)
                    _write(args.out, data)  # after every cell: a run cut short keeps what it measured
    data["complete"] = not data["skipped"]
    _write(args.out, data)
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
