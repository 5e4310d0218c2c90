"""Text embeddings of the next batch, made while the current batch's last step and decoding run.

Tokenising and encoding a batch's prompts is a few milliseconds of Python and small kernel
launches; made ahead in another thread, the GPU does not wait for them between batches. An entry
is used only for exactly the prompts, clip skip and text state (LoRAs on, embeddings loaded; see
:class:`~pipeline.engine.choices.Choices`) it was made with, so an image is the same either way:
the same function encodes the same prompts with the same weights. Anything else (another LoRA
set, an embedding added meanwhile, a batch split after out-of-memory) encodes as usual.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.domain.prompt.embeddings import PromptEmbeddings

MOST_AHEAD = 4
"""Entries kept; the oldest goes first (a batch of several prompt lengths makes one per length)."""

Key = tuple[Any, ...]


def _key(pairs: Sequence[tuple[str, str]], clip_skip: int, state: tuple[object, ...]) -> Key:
    return (tuple(pairs), clip_skip, state)


class EncodedAhead:
    """Prompt embeddings made ahead, each taken once."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Key, PromptEmbeddings] = OrderedDict()
        self._lock = threading.Lock()
        self.made = 0
        self.used = 0

    def put(
        self,
        pairs: Sequence[tuple[str, str]],
        clip_skip: int,
        state: tuple[object, ...],
        embeddings: PromptEmbeddings,
    ) -> None:
        with self._lock:
            self._entries[_key(pairs, clip_skip, state)] = embeddings
            while len(self._entries) > MOST_AHEAD:
                self._entries.popitem(last=False)
            self.made += 1

    def take(
        self, pairs: Sequence[tuple[str, str]], clip_skip: int, state: tuple[object, ...]
    ) -> PromptEmbeddings | None:
        """The embeddings made ahead for exactly these, or ``None``."""
        with self._lock:
            found = self._entries.pop(_key(pairs, clip_skip, state), None)
            if found is not None:
                self.used += 1
            return found
