"""Denoiser throughput: UNet evaluations per second over a batch sweep, per dtype, and the wrapper's overhead.

For each (model, dtype, batch) it times

* ``bare``: ``unet(z, t, encoder_hidden_states=cond, return_dict=False)`` with precomputed integer timesteps;
* ``denoiser``: ``infodecomp``'s ``UNetDenoiser(z, logsnr, cond)`` (log-SNR → timestep, casts, checks,
  ε conversion);
* ``record``: the denoiser inside ``record_cross_attention`` (DAAM-style maps of every cross-attention layer),

and prints evaluations/s (batch rows per second) and the ratios denoiser/bare and record/denoiser.

Models: the tiny test pipeline (``infodecomp.testing.tiny_pipeline``, 8×8×4 latents) always; with CUDA also a
random-weight UNet of SD 2.1-base's architecture at 64×64×4 latents (``--sd21`` forces it on the CPU too,
at ``--sd21-sample-size``). dtypes: float32 and bfloat16, plus float16 on CUDA.

    OMP_NUM_THREADS=1 python benchmarks/unet_throughput.py                 # CPU, tiny pipeline
    python benchmarks/unet_throughput.py --device cuda                      # GPU: tiny + SD 2.1 architecture
"""

from __future__ import annotations

import argparse
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fns, device: torch.device, min_time: float, warmup: int = 2) -> list[float]:
    """Median seconds per call of each of ``fns``, calling them in turn (interleaved, so that background load
    hits all alike) until at least ``min_time`` seconds have passed."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    times = [[] for _ in fns]
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times[0]) < 5:
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t0)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def bench(name: str, unet, cond_dim: int, latent_hw: int, dtypes, batches, device, min_time: float) -> list[dict]:
    from infodecomp.models.attention import record_cross_attention
    from infodecomp.models import UNetDenoiser
    from infodecomp.testing import sd_scheduler

    ac = sd_scheduler().alphas_cumprod
    rows = []
    for dtype in dtypes:
        unet.to(device=device, dtype=dtype)
        den = UNetDenoiser(unet, ac, "epsilon")
        for B in batches:
            g = torch.Generator(device=device).manual_seed(0)
            z = torch.randn(B, 4, latent_hw, latent_hw, device=device, generator=g)
            cond = torch.randn(B, 77, cond_dim, device=device, generator=g)
            lam = torch.linspace(-5, 7, B, device=device)
            t = den.timesteps(lam)
            z_u, cond_u = z.to(dtype), cond.to(dtype)

            def bare():
                with torch.no_grad():
                    return unet(z_u, t, encoder_hidden_states=cond_u, return_dict=False)[0]

            def wrapped():
                return den(z, lam, cond)

            tb, td = _time([bare, wrapped], device, min_time)
            with record_cross_attention(unet):  # one recording context over all the timed calls
                (tr,) = _time([wrapped], device, min_time / 2)
            rows.append(dict(model=name, dtype=str(dtype).removeprefix("torch."), batch=B, bare=B / tb,
                             denoiser=B / td, record=B / tr, overhead=td / tb, record_ratio=tr / td))
            r = rows[-1]
            print(f"{r['model']:<14} {r['dtype']:<9} {B:>5} {r['bare']:>10.1f} {r['denoiser']:>10.1f} "
                  f"{r['record']:>10.1f} {r['overhead']:>9.3f} {r['record_ratio']:>9.3f}", flush=True)
    unet.to(dtype=torch.float32)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default: 1,4,16,64 tiny)")
    p.add_argument("--sd21-batches", default="1,4,16")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per cell")
    p.add_argument("--sd21", action="store_true", help="also run the SD 2.1-architecture UNet without CUDA")
    p.add_argument("--sd21-sample-size", type=int, default=64)
    args = p.parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # casting a UNet's dtype warns on every .to()
    device = torch.device(args.device)
    dtypes = [torch.float32, torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("evaluations/s = batch rows per second (median call); overhead = denoiser time / bare UNet time; "
          "record = denoiser time with attention recording / without")
    print(f"{'model':<14} {'dtype':<9} {'batch':>5} {'bare/s':>10} {'denoiser/s':>10} {'record/s':>10} "
          f"{'overhead':>9} {'record×':>9}")

    from infodecomp.testing import sd21_unet, tiny_unet

    batches = [int(b) for b in (args.batches or "1,4,16,64").split(",")]
    bench("tiny (8×8)", tiny_unet(), 32, 8, dtypes, batches, device, args.min_time)
    if device.type == "cuda" or args.sd21:
        unet = sd21_unet(sample_size=args.sd21_sample_size, device=device)
        hw = args.sd21_sample_size
        sd_batches = [int(b) for b in args.sd21_batches.split(",")]
        bench(f"sd21 ({hw}×{hw})", unet, 1024, hw, dtypes, sd_batches, device, args.min_time)


if __name__ == "__main__":
    main()
