"""Keeping the bot token out of the logs: every line is written with it blanked out."""

from __future__ import annotations

import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

BLANK = "[hidden]"


class RedactingFormatter(logging.Formatter):
    """``formatter``'s lines (tracebacks included) with every one of ``secrets`` replaced."""

    def __init__(self, formatter: logging.Formatter | None, secrets: Iterable[str]) -> None:
        super().__init__()
        self.formatter = formatter or logging.Formatter()
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 8}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = self.formatter.format(record)
        for secret in self.secrets:
            text = text.replace(secret, BLANK)
        return text


def redact_logs(*secrets: str, logger: logging.Logger | None = None) -> None:
    """Blank ``secrets`` out of everything the handlers of ``logger`` (the root logger) write."""
    for handler in (logger or logging.getLogger()).handlers:
        handler.setFormatter(RedactingFormatter(handler.formatter, secrets))
