"""The original (CompVis LDM / A1111 / SGM) key layout, and diffusers → original key mapping.

It is the reverse of what diffusers' ``from_single_file`` does when it loads such a file:

- UNet (``model.diffusion_model.``): ``down_blocks.B.resnets.J`` is ``input_blocks.N.0`` and
  ``down_blocks.B.attentions.J`` is ``input_blocks.N.1`` with ``N = 1 + B·(L+1) + J`` for ``L``
  layers per block; a downsampler is ``input_blocks.(B+1)·(L+1).0.op``. The middle block is
  ``middle_block.0`` (resnet), ``.1`` (attention), ``.2`` (resnet). Up blocks are
  ``output_blocks.B·(L+1)+J``; an upsampler sits after the block's last layer at ``.1.conv``, or
  ``.2.conv`` when that layer has attention. Resnet parts are renamed (``norm1`` → ``in_layers.0``,
  ``conv1`` → ``in_layers.2``, ``norm2`` → ``out_layers.0``, ``conv2`` → ``out_layers.3``,
  ``time_emb_proj`` → ``emb_layers.1``, ``conv_shortcut`` → ``skip_connection``); attention blocks
  keep their inner names. SDXL's ``add_embedding`` is ``label_emb.0``.
- VAE (``first_stage_model.``): ``down_blocks.I.resnets.J`` → ``down.I.block.J``, decoder up
  blocks are numbered in reverse (``up_blocks.I`` → ``up.(n-1-I)``), middle resnets are
  ``mid.block_1``/``mid.block_2``, the middle attention is ``mid.attn_1`` with ``q``/``k``/``v``/
  ``proj_out``/``norm`` stored as 1×1 convolutions, ``conv_shortcut`` is ``nin_shortcut`` and
  ``conv_norm_out`` is ``norm_out``.
- OpenAI CLIP text encoders keep Hugging Face's names under ``cond_stage_model.transformer.``
  (SD 1.x) or ``conditioner.embedders.0.transformer.`` (SDXL).
- OpenCLIP text encoders (``cond_stage_model.model.`` for SD 2.x, ``conditioner.embedders.1.model.``
  for SDXL) use OpenCLIP's names: ``resblocks.N`` with a fused ``attn.in_proj_weight`` (q, k, v
  stacked), ``ln_1``/``ln_2``, ``mlp.c_fc``/``mlp.c_proj``, ``positional_embedding``, ``ln_final``
  and ``text_projection`` stored transposed (``x @ P``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD1_CLIP = "cond_stage_model.transformer."
SD2_OPEN_CLIP = "cond_stage_model.model."
SDXL_CLIP = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP = "conditioner.embedders.1.model."
V_PREDICTION_MARKER = "v_pred"
"""An empty tensor that marks a v-prediction checkpoint (the convention of ComfyUI and others)."""

StateDict = Mapping[str, "torch.Tensor"]

_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_FIXED = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


class UnmappedKey(ValueError):
    """A diffusers weight that has no place in the original layout (an unsupported component)."""


def unet_to_ldm(state: StateDict, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict in the original layout (with its prefix)."""
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        raise UnmappedKey(f"layers_per_block: {per_block!r} (the original layout needs one number)")
    stride = per_block + 1
    up_attention = {
        index for index, kind in enumerate(config["up_block_types"]) if kind.startswith("CrossAttn")
    }

    def rename(key: str) -> str:
        for old, new in _UNET_FIXED.items():
            if key.startswith(old):
                return new + key[len(old) :]
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, part, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + block * stride + layer
            return (
                f"input_blocks.{index}.0.{_resnet(rest)}"
                if part == "resnets"
                else f"input_blocks.{index}.1.{rest}"
            )
        if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            return f"input_blocks.{(int(m[1]) + 1) * stride}.0.op.{m[2]}"
        if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
        if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            return f"middle_block.1.{m[1]}"
        if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, part, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = block * stride + layer
            return (
                f"output_blocks.{index}.0.{_resnet(rest)}"
                if part == "resnets"
                else f"output_blocks.{index}.1.{rest}"
            )
        if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            block = int(m[1])
            slot = 2 if block in up_attention else 1
            return f"output_blocks.{block * stride + per_block}.{slot}.conv.{m[2]}"
        raise UnmappedKey(f"unet: {key}")

    return {UNET + rename(key): value for key, value in state.items()}


def vae_to_ldm(state: StateDict, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict in the original layout (with its prefix)."""
    blocks = len(config["up_block_types"])
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key, reshape = _vae_key(key, blocks)
        converted[VAE + new_key] = value[:, :, None, None] if reshape and value.ndim == 2 else value
    return converted


def clip_to_ldm(state: StateDict, prefix: str) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP text encoder (``CLIPTextModel``) under ``prefix``, with Hugging Face names."""
    return {f"{prefix}text_model.{_text_model_key(key)}": value for key, value in state.items()}


def open_clip_to_ldm(state: StateDict, prefix: str) -> dict[str, torch.Tensor]:
    """An OpenCLIP text encoder (``CLIPTextModel[WithProjection]``) under ``prefix``, in OpenCLIP's names."""
    converted: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "text_projection.weight":
            converted[prefix + "text_projection"] = value.T
            continue
        inner = _text_model_key(key)
        if inner in _OPEN_CLIP_FIXED:
            converted[prefix + _OPEN_CLIP_FIXED[inner]] = value
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", inner)
        if m is None:
            raise UnmappedKey(f"text encoder: {key}")
        layer, part, kind = m[1], m[2], m[3]
        base = f"{prefix}transformer.resblocks.{layer}."
        if q_k_v := re.fullmatch(r"self_attn\.([qkv])_proj", part):
            fused.setdefault(f"{base}attn.in_proj_{kind}", {})[q_k_v[1]] = value
        elif part in _OPEN_CLIP_LAYER:
            converted[f"{base}{_OPEN_CLIP_LAYER[part]}.{kind}"] = value
        else:
            raise UnmappedKey(f"text encoder: {key}")
    import torch

    for key, parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise UnmappedKey(f"text encoder: {key} lacks one of q, k, v")
        converted[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return converted


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_UNET_RESNET.get(head, head)}.{tail}"


def _text_model_key(key: str) -> str:
    """The key inside the text model: transformers ≥ 5.6 dropped ``CLIPTextModel``'s ``text_model.``."""
    return key.removeprefix("text_model.")


_VaeRule = tuple[str, Callable[["re.Match[str]", int], str], bool]
_VAE_RULES: tuple[_VaeRule, ...] = (
    (
        r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
        lambda m, n: f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}",
        False,
    ),
    (
        r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)",
        lambda m, n: f"encoder.down.{m[1]}.downsample.conv.{m[2]}",
        False,
    ),
    (
        r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)",
        lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}",
        False,
    ),
    (
        r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)",
        lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}",
        False,
    ),
    (
        r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)",
        lambda m, n: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}",
        False,
    ),
    (
        r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)",
        lambda m, n: f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}",
        True,
    ),
    (r"(encoder|decoder)\.conv_norm_out\.(.+)", lambda m, n: f"{m[1]}.norm_out.{m[2]}", False),
    (r"((?:encoder|decoder)\.conv_(?:in|out)|quant_conv|post_quant_conv)\.(.+)", lambda m, n: m[0], False),
)


def _vae_key(key: str, blocks: int) -> tuple[str, bool]:
    """The original name of a VAE weight, and whether it is a linear weight stored as a 1×1 conv."""
    for pattern, build, reshape in _VAE_RULES:
        if m := re.fullmatch(pattern, key):
            return build(m, blocks), reshape
    raise UnmappedKey(f"vae: {key}")


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")
