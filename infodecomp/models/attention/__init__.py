"""Attention maps: what a diffusion network's text attention looks at, recorded without changing its outputs.

- :mod:`.cross`: the cross-attention layers of UNets (SD 1.x / 2.x, SDXL), DAAM-style;
  :func:`record_cross_attention` is the entry point for every model, and hands SD3 / Flux models to
- :mod:`.joint`: the joint attention of MMDiT transformers (SD3, Flux): image queries × text keys;
- :mod:`.recorder`: the aggregation both share (:class:`CrossAttentionRecorder`, :func:`word_map`);
- :mod:`.layers`: the one layer selection both use.
"""

from .cross import (
    RecordingAttnProcessor,
    capture_cross_attention,
    cross_attention_layers,
    cross_attention_probs,
    record_cross_attention,
)
from .joint import (
    JointAttentionRecorder,
    JointAttnRecordingProcessor,
    is_joint_attention_model,
    joint_attention_layers,
    joint_attention_probs,
    record_joint_attention,
)
from .layers import select_layers
from .recorder import CrossAttentionRecorder, word_map

__all__ = [
    "cross_attention_probs", "RecordingAttnProcessor", "CrossAttentionRecorder", "cross_attention_layers",
    "record_cross_attention", "capture_cross_attention", "word_map", "is_joint_attention_model",
    "joint_attention_layers", "joint_attention_probs", "JointAttnRecordingProcessor", "JointAttentionRecorder",
    "record_joint_attention", "select_layers",
]
