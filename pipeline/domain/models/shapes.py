"""Diffusers config values read off the tensor shapes of a checkpoint in the original layout.

Only what the weights determine is read here: widths, depths, where attention sits, the
cross-attention width, the text encoders' sizes and the VAE's channels. What the weights cannot
tell (group-norm groups, attention heads, activations, the scheduler) comes from the base config;
see ``pipeline.domain.models.config_folder``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pipeline.domain.models import ldm
from pipeline.domain.models.architecture import Shapes, context_width
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

SD2_DROPPED_LAYER = 23
"""SD 2.x uses the penultimate layer of its 24-layer OpenCLIP; diffusers drops layer 23."""


def unet_dims(shapes: Shapes) -> dict[str, Any]:
    """UNet config values: channels, layers per block, block types, attention depth and widths."""
    u = ldm.UNET
    conv_in = _shape(shapes, f"{u}input_blocks.0.0.weight")
    inputs = indices(shapes, f"{u}input_blocks.")
    downsamplers = [i for i in inputs if f"{u}input_blocks.{i}.0.op.weight" in shapes]
    per_block = downsamplers[0] - 1 if downsamplers else len(inputs) - 1
    stride = per_block + 1
    if per_block < 1 or len(inputs) % stride:
        raise ModelLoadError(
            f"unexpected UNet layout: {len(inputs)} input blocks, downsamplers at {downsamplers}"
        )
    blocks = len(inputs) // stride
    channels: list[int] = []
    down_types: list[str] = []
    depths: list[int] = []
    for block in range(blocks):
        first = 1 + block * stride
        channels.append(_shape(shapes, f"{u}input_blocks.{first}.0.out_layers.3.weight")[0])
        depth = len(indices(shapes, f"{u}input_blocks.{first}.1.transformer_blocks."))
        down_types.append("CrossAttnDownBlock2D" if depth else "DownBlock2D")
        depths.append(depth or 1)
    up_types = [
        "CrossAttnUpBlock2D"
        if indices(shapes, f"{u}output_blocks.{block * stride}.1.transformer_blocks.")
        else "UpBlock2D"
        for block in range(blocks)
    ]
    dims: dict[str, Any] = {
        "in_channels": conv_in[1],
        "out_channels": _shape(shapes, f"{u}out.2.weight")[0],
        "block_out_channels": channels,
        "layers_per_block": per_block,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "transformer_layers_per_block": depths if any(depth != 1 for depth in depths) else 1,
    }
    width = context_width(shapes)
    if width is not None:
        dims["cross_attention_dim"] = width
    proj_in = next(
        (shape for key, shape in shapes.items() if key.startswith(u) and key.endswith(".proj_in.weight")),
        None,
    )
    if proj_in is not None:
        dims["use_linear_projection"] = len(proj_in) == 2
    label = shapes.get(f"{u}label_emb.0.0.weight")
    if label is not None:
        dims["addition_embed_type"] = "text_time"
        dims["projection_class_embeddings_input_dim"] = label[1]
    return dims


def vae_dims(shapes: Shapes) -> dict[str, Any]:
    """VAE config values: channels per level, layers per block and latent channels."""
    v = ldm.VAE
    levels = indices(shapes, f"{v}encoder.down.")
    if not levels:
        raise ModelLoadError(
            f"the checkpoint has no VAE ({v}encoder.*): a VAE-less checkpoint cannot be loaded"
        )
    dims: dict[str, Any] = {
        "in_channels": _shape(shapes, f"{v}encoder.conv_in.weight")[1],
        "out_channels": _shape(shapes, f"{v}decoder.conv_out.weight")[0],
        "latent_channels": _shape(shapes, f"{v}decoder.conv_in.weight")[1],
        "block_out_channels": [
            _shape(shapes, f"{v}encoder.down.{i}.block.0.conv1.weight")[0] for i in levels
        ],
        "layers_per_block": len(indices(shapes, f"{v}encoder.down.0.block.")),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
    }
    if not any(key.startswith(f"{v}encoder.mid.attn_1.") for key in shapes):
        dims["mid_block_add_attention"] = False
    return dims


def clip_dims(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """``CLIPTextConfig`` values of an OpenAI CLIP text encoder stored under ``prefix``."""
    t = f"{prefix}text_model."
    vocab, hidden = _shape(shapes, f"{t}embeddings.token_embedding.weight")
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": _shape(shapes, f"{t}embeddings.position_embedding.weight")[0],
        "num_hidden_layers": len(indices(shapes, f"{t}encoder.layers.")),
        "intermediate_size": _shape(shapes, f"{t}encoder.layers.0.mlp.fc1.weight")[0],
    }


def open_clip_dims(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """``CLIPTextConfig`` values of an OpenCLIP text encoder stored under ``prefix``."""
    vocab, hidden = _shape(shapes, f"{prefix}token_embedding.weight")
    layers = indices(shapes, f"{prefix}transformer.resblocks.")
    dims: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "max_position_embeddings": _shape(shapes, f"{prefix}positional_embedding")[0],
        "num_hidden_layers": len(layers),
        "intermediate_size": _shape(shapes, f"{prefix}transformer.resblocks.0.mlp.c_fc.weight")[0],
    }
    if prefix == ldm.SD2_OPEN_CLIP and SD2_DROPPED_LAYER in layers:
        dims["num_hidden_layers"] = SD2_DROPPED_LAYER
    projection = shapes.get(f"{prefix}text_projection")
    if projection is not None and prefix != ldm.SD2_OPEN_CLIP:
        dims["projection_dim"] = projection[1]
    return dims


def indices(shapes: Shapes, prefix: str) -> list[int]:
    """The sorted distinct numbers N of keys ``<prefix>N.…``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m[1]) for key in shapes if (m := pattern.match(key))})


def _shape(shapes: Shapes, key: str) -> tuple[int, ...]:
    shape = shapes.get(key)
    if shape is None:
        raise ModelLoadError(f"the checkpoint lacks {key}: it is incomplete or not in the expected layout")
    return tuple(int(size) for size in shape)
