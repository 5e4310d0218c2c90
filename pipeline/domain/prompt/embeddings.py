"""Weighted, chunked text embeddings for diffusers Stable Diffusion pipelines (SD 1.x/2.x, SDXL).

:func:`encode_prompt_batch` replaces diffusers' ``encode_prompt`` so that A1111 emphasis,
``BREAK`` and prompts longer than 75 tokens work, and hands the result to the pipeline as
``prompt_embeds=...`` keyword arguments. How it encodes:

- Each prompt is cut into chunks (:mod:`pipeline.domain.prompt.chunks`); every chunk is encoded on its
  own (start token, up to 75 tokens, end token, padding) and the outputs are joined along the
  token axis. All rows of a batch, positives and negatives alike, are padded with empty chunks
  (the encoding of ``""``) to the same number of chunks. Padding changes what the UNet attends
  to, so a request's images depend on its chunk count: group requests by :func:`chunk_count`
  when batching different prompts, if bit-for-bit reproducibility alone matters.
- A token's weight multiplies its output vector; then each chunk of each row is rescaled so its
  mean equals the mean of the unweighted output (AUTOMATIC1111 rescales once per chunk over the
  whole batch; per row keeps a request's embedding independent of what it is batched with).
  Weights apply to each text encoder's output before SDXL joins them, and to the hidden state
  the pipeline uses (after clip skip and its layer norm).
- Clip skip uses AUTOMATIC1111's numbering (``1`` = the last layer). SD 1.x/2.x: ``N`` takes
  the hidden state ``N`` layers from the end and applies the final layer norm (diffusers'
  ``clip_skip=N-1``). SDXL already reads the penultimate layer without the final norm, so
  ``1`` and ``2`` both give diffusers' default and ``N > 2`` reads ``N`` layers from the end
  (diffusers' ``clip_skip=N-2``). Skips past the first layer stop at the first layer.
  Unlike diffusers' SD 1.x ``encode_prompt``, clip skip applies to negatives too, as in A1111.
- SDXL: both encoders' hidden states concatenate along the feature axis; the pooled embedding
  comes from the second encoder's projection of the first chunk (as A1111 does). An empty
  negative prompt gives zero negative embeddings when the pipeline's
  ``force_zeros_for_empty_prompt`` is set, as diffusers does when no negative is given.

For a prompt without emphasis or ``BREAK`` of at most 75 tokens, with clip skip 1, the result
equals diffusers' own ``encode_prompt`` (the plain path does not change ordinary images).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.utils.torch_utils import get_module_execution_device

from pipeline.domain.prompt.chunks import Chunk, chunk_prompt
from pipeline.domain.prompt.networks import strip_tags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptEmbeddings:
    """Text embeddings for a batch, one row per prompt, in the shapes diffusers takes."""

    prompt_embeds: torch.Tensor
    """``(batch, chunks * 77, dim)``."""
    negative_prompt_embeds: torch.Tensor
    """The same shape as ``prompt_embeds``."""
    pooled_prompt_embeds: torch.Tensor | None = None
    """SDXL only: ``(batch, projection_dim)``."""
    negative_pooled_prompt_embeds: torch.Tensor | None = None

    def as_pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments of a diffusers pipeline call (only those that are set)."""
        kwargs = {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
            "pooled_prompt_embeds": self.pooled_prompt_embeds,
            "negative_pooled_prompt_embeds": self.negative_pooled_prompt_embeds,
        }
        return {name: value for name, value in kwargs.items() if value is not None}

    def repeat_each(self, counts: Sequence[int]) -> PromptEmbeddings:
        """Repeat row ``i`` ``counts[i]`` times (one row per image when a request makes several)."""
        if len(counts) != self.prompt_embeds.shape[0]:
            raise ValueError(f"{len(counts)} counts for {self.prompt_embeds.shape[0]} rows")
        repeats = torch.tensor(list(counts), device=self.prompt_embeds.device)
        total = int(sum(counts))

        def repeat(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.repeat_interleave(repeats.to(tensor.device), dim=0, output_size=total)

        pooled, negative_pooled = self.pooled_prompt_embeds, self.negative_pooled_prompt_embeds
        return PromptEmbeddings(
            prompt_embeds=repeat(self.prompt_embeds),
            negative_prompt_embeds=repeat(self.negative_prompt_embeds),
            pooled_prompt_embeds=None if pooled is None else repeat(pooled),
            negative_pooled_prompt_embeds=None if negative_pooled is None else repeat(negative_pooled),
        )


@dataclass(frozen=True)
class _TextEncoder:
    """One tokenizer and its text encoder, and how the pipeline reads its output."""

    tokenizer: Any
    model: Any
    sdxl: bool
    convert: Callable[[str], str] | None = None
    """Textual inversion's prompt rewrite, when the tokenizer has added (embedding) tokens."""

    def chunks(self, text: str) -> list[Chunk]:
        """The chunks of ``text`` with its LoRA tags taken out (they are not words)."""
        return chunk_prompt(self.tokenizer, strip_tags(text), convert=self.convert)


def _inversion_rewrite(pipe: Any, tokenizer: Any) -> Callable[[str], str] | None:
    """Textual inversion's prompt rewrite for ``tokenizer``, if embeddings added tokens to it.

    An embedding of ``n`` vectors is the tokens ``name``, ``name_1`` ... ``name_{n-1}``; the
    tokenizer finds ``name`` in the text without regard to case (CLIP lowercases what it reads),
    so the rewrite does the same and writes all ``n`` tokens in its place (diffusers'
    ``maybe_convert_prompt`` matches case-sensitively and would leave ``EasyNegative`` one vector).
    """
    added = set(getattr(tokenizer, "added_tokens_encoder", {})) - set(tokenizer.all_special_tokens)
    if not added:
        return None
    vectors: dict[str, int] = {}
    for token in added:
        base, _, number = token.rpartition("_")
        if number.isdigit() and base in added:
            vectors[base] = max(vectors.get(base, 1), int(number) + 1)
    if not vectors:
        return None
    pattern = re.compile(
        "|".join(re.escape(name) for name in sorted(vectors, key=len, reverse=True)), re.IGNORECASE
    )

    def rewrite(text: str) -> str:
        def expand(match: re.Match[str]) -> str:
            name = match[0].casefold()
            if name not in vectors:
                return match[0]
            return " ".join([name, *(f"{name}_{i}" for i in range(1, vectors[name]))])

        return pattern.sub(expand, text)

    return rewrite


def _text_encoders(pipe: Any) -> list[_TextEncoder]:
    """The pipeline's (tokenizer, text encoder) pairs: one for SD 1.x/2.x, two for SDXL."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    encoders = []
    for tokenizer_name, model_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tokenizer, model = getattr(pipe, tokenizer_name, None), getattr(pipe, model_name, None)
        if tokenizer is not None and model is not None:
            encoders.append(_TextEncoder(tokenizer, model, sdxl, _inversion_rewrite(pipe, tokenizer)))
    if not encoders:
        raise ValueError(f"{type(pipe).__name__} has no tokenizer and text encoder")
    return encoders


def chunk_count(pipe: Any, prompt: str, negative_prompt: str = "") -> int:
    """How many 75-token chunks ``encode_prompt_batch`` gives this pair when encoded alone."""
    return max(
        len(encoder.chunks(text)) for encoder in _text_encoders(pipe) for text in (prompt, negative_prompt)
    )


def _hidden_layer(sdxl: bool, clip_skip: int) -> int:
    """The negative index into ``hidden_states`` for A1111 clip skip ``clip_skip``."""
    return -max(clip_skip, 2) if sdxl else -clip_skip


MEAN_FLOOR = 1e-3
"""A chunk whose mean is below this fraction of its mean magnitude is not rescaled."""


def _apply_weights(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scale each token by its weight, then restore each (row, chunk)'s mean. ``hidden``: (n, 77, dim).

    The mean of real CLIP outputs is far from zero (the final layer norm has a learned bias).
    When a mean is close to zero next to the values' magnitude (as in a layer norm without
    bias), the ratio of means is noise, so such a chunk keeps its plain weighting instead.
    """
    if bool((weights == 1.0).all()):
        return hidden
    original = hidden.float()
    weighted = original * weights.unsqueeze(-1)
    before = original.mean(dim=(1, 2), keepdim=True)
    after = weighted.mean(dim=(1, 2), keepdim=True)
    floor = MEAN_FLOOR * weighted.abs().mean(dim=(1, 2), keepdim=True)
    meaningful = (before.abs() > floor) & (after.abs() > floor)
    scale = torch.where(meaningful, before / torch.where(meaningful, after, 1.0), 1.0)
    return (weighted * scale).to(hidden.dtype)


def _encode(
    encoder: _TextEncoder, rows: list[list[Chunk]], clip_skip: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode ``rows`` (each the same number of chunks) into ``(rows, chunks*77, dim)`` and pooled."""
    model, tokenizer = encoder.model, encoder.tokenizer
    device = get_module_execution_device(model)
    padded = [chunk.padded(tokenizer) for row in rows for chunk in row]
    ids = torch.tensor([ids for ids, _, _ in padded], dtype=torch.long, device=device)
    weights = torch.tensor([w for _, w, _ in padded], dtype=torch.float32, device=device)
    attention_mask = None
    if getattr(model.config, "use_attention_mask", False):
        used = torch.tensor([used for _, _, used in padded], device=device)
        attention_mask = (torch.arange(ids.shape[1], device=device) < used.unsqueeze(1)).long()

    layer = _hidden_layer(encoder.sdxl, clip_skip)
    needs_hidden = encoder.sdxl or layer != -1
    output = model(ids, attention_mask=attention_mask, output_hidden_states=needs_hidden)
    if needs_hidden:
        states = output.hidden_states
        if -layer >= len(states):
            log.warning("clip skip %d is deeper than the text encoder: using its first layer", clip_skip)
            layer = -(len(states) - 1)
        hidden = states[layer]
        if not encoder.sdxl:
            # transformers 5 keeps the layer norm on the model itself, 4.x on ``text_model``
            hidden = getattr(model, "text_model", model).final_layer_norm(hidden)
    else:
        hidden = output[0]
    hidden = _apply_weights(hidden, weights)

    count, chunks = len(rows), len(rows[0])
    hidden = hidden.reshape(count, chunks * hidden.shape[1], hidden.shape[2])
    pooled = None
    if encoder.sdxl and output[0].ndim == 2:
        pooled = output[0].reshape(count, chunks, -1)[:, 0]
    return hidden, pooled


@torch.no_grad()
def encode_prompt_batch(
    pipe: Any, pairs: Sequence[tuple[str, str]], *, clip_skip: int = 1
) -> PromptEmbeddings:
    """Encode ``[(prompt, negative_prompt), ...]`` for ``pipe``: one row per pair.

    ``pipe`` is a diffusers StableDiffusion(Img2Img)Pipeline or StableDiffusionXL(Img2Img)Pipeline
    (anything with ``tokenizer``/``text_encoder`` and optionally ``tokenizer_2``/``text_encoder_2``).
    Prompts may use A1111 emphasis and ``BREAK`` and be of any length; every row is padded to the
    same number of chunks. ``clip_skip`` is A1111's (1 = last layer); see the module docstring.
    Tensors are on the text encoder's device, in its dtype.
    """
    if not pairs:
        raise ValueError("no prompts to encode")
    if clip_skip < 1:
        raise ValueError(f"clip_skip is {clip_skip}: A1111 numbering starts at 1 (the last layer)")
    encoders = _text_encoders(pipe)
    texts = [prompt for prompt, _ in pairs] + [negative for _, negative in pairs]
    per_encoder = [[encoder.chunks(text) for text in texts] for encoder in encoders]
    width = max(len(chunks) for rows in per_encoder for chunks in rows)
    hidden_parts: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for encoder, rows in zip(encoders, per_encoder, strict=True):
        rows = [chunks + [Chunk()] * (width - len(chunks)) for chunks in rows]
        hidden, pooled_part = _encode(encoder, rows, clip_skip)
        hidden_parts.append(hidden)
        pooled = pooled_part if pooled_part is not None else pooled
    hidden = torch.cat(hidden_parts, dim=-1).to(dtype=encoders[-1].model.dtype)
    if pooled is not None:
        pooled = pooled.to(dtype=encoders[-1].model.dtype)

    batch = len(pairs)
    if encoders[0].sdxl and getattr(getattr(pipe, "config", None), "force_zeros_for_empty_prompt", False):
        empty = torch.tensor([not negative.strip() for _, negative in pairs], device=hidden.device)
        hidden[batch:][empty] = 0
        if pooled is not None:
            pooled[batch:][empty] = 0
    log.debug("encoded %d prompt pair(s) into %d chunk(s) of %s", batch, width, tuple(hidden.shape[1:]))
    return PromptEmbeddings(
        prompt_embeds=hidden[:batch],
        negative_prompt_embeds=hidden[batch:],
        pooled_prompt_embeds=None if pooled is None else pooled[:batch],
        negative_pooled_prompt_embeds=None if pooled is None else pooled[batch:],
    )
