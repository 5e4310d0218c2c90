"""Weighted prompts cut into CLIP-sized chunks, so long prompts are not truncated.

CLIP reads 77 positions: a start token, 75 prompt tokens and an end token (then padding). A
prompt longer than 75 tokens is cut into several chunks that are encoded one by one and joined
along the token axis, as AUTOMATIC1111 does. The rules, applied to the tokens of every emphasis
run (each run tokenized on its own, without special tokens, every token carrying its run's weight):

- A chunk holds at most ``model_max_length - 2`` tokens (75 for CLIP).
- When a chunk is full and more tokens follow, and one of its last :data:`COMMA_LOOKBACK`
  tokens is a comma, the tokens after that (last) comma move to the next chunk, so a phrase
  is not split between chunks; otherwise the chunk is cut where it is full.
- ``BREAK`` ends the current chunk early. It never makes an empty chunk (a ``BREAK`` at the
  start, at the end or right after another ``BREAK`` does nothing).
- Text with no tokens at all gives one empty chunk (what encoding ``""`` gives).

This module needs a tokenizer only, not torch: it is also how the number of chunks of a prompt
is known before anything is encoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.domain.prompt.emphasis import is_break, parse_emphasis

log = logging.getLogger(__name__)

COMMA_LOOKBACK = 20
"""How far back from the end of a full chunk a comma is looked for."""


@dataclass(frozen=True)
class Chunk:
    """Up to ``capacity`` prompt tokens (no start/end/padding tokens) and their weights."""

    token_ids: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()

    def padded(self, tokenizer: Any) -> tuple[list[int], list[float], int]:
        """The chunk as the text encoder reads it: ids, weights, and the count of real positions.

        The layout is diffusers' (and CLIP's): start token, the tokens, the end token, then the
        tokenizer's own pad token up to ``model_max_length``. Special positions weigh 1.0; the
        count covers the start token, the tokens and the end token (for an attention mask).
        """
        length = tokenizer.model_max_length
        ids = [tokenizer.bos_token_id, *self.token_ids, tokenizer.eos_token_id]
        weights = [1.0, *self.weights, 1.0]
        used = len(ids)
        ids += [tokenizer.pad_token_id] * (length - used)
        weights += [1.0] * (length - used)
        return ids, weights, used


def _comma_id(tokenizer: Any) -> int | None:
    ids = tokenizer(",", add_special_tokens=False).input_ids
    return ids[0] if len(ids) == 1 else None


def chunk_prompt(tokenizer: Any, text: str, *, convert: Callable[[str], str] | None = None) -> list[Chunk]:
    """Cut ``text`` (with A1111 emphasis syntax) into weighted chunks for ``tokenizer``.

    ``convert`` rewrites each run's text before tokenizing (diffusers' textual-inversion
    ``maybe_convert_prompt``, which expands a multi-vector token into its parts). The result has
    at least one chunk; see the module docstring for the rules.
    """
    capacity = tokenizer.model_max_length - 2
    comma = _comma_id(tokenizer)
    runs = parse_emphasis(text)
    texts = [run_text if convert is None else convert(run_text) for run_text, _ in runs]
    token_lists = []
    if texts:
        token_lists = tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False).input_ids

    chunks: list[Chunk] = []
    current: list[tuple[int, float]] = []
    last_comma = -1

    def flush(items: list[tuple[int, float]]) -> None:
        chunks.append(Chunk(tuple(i for i, _ in items), tuple(w for _, w in items)))

    for run, token_ids in zip(runs, token_lists, strict=True):
        if is_break(run):
            if current:
                flush(current)
            current, last_comma = [], -1
            continue
        for token_id in token_ids:
            if len(current) == capacity:
                comma_near_end = last_comma >= 0 and capacity - last_comma <= COMMA_LOOKBACK
                split = last_comma + 1 if comma_near_end else capacity
                flush(current[:split])
                current, last_comma = current[split:], -1
            current.append((token_id, run[1]))
            if token_id == comma:
                last_comma = len(current) - 1
    if current or not chunks:
        flush(current)
    log.debug("%d chunk(s) for a prompt of %d characters", len(chunks), len(text))
    return chunks
