"""Weighted, chunked prompt embeddings (pipeline.domain.prompt.embeddings) on tiny SD 1.x and SDXL models.

The tiny tokenizer is byte-level (one token per character), so "x" * 200 is 200 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.domain.prompt.embeddings import PromptEmbeddings, chunk_count, encode_prompt_batch

pytest_plugins = ["tests.fixtures_models"]

ATOL = 1e-5


@pytest.fixture(scope="module")
def sd1(tiny_model_dir: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def biased_sd1(tiny_model_dir: Path) -> Any:
    """The tiny model with a bias on its final layer norm, so its outputs' mean is not zero.

    Random-init layer norms have no bias, which makes every output's mean zero; real CLIP
    models have one, and mean-preserving weighting is only defined when the mean is not zero.
    """
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        pipe.text_encoder.final_layer_norm.bias.copy_(torch.linspace(-0.2, 0.6, 32))
    return pipe


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl_dir: Path) -> Any:
    """The tiny random SDXL pipeline; its second tokenizer pads with "!" as SDXL's does."""
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)


def encode(pipe: Any, prompt: str, negative: str = "", **options: Any) -> PromptEmbeddings:
    return encode_prompt_batch(pipe, [(prompt, negative)], **options)


def run_on(pipe: Any, embeddings: PromptEmbeddings) -> torch.Tensor:
    """The latents of one seeded 64x64 denoising step of ``pipe`` on precomputed ``embeddings``."""
    return pipe(
        **embeddings.as_pipeline_kwargs(),
        height=64,
        width=64,
        num_inference_steps=1,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).images


def chunk_of(tensor: torch.Tensor, index: int) -> torch.Tensor:
    return tensor[:, index * 77 : (index + 1) * 77]


# -- SD 1.x ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "chunks"), [("a red fox", 1), ("x" * 75, 1), ("x" * 76, 2), ("x" * 151, 3)]
)
def test_shapes_follow_the_chunk_count(sd1: Any, prompt: str, chunks: int) -> None:
    embeddings = encode(sd1, prompt)
    assert embeddings.prompt_embeds.shape == (1, chunks * 77, 32)
    assert embeddings.negative_prompt_embeds.shape == embeddings.prompt_embeds.shape
    assert embeddings.pooled_prompt_embeds is None
    assert chunk_count(sd1, prompt) == chunks


def test_a_plain_prompt_equals_diffusers_encode_prompt(sd1: Any) -> None:
    embeddings = encode_prompt_batch(sd1, [("a red fox in the snow", "blurry"), ("", "")])
    with torch.no_grad():
        expected, expected_negative = sd1.encode_prompt(
            ["a red fox in the snow", ""], "cpu", 1, True, ["blurry", ""]
        )
    torch.testing.assert_close(embeddings.prompt_embeds, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(embeddings.negative_prompt_embeds, expected_negative, atol=ATOL, rtol=0)


def test_a_200_token_prompt_is_not_truncated(sd1: Any) -> None:
    base = encode(sd1, "x" * 200).prompt_embeds
    changed = encode(sd1, "x" * 199 + "y").prompt_embeds
    assert base.shape[1] == 3 * 77
    torch.testing.assert_close(chunk_of(base, 0), chunk_of(changed, 0))
    assert not torch.allclose(chunk_of(base, 2), chunk_of(changed, 2))


def fox_factors() -> torch.Tensor:
    factors = torch.ones(77)
    factors[2:5] = 1.5  # start token, "a", then the three tokens of "fox"
    return factors[:, None]


def test_weights_scale_tokens_and_keep_the_mean(biased_sd1: Any) -> None:
    plain = encode(biased_sd1, "a fox b").prompt_embeds[0]
    weighted = encode(biased_sd1, "a (fox:1.5) b").prompt_embeds[0]
    scaled = plain * fox_factors()
    expected = scaled * (plain.mean() / scaled.mean())
    torch.testing.assert_close(weighted, expected, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(weighted.mean(), plain.mean(), atol=ATOL, rtol=1e-5)
    assert not torch.allclose(weighted, plain)


def test_weights_without_a_meaningful_mean_only_scale(sd1: Any) -> None:
    plain = encode(sd1, "a fox b").prompt_embeds[0]
    weighted = encode(sd1, "a (fox:1.5) b").prompt_embeds[0]
    torch.testing.assert_close(weighted, plain * fox_factors(), atol=ATOL, rtol=1e-5)


def test_weights_rescale_each_chunk_on_its_own(biased_sd1: Any) -> None:
    weighted = encode(biased_sd1, "x" * 75 + " (y:1.4)").prompt_embeds
    plain = encode(biased_sd1, "x" * 75 + " y").prompt_embeds
    torch.testing.assert_close(chunk_of(weighted, 0), chunk_of(plain, 0))
    assert not torch.allclose(chunk_of(weighted, 1), chunk_of(plain, 1))
    torch.testing.assert_close(chunk_of(weighted, 1).mean(), chunk_of(plain, 1).mean(), atol=ATOL, rtol=1e-5)


def test_positive_and_negative_are_padded_with_empty_chunks(sd1: Any) -> None:
    embeddings = encode_prompt_batch(sd1, [("short", "x" * 160), ("x" * 80, "")])
    empty = encode(sd1, "").prompt_embeds
    assert embeddings.prompt_embeds.shape == embeddings.negative_prompt_embeds.shape == (2, 3 * 77, 32)
    torch.testing.assert_close(chunk_of(embeddings.prompt_embeds[:1], 0), encode(sd1, "short").prompt_embeds)
    for index in (1, 2):
        torch.testing.assert_close(chunk_of(embeddings.prompt_embeds[:1], index), empty)
    torch.testing.assert_close(chunk_of(embeddings.prompt_embeds[1:], 2), empty)
    torch.testing.assert_close(chunk_of(embeddings.negative_prompt_embeds[1:], 1), empty)


def test_break_starts_a_new_chunk(sd1: Any) -> None:
    embeddings = encode(sd1, "a red fox BREAK snow").prompt_embeds
    assert embeddings.shape[1] == 2 * 77
    torch.testing.assert_close(chunk_of(embeddings, 0), encode(sd1, "a red fox").prompt_embeds)
    torch.testing.assert_close(chunk_of(embeddings, 1), encode(sd1, "snow").prompt_embeds)


def test_clip_skip_reads_an_earlier_layer_with_the_final_norm(sd1: Any) -> None:
    last = encode(sd1, "a red fox", "blurry").prompt_embeds
    skipped = encode(sd1, "a red fox", "blurry", clip_skip=2)
    assert not torch.allclose(last, skipped.prompt_embeds)
    encoder = sd1.text_encoder
    for text, result in (("a red fox", skipped.prompt_embeds), ("blurry", skipped.negative_prompt_embeds)):
        ids = sd1.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            states = encoder(ids, output_hidden_states=True).hidden_states
            expected = encoder.final_layer_norm(states[-2])
        torch.testing.assert_close(result, expected, atol=ATOL, rtol=0)
    deepest = encode(sd1, "a red fox", clip_skip=12).prompt_embeds  # deeper than the tiny model
    assert deepest.shape == last.shape
    with pytest.raises(ValueError, match="clip_skip"):
        encode(sd1, "a red fox", clip_skip=0)


def test_repeat_each_and_pipeline_kwargs(sd1: Any) -> None:
    embeddings = encode_prompt_batch(sd1, [("a", "b"), ("c", "d")])
    repeated = embeddings.repeat_each([2, 1])
    assert repeated.prompt_embeds.shape[0] == repeated.negative_prompt_embeds.shape[0] == 3
    torch.testing.assert_close(repeated.prompt_embeds[1], embeddings.prompt_embeds[0])
    torch.testing.assert_close(repeated.negative_prompt_embeds[2], embeddings.negative_prompt_embeds[1])
    assert set(embeddings.as_pipeline_kwargs()) == {"prompt_embeds", "negative_prompt_embeds"}
    with pytest.raises(ValueError):
        embeddings.repeat_each([1])


def test_dtype_follows_the_text_encoder(tiny_model_dir: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir)
    pipe.text_encoder.to(torch.bfloat16)
    embeddings = encode(pipe, "a (fox:1.3)", "blurry")
    assert embeddings.prompt_embeds.dtype == embeddings.negative_prompt_embeds.dtype == torch.bfloat16


def test_a_pipeline_runs_on_multi_chunk_embeddings(sd1: Any) -> None:
    embeddings = encode_prompt_batch(sd1, [("(a fox:1.2) " + "x" * 100, "blurry")])
    latents = run_on(sd1, embeddings)
    assert latents.shape == (1, 4, 8, 8)
    assert torch.isfinite(latents).all()


# -- SDXL -----------------------------------------------------------------------------------------


def test_sdxl_shapes_and_pooled_outputs(sdxl: Any) -> None:
    embeddings = encode_prompt_batch(sdxl, [("a red fox", "blurry"), ("x" * 100, "bad")])
    assert embeddings.prompt_embeds.shape == (2, 2 * 77, 64)
    assert embeddings.negative_prompt_embeds.shape == (2, 2 * 77, 64)
    assert embeddings.pooled_prompt_embeds is not None
    assert embeddings.pooled_prompt_embeds.shape == (2, 32)
    assert embeddings.negative_pooled_prompt_embeds is not None
    assert embeddings.negative_pooled_prompt_embeds.shape == (2, 32)
    assert set(embeddings.as_pipeline_kwargs()) == {
        "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds",
    }  # fmt: skip
    assert len(embeddings.repeat_each([1, 3]).pooled_prompt_embeds) == 4  # type: ignore[arg-type]


def test_sdxl_plain_prompt_equals_diffusers_encode_prompt(sdxl: Any) -> None:
    ours = encode_prompt_batch(sdxl, [("a red fox", "blurry")])
    with torch.no_grad():
        expected = sdxl.encode_prompt("a red fox", device="cpu", negative_prompt="blurry")
    for got, want in zip(
        (ours.prompt_embeds, ours.negative_prompt_embeds, ours.pooled_prompt_embeds,
         ours.negative_pooled_prompt_embeds),
        expected,
        strict=True,
    ):  # fmt: skip
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_sdxl_empty_negative_is_zeros_like_diffusers(sdxl: Any) -> None:
    ours = encode_prompt_batch(sdxl, [("a red fox", ""), ("a cat", "blurry")])
    with torch.no_grad():
        _, negative, _, negative_pooled = sdxl.encode_prompt("a red fox", device="cpu")
    torch.testing.assert_close(ours.negative_prompt_embeds[:1], negative)
    torch.testing.assert_close(ours.negative_pooled_prompt_embeds[:1], negative_pooled)  # type: ignore[index]
    assert ours.negative_prompt_embeds[1].abs().sum() > 0


def test_sdxl_pooled_comes_from_the_first_chunk_and_clip_skip_changes_layers(sdxl: Any) -> None:
    short = encode(sdxl, "a red fox")
    long = encode(sdxl, "a red fox BREAK snow")
    torch.testing.assert_close(long.pooled_prompt_embeds, short.pooled_prompt_embeds)
    torch.testing.assert_close(encode(sdxl, "a red fox", clip_skip=2).prompt_embeds, short.prompt_embeds)
    assert not torch.allclose(encode(sdxl, "a red fox", clip_skip=3).prompt_embeds, short.prompt_embeds)


def test_sdxl_pipeline_runs_on_weighted_embeddings(sdxl: Any) -> None:
    embeddings = encode_prompt_batch(sdxl, [("a (red:1.3) fox BREAK snow", "blurry")])
    latents = run_on(sdxl, embeddings)
    side = 64 // sdxl.vae_scale_factor
    assert latents.shape == (1, 4, side, side)
    assert torch.isfinite(latents).all()
