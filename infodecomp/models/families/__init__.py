"""Model families beyond SD 1.x / 2.x: SDXL, SD3 / SD3.5 and FLUX.1, as :class:`~infodecomp.models.Model` s.

:func:`infodecomp.models.load_model` reads a pipeline's ``model_index.json`` (``_class_name``) and hands every
class of :data:`~infodecomp.models.loading.FAMILIES` to :func:`~infodecomp.models.loading.load_family`;
``StableDiffusionPipeline`` (SD 1.x, SD 2.x, shapes-tiny) loads as :class:`infodecomp.models.base.Model`. The
modules here import only :mod:`infodecomp.models.base` (and the mathematics below it), never the loader. Each
family keeps the one denoiser interface (docs/architecture.md#the-denoiser-interface) and packs everything its
network reads into the one ``cond`` tensor (:mod:`~infodecomp.models.families.packing`); the rectified-flow
families (SD3, Flux) share :class:`~.rectified.FlowModel` and the flow ↔ VP conversions of :mod:`.flow`:

======================  ==========================  ==================================================
family                  network / parameterisation  cond = Model.encode_prompts(prompts)
======================  ==========================  ==================================================
SD 1.x, SD 2.x          UNet, ε or v (DDPM)         ``[N, 77, D]`` CLIP states (models.base)
SDXL (:mod:`.sdxl`)     UNet, ε or v (DDPM)         ``[N, 77 + 1, 2048]`` states | pooled, time ids
SD3 (:mod:`.sd3`)       MMDiT, rectified flow       ``[N, 77 + T + 1, 4096]`` CLIP | T5 | pooled
Flux (:mod:`.flux`)     MMDiT, rectified flow       ``[N, T + 1, 4096]`` T5 | pooled
======================  ==========================  ==================================================

Family options (keyword arguments of ``load_model``, or fields of the Model classes): SDXL ``original_size``,
``crops_coords_top_left``, ``target_size``; SD3 ``max_sequence_length``, ``image_size``; Flux
``max_sequence_length``, ``image_size``, ``guidance``, ``allow_distilled``. A pipeline directory may hold an
``infodecomp.json`` with ``{"image_size": [H, W]}`` (and ``"cross_attention_tokens": "all"``).
"""

from .flux import FluxModel
from .rectified import FlowModel
from .sd3 import SD3Model
from .sdxl import SDXLModel

__all__ = ["SDXLModel", "SD3Model", "FluxModel", "FlowModel"]
