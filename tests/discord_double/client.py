"""Pointing a real discord.py client at the double, and running it for the length of a test.

An application that reads its endpoints from settings can instead be given
``DISCORD_API_BASE=double.api_base`` (``http://127.0.0.1:PORT/api/v10``) and
``DISCORD_GATEWAY_URL=double.gateway_url`` (``ws://127.0.0.1:PORT/gateway``) and set
``discord.http.Route.BASE`` and ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` from them
before logging in: the webhook and interaction-callback adapters build their URLs from
``Route.BASE`` too, and a plain ``Client`` never asks ``/gateway/bot``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from .server import DiscordDouble

if TYPE_CHECKING:
    import pytest

DEFAULT_TOKEN = "discord-double-token"

ClientT = TypeVar("ClientT", bound=discord.Client)


def configure_discord_py(
    double: DiscordDouble, monkeypatch: pytest.MonkeyPatch | None = None
) -> Callable[[], None]:
    """Point discord.py at the double: REST (``Route.BASE``, which the webhook and interaction
    adapters use too) and the gateway (``DEFAULT_GATEWAY``). Returns a function that undoes it
    (a no-op when ``monkeypatch`` is given: it undoes it at teardown)."""
    changes: list[tuple[type, str, object]] = [
        (Route, "BASE", double.api_base),
        (DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(double.gateway_url)),
    ]
    if monkeypatch is not None:
        for owner, name, value in changes:
            monkeypatch.setattr(owner, name, value)
        return lambda: None
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in changes]
    for owner, name, value in changes:
        setattr(owner, name, value)

    def restore() -> None:
        for owner, name, value in saved:
            setattr(owner, name, value)

    return restore


@contextlib.asynccontextmanager
async def running_client(
    client: ClientT, token: str = DEFAULT_TOKEN, *, timeout: float = 5.0
) -> AsyncIterator[ClientT]:
    """Log ``client`` in, connect it and wait for ``on_ready``; on exit close it, wait for its
    connect task, and re-raise what that task died of (if the body itself did not fail)."""
    connect: asyncio.Task[None] | None = None
    failure: BaseException | None = None
    try:
        await client.login(token)
        connect = asyncio.create_task(client.connect(), name="discord-double-client")
        ready = asyncio.create_task(client.wait_until_ready(), name="discord-double-client-ready")
        await asyncio.wait({connect, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            if connect.done():
                connect.result()
                raise RuntimeError("the client stopped before it was ready")
            raise TimeoutError(f"the client was not ready within {timeout}s")
        yield client
    finally:
        await client.close()
        if connect is not None:
            await asyncio.wait({connect})
            failure = None if connect.cancelled() else connect.exception()
    if failure is not None:
        raise failure
