"""Keeping the machine-learning libraries quiet: their notices are not the admin's business.

diffusers and transformers log at warning level what nanke already handles (a torchvision
fallback, a component loaded without a safety checker), draw progress bars even into log files,
and torchsde warns about float rounding in its Brownian tree on every DPM++ SDE run.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def quiet_libraries(*, live: bool) -> None:
    """Errors only from diffusers, transformers and the Hub; progress bars only on a terminal (``live``)."""
    warnings.filterwarnings("ignore", message=r"Should have ta>=t0", category=UserWarning)
    if not live:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers
    import huggingface_hub
    import transformers

    for library in (diffusers, transformers):
        library.utils.logging.set_verbosity_error()
        if not live:
            library.utils.logging.disable_progress_bar()
    if not live:
        huggingface_hub.utils.disable_progress_bars()


@contextmanager
def quiet_transformers_loading() -> Iterator[None]:
    """Silence transformers' load report while diffusers puts adapters or tokens into a text encoder.

    Loading a LoRA into a text encoder makes transformers print a table that calls the encoder's
    own weights "newly initialized" (they are not: only the adapter's weights are loaded).
    """
    import transformers

    logger = transformers.utils.logging.get_logger("transformers")
    level = logger.level
    transformers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        logger.setLevel(level)
