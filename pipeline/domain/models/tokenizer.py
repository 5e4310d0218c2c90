"""The CLIP tokenizer files a single-file checkpoint does not carry, found or built offline.

A checkpoint holds the text encoders' weights but not their tokenizer (``vocab.json`` and
``merges.txt``). SD 1.x, SD 2.x and both SDXL tokenizers share one vocabulary (CLIP's 49,408 BPE
tokens; they differ only in the padding token, which the shipped tokenizer configs set). For each
tokenizer of a model (``tokenizer``, and ``tokenizer_2`` for SDXL) the first of these wins:

1. ``<stem>.config/<name>/`` beside the checkpoint (the per-checkpoint override folder);
2. ``<name>/`` beside the checkpoint, then ``tokenizer/`` beside it (the folder of the base model,
   as in a diffusers repository);
3. CLIP's own BPE vocabulary, shipped as ``bpe_simple_vocab_16e6.txt.gz`` by the ``openai-clip``
   package (also by ``clip-anytorch`` and ``open_clip_torch``): ``vocab.json``/``merges.txt`` are
   derived from it exactly, once, into ``<cache>/clip-tokenizer/``.

A folder counts when it has both ``vocab.json`` and ``merges.txt`` (as diffusers repositories
have), or a ``tokenizer.json`` (as transformers ≥ 5 saves); its ``tokenizer_config.json`` is not
used: the special tokens come from the config layers (``pipeline.domain.models.config_folder``).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

BPE_FILES = ("vocab.json", "merges.txt")
TOKENIZER_FILES = (*BPE_FILES, "tokenizer.json")
"""What is copied from a tokenizer folder (``tokenizer.json`` is what transformers ≥ 5 saves)."""
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_DISTRIBUTIONS = ("openai-clip", "clip-anytorch", "open_clip_torch")
CLIP_MERGES = 49152 - 256 - 2
"""CLIP uses the first 48,894 merges of the file: 512 byte tokens + merges + 2 specials = 49,408."""
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def is_tokenizer_folder(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or all((folder / name).is_file() for name in BPE_FILES)


def find_tokenizers(
    components: Iterable[str], *, checkpoint: Path | None, override: Path | None, cache_dir: Path
) -> dict[str, Path]:
    """The folder to take the vocabulary files from, for each tokenizer component."""
    found: dict[str, Path] = {}
    for component in components:
        candidates = []
        if override is not None:
            candidates.append(override / component)
        if checkpoint is not None:
            candidates += [checkpoint.parent / component, checkpoint.parent / "tokenizer"]
        folder = next((c for c in candidates if is_tokenizer_folder(c)), None) or clip_tokenizer(cache_dir)
        if folder is None:
            raise ModelLoadError(missing_tokenizer_message(checkpoint))
        log.debug("%s of %s from %s", component, checkpoint, folder)
        found[component] = folder
    return found


def missing_tokenizer_message(checkpoint: Path | None) -> str:
    where = f"beside {checkpoint}" if checkpoint is not None else "beside the checkpoint"
    return (
        "no CLIP tokenizer (vocab.json and merges.txt) for this checkpoint: a checkpoint file does "
        f"not contain one. Install the openai-clip package (pip install openai-clip), which ships "
        "CLIP's BPE vocabulary that nanke turns into the tokenizer offline, or put the base model's "
        f"tokenizer folder (tokenizer/ with vocab.json and merges.txt, as in the diffusers repository "
        f"of the base model) {where}"
    )


def clip_tokenizer(cache_dir: Path) -> Path | None:
    """``<cache>/clip-tokenizer`` with CLIP's vocab and merges (built once); ``None`` without the BPE file."""
    folder = cache_dir / "clip-tokenizer"
    if is_tokenizer_folder(folder):
        return folder
    bpe = find_bpe_file()
    if bpe is None:
        return None
    write_clip_tokenizer(bpe, folder)
    log.info("built the CLIP tokenizer in %s from %s", folder, bpe)
    return folder


def find_bpe_file() -> Path | None:
    """CLIP's ``bpe_simple_vocab_16e6.txt.gz`` from an installed package that ships it (not imported)."""
    for name in BPE_DISTRIBUTIONS:
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in distribution.files or ():
            if file.name == BPE_FILE:
                path = Path(str(distribution.locate_file(file)))
                if path.is_file():
                    return path
    return None


CLIP_CONTEXT = 77


def write_clip_tokenizer(bpe_file: Path, folder: Path) -> None:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` (as in ``openai/clip-vit-large-patch14``)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    lines = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : CLIP_MERGES + 1]
    if len(merges) != CLIP_MERGES:
        raise ModelLoadError(f"{bpe_file} has {len(merges)} merges, not CLIP's {CLIP_MERGES}")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += list(SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    suffix = f".{os.getpid()}.tmp"
    vocab_tmp = folder / f"vocab.json{suffix}"
    merges_tmp = folder / f"merges.txt{suffix}"
    vocab_tmp.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_tmp.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config_tmp = folder / f"tokenizer_config.json{suffix}"
    # CLIP's context is 77 tokens; without this, transformers reports an "unlimited" length.
    config_tmp.write_text(json.dumps({"model_max_length": CLIP_CONTEXT}), encoding="utf-8")
    merges_tmp.replace(folder / "merges.txt")
    config_tmp.replace(folder / "tokenizer_config.json")
    vocab_tmp.replace(folder / "vocab.json")
