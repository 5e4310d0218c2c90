"""The ``discord_double`` pytest fixture. Load it in a test module with::

    pytest_plugins = ["tests.discord_double.fixtures"]

(importing the fixture by name works too). Helpers for the client side are in :mod:`.client`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .client import DEFAULT_TOKEN, configure_discord_py
from .server import DiscordDouble


@pytest_asyncio.fixture
async def discord_double(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DiscordDouble]:
    """A started double with discord.py pointed at it; fails the test if the double itself erred."""
    double = DiscordDouble(bot_token=DEFAULT_TOKEN)
    await double.start()
    configure_discord_py(double, monkeypatch)
    try:
        yield double
    finally:
        await double.stop()
    assert not double.internal_errors, f"the discord double failed: {double.internal_errors}"
