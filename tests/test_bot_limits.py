"""What the bot sends and writes stays within bounds: messages fit Discord's limit, and the bot
token never reaches a log line."""

from __future__ import annotations

import io
import logging

from bot.cogs.queue import queue_text
from bot.errors import MESSAGE_LIMIT, user_message
from bot.redaction import BLANK, redact_logs
from pipeline.errors import ModelNotFound
from pipeline.queue.jobs import QueueEntry, QueueOverview

TOKEN = "MTAxMDEwMTAxMDEw.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789"


def test_an_error_message_of_any_length_fits_one_discord_message() -> None:
    message = user_message(ModelNotFound("no model called " + "x" * 5000))
    assert message is not None and len(message) <= MESSAGE_LIMIT
    assert message.startswith("⚠️ no model called xxx") and message.endswith("…")


def test_a_long_queue_fits_one_message() -> None:
    entries = tuple(
        QueueEntry(
            job_id=n,
            status="queued",
            position=n,
            owner_discord_id=7,
            owner_name="alice" * 20,
            guild_id=1,
            images=4,
            prompt="a red fox " * 50,
            eta_s=n * 30.0,
        )
        for n in range(1, 500)
    )
    text = queue_text(QueueOverview(entries, 7.5), viewer_id=7, guild_id=1, admin=True)
    assert len(text) <= MESSAGE_LIMIT
    assert "#1 ⏳ position 1 · done in about 30 s" in text and "more" in text


def test_the_token_is_blanked_out_of_every_log_line_and_traceback() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact_logs(TOKEN, logger=logger)
        logger.warning("connecting with %s", TOKEN)
        try:
            raise RuntimeError(f"401 for Bot {TOKEN}")
        except RuntimeError:
            logger.exception("login failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert TOKEN not in written
    assert written.count(BLANK) == 2 and "WARNING connecting with" in written  # message and exception


def test_queue_shows_the_gpu_workers_to_everyone_and_each_one_to_admins() -> None:
    from bot.i18n import TEXTS
    from pipeline.queue.worker_status import WorkerStatus

    def worker(name: str, task: str | None) -> WorkerStatus:
        return WorkerStatus(
            name=name, host=f"{name}.lan", instance=name, pid=1, gpu="NVIDIA H200", device="cuda",
            default_model="sd15", models=("sd15",), task=task, images_per_s=3.25,
        )  # fmt: skip

    overview = QueueOverview((), None, (worker("gpu-1", "d1"), worker("gpu-2", None)), remote=True)
    member = queue_text(overview, viewer_id=7, guild_id=1, admin=False)
    assert "GPU workers: 2 connected, 1 busy." in member and "gpu-1" not in member
    admin = queue_text(overview, viewer_id=7, guild_id=1, admin=True)
    assert "· gpu-1 (gpu-1.lan) · NVIDIA H200 · busy · sd15 · 3.25 images/s" in admin
    assert "gpu-2 (gpu-2.lan) · NVIDIA H200 · idle" in admin
    chinese = queue_text(overview, viewer_id=7, guild_id=1, admin=True, texts=TEXTS["zh-CN"])
    assert "已连接 2 台，1 台忙碌" in chinese and "忙碌 · sd15" in chinese
    nobody = queue_text(QueueOverview((), None, (), remote=True), viewer_id=7, guild_id=1, admin=False)
    assert "No GPU worker is connected" in nobody
    embedded = queue_text(QueueOverview((), None), viewer_id=7, guild_id=1, admin=True)
    assert "GPU worker" not in embedded
