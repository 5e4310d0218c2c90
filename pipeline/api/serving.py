"""Running the HTTP API on an event loop that is already running (the bot's, or ``main.py serve``'s).

The listening socket is bound when the server is made, so an address in use or not allowed is
one clear line (naming NANKE_API_HOST / NANKE_API_PORT) at start, not a traceback later.
uvicorn's own signal handling is left out: the process that runs the API handles its signals
and stops the server with :meth:`ApiServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from pipeline.api.auth import RateLimiter
from pipeline.api.progress import ProgressHub
from pipeline.api.server import ApiContext, build_api
from pipeline.app import App
from pipeline.queue.jobs.asynchronous import AsyncJobs
from pipeline.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5
MIB = 2**20


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's own handlers stay: it stops the server itself
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; one line naming the settings when it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise SettingsError(
            [f"NANKE_API_HOST: {host!r} is not an address of this machine ({error.strerror})"]
        ) from None
    family, kind, protocol, _, address = infos[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise SettingsError(
            [f"NANKE_API_PORT: cannot listen on {host}:{port} ({error.strerror or error}); choose another"]
        ) from None
    listener.setblocking(False)
    return listener


class ApiServer:
    """The HTTP API of ``app``, fed by ``hub`` (which the worker's events must reach)."""

    def __init__(self, app: App, hub: ProgressHub, *, host: str, port: int) -> None:
        settings = app.settings
        context = ApiContext(
            jobs=AsyncJobs(app.jobs),
            hub=hub,
            catalog=app.catalog,
            limiter=RateLimiter(settings.api_rate),
            max_pixels=settings.max_pixels,
            cache_dir=settings.cache_dir,
            styles=app.styles,
            resources=app.resources,
        )
        self.hub = hub
        self.socket = bind(host, port)
        self.host, self.port = host, self.socket.getsockname()[1]
        config = uvicorn.Config(
            build_api(context, max_body_bytes=settings.api_max_body_mb * MIB),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Serve in the background on the running loop."""
        self.hub.attach(asyncio.get_running_loop())
        self._task = asyncio.create_task(self._server.serve(sockets=[self.socket]), name="nanke-api")
        log.info("HTTP API on http://%s:%d (docs at /docs)", self.host, self.port)

    async def serve(self) -> None:
        """Serve until :meth:`stop` is called."""
        if self._task is None:
            self.start()
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.socket.close()


def run_api(settings: Settings) -> int:
    """``main.py serve``: the HTTP API with the embedded GPU worker, no Discord, until SIGINT or
    SIGTERM (the running batch finishes first); returns the exit status."""
    from pipeline.startup import StartupFailure, held_back_info, prepare

    try:
        with held_back_info():
            listener = bind(settings.api_host, settings.api_port)  # the port first: it fails fast
            app = prepare(settings)
    except SettingsError as error:
        log.error("%s", "; ".join(error.problems))
        return 2
    except StartupFailure as failure:
        log.error("%s", failure.line)
        return 2
    listener.close()
    try:
        asyncio.run(_serve(app, settings))
    except SettingsError as error:
        log.error("%s", "; ".join(error.problems))
        return 2
    finally:
        app.close()
    return 0


async def _serve(app: App, settings: Settings) -> None:
    hub = ProgressHub()
    server = ApiServer(app, hub, host=settings.api_host, port=settings.api_port)
    worker = app.worker(events=hub)
    worker.recover()
    worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, or not the main thread
            loop.add_signal_handler(signum, stop.set)
    server.start()
    try:
        await stop.wait()
        log.info("stopping: the running batch finishes first")
    finally:
        await server.stop()
        await asyncio.to_thread(worker.stop)
