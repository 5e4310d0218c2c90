"""Cutting weighted prompts into 75-token chunks (pipeline.domain.prompt.chunks).

The test tokenizer is byte-level: every character of a word is one token, so lengths are easy
to build ("x" * 80 is 80 tokens) and a comma followed by a space is one token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import CLIPTokenizer

from pipeline.domain.prompt.chunks import COMMA_LOOKBACK, Chunk, chunk_prompt
from pipeline.engine.testmodel import write_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(Path(folder))
    return CLIPTokenizer.from_pretrained(folder)


def lengths(tokenizer: Any, text: str) -> list[int]:
    return [len(chunk.token_ids) for chunk in chunk_prompt(tokenizer, text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", [0]), ("x", [1]), ("x" * 75, [75]), ("x" * 76, [75, 1]), ("x" * 200, [75, 75, 50])],
)
def test_chunks_hold_75_tokens(tokenizer: Any, text: str, expected: list[int]) -> None:
    assert lengths(tokenizer, text) == expected


def test_a_plain_prompt_is_one_chunk_of_its_tokens(tokenizer: Any) -> None:
    [chunk] = chunk_prompt(tokenizer, "a red fox")
    assert list(chunk.token_ids) == tokenizer("a red fox", add_special_tokens=False).input_ids
    assert chunk.weights == (1.0,) * len(chunk.token_ids)


def test_a_comma_near_the_end_moves_the_rest_to_the_next_chunk(tokenizer: Any) -> None:
    # 60 x, a comma, then 20 y: the comma is 15 tokens from the end of the full chunk.
    assert lengths(tokenizer, "x" * 60 + ", " + "y" * 20) == [61, 20]
    chunks = chunk_prompt(tokenizer, "x" * 60 + ", " + "y" * 20)
    assert chunks[0].token_ids[-1] == tokenizer(",", add_special_tokens=False).input_ids[0]


def test_a_comma_too_far_back_does_not_move_anything(tokenizer: Any) -> None:
    too_far = 75 - COMMA_LOOKBACK - 1
    assert lengths(tokenizer, "x" * too_far + ", " + "y" * 40) == [75, too_far + 1 + 40 - 75]


def test_the_last_comma_is_the_one_used(tokenizer: Any) -> None:
    text = "x" * 58 + ", " + "y" * 5 + ", " + "z" * 20
    assert lengths(tokenizer, text) == [58 + 1 + 5 + 1, 20]


def test_break_ends_a_chunk_but_never_makes_an_empty_one(tokenizer: Any) -> None:
    assert lengths(tokenizer, "ab BREAK cd") == [2, 2]
    assert lengths(tokenizer, "BREAK ab BREAK BREAK cd BREAK") == [2, 2]
    assert lengths(tokenizer, "x" * 75 + " BREAK y") == [75, 1]
    assert lengths(tokenizer, "BREAK") == [0]


def test_every_token_carries_its_runs_weight(tokenizer: Any) -> None:
    [chunk] = chunk_prompt(tokenizer, "a (fox:1.5) [b]")
    assert chunk.weights == pytest.approx((1.0, 1.5, 1.5, 1.5, 1 / 1.1))


def test_weights_follow_tokens_across_chunks(tokenizer: Any) -> None:
    chunks = chunk_prompt(tokenizer, "x" * 70 + " (" + "y" * 10 + ":2)")
    assert chunks[0].weights[-5:] == (2.0,) * 5
    assert chunks[1].weights == (2.0,) * 5


def test_padded_layout_is_start_tokens_end_then_the_pad_token(tokenizer: Any) -> None:
    ids, weights, used = Chunk((5, 6), (2.0, 1.0)).padded(tokenizer)
    assert len(ids) == len(weights) == 77
    assert ids[:4] == [tokenizer.bos_token_id, 5, 6, tokenizer.eos_token_id]
    assert set(ids[4:]) == {tokenizer.pad_token_id}
    assert weights[:4] == [1.0, 2.0, 1.0, 1.0]
    assert used == 4
    assert Chunk().padded(tokenizer)[0] == tokenizer("", padding="max_length", max_length=77).input_ids


def test_convert_rewrites_each_run(tokenizer: Any) -> None:
    [chunk] = chunk_prompt(tokenizer, "(ab:2)", convert=lambda text: text + text)
    assert len(chunk.token_ids) == 4
    assert chunk.weights == (2.0,) * 4
