"""What people type: Midjourney-style flags, AUTOMATIC1111 emphasis, weighted text embeddings.

- :mod:`pipeline.domain.prompt.flags` turns ``/imagine`` text with ``--ar 16:9 --seed 7 ...`` into a
  :class:`~pipeline.domain.request.GenerationRequest`.
- :mod:`pipeline.domain.prompt.emphasis` parses ``(word:1.3)``, ``[word]``, escapes and ``BREAK`` into
  weighted runs of text.
- :mod:`pipeline.domain.prompt.embeddings` turns prompts into chunked, weighted diffusers embeddings
  (it imports torch, so it is not imported here).
"""

from __future__ import annotations
