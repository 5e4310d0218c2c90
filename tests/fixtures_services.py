"""Fixtures of the job, worker and command-line tests, on the tiny random-weight model.

Everything runs through the real wiring (``pipeline.app.App``): settings, database, image store,
model loading, engine, runner and worker. Test modules load these fixtures with
``pytest_plugins = ("tests.fixtures_services",)`` and import helpers from ``helpers_services``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.app import App
from pipeline.settings import load_settings
from tests.helpers_services import Services, settings_env


@pytest.fixture
def services_database_url() -> str | None:
    """The ``DATABASE_URL`` of ``services``: ``None``, SQLite in the data folder. A test module
    that overrides it with ``database_url`` (``tests.fixtures_postgres``) runs on PostgreSQL too."""
    return None


@pytest.fixture
def services(tmp_path: Path, tiny_model_dir: Path, services_database_url: str | None) -> Iterator[Services]:
    """Services on a fresh data folder; the worker thread (if started) is stopped afterwards."""
    database = {"DATABASE_URL": services_database_url} if services_database_url else {}
    built = Services(App(load_settings(settings_env(tmp_path / "data", tiny_model_dir, **database))).open())
    yield built
    built.close()
