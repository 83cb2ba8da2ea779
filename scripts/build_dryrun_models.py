"""Build the two random-weight SD 2.1-shaped pipelines of ``make dry-run`` into a folder (safetensors).

    python scripts/build_dryrun_models.py                      # build/dry-run/models/{sd21-base-shaped,sd21-shaped}
    python scripts/build_dryrun_models.py --out /tmp/models    # elsewhere

``sd21-base-shaped``: SD 2.1-base's shapes (512 px, 64×64×4 latents, ε-prediction); ``sd21-shaped``: SD 2.1's
(768 px, 96×96×4 latents, v-prediction, attention upcast). Both: SD's UNet block structure (15 + 1 cross-attention
layers, 5/10/20 heads) with channels divided by 8, an 8× VAE, a 2-layer text encoder of width 1024 over the bundled
CLIP tokenizer ([77, 1024] conditioning) and SD 2.1's scheduler (:func:`infodecomp.testing.sd21_shaped_pipeline`).
Weights are random and seeded, so a rebuild gives the same files; an existing model folder is rebuilt only
with ``--force``. Each is checked by loading it back with ``load_model``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: folder name -> (prediction type, resolution in pixels)
MODELS = {"sd21-base-shaped": ("epsilon", 512), "sd21-shaped": ("v_prediction", 768)}


def build(out: Path, *, force: bool = False, seed: int = 0) -> list[Path]:
    from infodecomp.models import load_model
    from infodecomp.testing import save_sd21_shaped_pipeline

    done = []
    for name, (prediction_type, resolution) in MODELS.items():
        target = out / name
        if (target / "model_index.json").exists() and not force:
            print(f"{target}: exists (--force rebuilds it)")
        else:
            t0 = time.perf_counter()
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            save_sd21_shaped_pipeline(target, prediction_type=prediction_type, resolution=resolution, seed=seed)
            print(f"{target}: built in {time.perf_counter() - t0:.1f} s")
        model = load_model(target)
        if model.prediction_type != prediction_type or model.resolution != (resolution, resolution):
            raise SystemExit(f"{target} loads as {model.prediction_type} at {model.resolution} px, expected "
                             f"{prediction_type} at {resolution} px: delete it and rebuild (--force)")
        print(f"   {model.prediction_type}, {model.resolution[0]} px, latents {model.latent_shape}")
        done.append(target)
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "dry-run" / "models"), help="folder (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="rebuild models that exist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    build(Path(args.out), force=args.force, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
