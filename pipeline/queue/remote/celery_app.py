"""The Celery application both sides share: its broker, result store and delivery rules.

The rules are those of long GPU tasks that must never be lost: a task is acknowledged only once
it is done (late ack) and put back when its worker dies (reject on worker lost), a worker takes
one at a time (prefetch 1, solo pool), and Redis's visibility timeout is longer than the longest
batch, so a running batch is not handed out again while it still runs. Only JSON travels.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery

log = logging.getLogger(__name__)

TASK_NAME = "nanke.generate"
"""The one task: generate a batch of jobs and return their images."""
QUEUE_PREFIX = "nanke.worker."
VISIBILITY_MARGIN_S = 600
"""How much longer than the longest batch Redis waits before handing an unacknowledged task out again."""
NO_LIMIT_BATCH_S = 24 * 3600
"""The longest batch when NANKE_JOB_TIMEOUT is 0 (no limit)."""


def queue_for(worker: str) -> str:
    """The queue only the worker named ``worker`` consumes: the bot picks the worker (model affinity)."""
    return QUEUE_PREFIX + worker


def longest_batch_s(job_timeout_s: int) -> int:
    """How long a batch may take, from NANKE_JOB_TIMEOUT (a batch's groups run one after another,
    each within the job time limit; two minutes more cover loading and encoding)."""
    return (job_timeout_s or NO_LIMIT_BATCH_S) + 120


def make_celery(broker_url: str, *, job_timeout_s: int) -> Celery:
    """The Celery application on the Redis at ``broker_url`` (broker and result store)."""
    visibility_timeout = longest_batch_s(job_timeout_s) + VISIBILITY_MARGIN_S
    app = Celery("nanke", broker=broker_url, backend=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": visibility_timeout},
        result_backend_transport_options={"visibility_timeout": visibility_timeout},
        result_expires=timedelta(days=1),
        result_extended=True,
        task_default_queue=QUEUE_PREFIX + "default",
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app
