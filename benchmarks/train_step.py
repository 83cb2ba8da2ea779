"""Seconds per training step of the shapes-tiny UNet + text encoder, against batch size and architecture.

    python benchmarks/train_step.py [--threads 2] [--steps 5] [--batches 32,64]

One step = VAE encode (frozen, no grad) + text encoder + UNet forward + backward + AdamW, on a ShapesWorld batch,
exactly as ``infodecomp.training.Trainer._unet_step`` does it. Prints a table (mean ± std over ``--steps``
steps after two warm-up steps) and each time relative to the embedded model's architecture at batch 64.
Run it on an otherwise idle machine: the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from infodecomp.data import shapes
from infodecomp.training import TrainConfig, build_components

# name → (block channels, down block types); up blocks mirror the down blocks.
ARCHITECTURES = {
    "shapes-tiny: (32,64,64), x-attn 8x8+4x4": ((32, 64, 64), ("DownBlock2D", "CrossAttnDownBlock2D",
                                                                "CrossAttnDownBlock2D")),
    "(32,64), x-attn 16x16+8x8": ((32, 64), ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D")),
    "(64,128,128), x-attn 8x8+4x4": ((64, 128, 128), ("DownBlock2D", "CrossAttnDownBlock2D",
                                                       "CrossAttnDownBlock2D")),
}
REFERENCE = ("shapes-tiny: (32,64,64), x-attn 8x8+4x4", 64)


def _unet(channels, down, cfg: TrainConfig):
    from diffusers import UNet2DConditionModel

    up = tuple(b.replace("Down", "Up") for b in reversed(down))
    return UNet2DConditionModel(
        sample_size=shapes.IMAGE_SIZE // 2, in_channels=4, out_channels=4, down_block_types=down,
        up_block_types=up, block_out_channels=channels, layers_per_block=1, cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8, norm_num_groups=16,
    )


def time_steps(channels, down, batch: int, steps: int, cfg: TrainConfig) -> tuple[np.ndarray, int]:
    """Seconds of each of ``steps`` timed training steps ([steps]) and the UNet's parameter count."""
    vae, _, text_encoder, tokenizer, scheduler = build_components(cfg)
    unet = _unet(channels, down, cfg)
    vae.eval().requires_grad_(False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 2):
        images, captions = shapes.training_batch(batch, rng)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = vae.encode(images * 2 - 1).latent_dist.sample(gen)
        ids = tokenizer(captions, padding="max_length", max_length=cfg.max_length, truncation=True,
                        return_tensors="pt").input_ids
        eps = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        loss = F.mse_loss(unet(scheduler.add_noise(x, eps, t), t, text_encoder(ids)[0]).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return np.array(times), sum(p.numel() for p in unet.parameters())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batches", default="32,64")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = replace(TrainConfig(), threads=a.threads)
    rows = []
    for name, (channels, down) in ARCHITECTURES.items():
        for batch in [int(b) for b in a.batches.split(",")]:
            times, n_params = time_steps(channels, down, batch, a.steps, cfg)
            rows.append((name, n_params, batch, times.mean(), times.std(ddof=1) if len(times) > 1 else 0.0))
    ref = next((r[3] for r in rows if (r[0], r[2]) == REFERENCE), rows[0][3])
    print(f"\ntorch threads {a.threads}, {a.steps} timed steps each (after 2 warm-up steps)\n")
    print(f"| architecture | UNet params | batch | s / step | ms / image | vs shapes-tiny @ 64 |")
    print("|---|---|---|---|---|---|")
    for name, n_params, batch, mean, std in rows:
        print(f"| {name} | {n_params / 1e6:.2f} M | {batch} | {mean:.3f} ± {std:.3f} | {1e3 * mean / batch:.1f} "
              f"| {mean / ref:.2f}× |")


if __name__ == "__main__":
    main()
