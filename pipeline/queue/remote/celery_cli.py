"""The Celery application for Celery's own command line, from the settings in ``./.env``::

    celery -A pipeline.queue.remote.celery_cli inspect active
    celery -A pipeline.queue.remote.celery_cli events

Only for watching: the bot and the workers build their own (``pipeline.app.App.celery``).
"""

from __future__ import annotations

import logging

from pipeline.queue.remote.celery_app import make_celery
from pipeline.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

_settings = load_settings()
if not _settings.broker_url:
    raise SettingsError(["NANKE_BROKER_URL: not set (in the environment or ./.env)"])
app = make_celery(_settings.broker_url, job_timeout_s=_settings.job_timeout_s)
