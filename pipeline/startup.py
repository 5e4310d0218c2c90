"""Starting a long-running nanke process (the bot, or the HTTP API alone): the checks before
anything is served.

The settings, the data folder and database (upgraded), the device, the image safety check and
the default model, loaded (a Hub model is downloaded then). Any of them failing raises
:class:`StartupFailure` with one line naming the setting; its caller exits with status 2. While
starting, the log's INFO lines are held back (:func:`held_back_info`), so a start that fails says
that one line and nothing else.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pipeline.domain.text import one_line
from pipeline.errors import DeviceError, ModelError, PipelineError, StoreError
from pipeline.settings import Settings, SettingsError

if TYPE_CHECKING:
    from pipeline.app import App

log = logging.getLogger(__name__)


class StartupFailure(Exception):
    """nanke cannot start; ``line`` names the setting and what was wrong, on one line."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def prepare(settings: Settings, *, load_model: bool = True) -> App:
    """The application, opened, with its default model loaded; :class:`StartupFailure` if not.

    With remote GPU workers (NANKE_BROKER_URL), the models are theirs: none is loaded here.
    """
    from pipeline.app import App
    from pipeline.engine.quiet import quiet_libraries

    quiet_libraries(live=sys.stderr.isatty())
    with failing_in_one_line():
        app = App(settings).open()
        if load_model and not settings.broker_url:
            load_default_model(app)
    return app


def load_default_model(app: App) -> None:
    """Load the default model now (a Hub model is downloaded), and compile it or capture its CUDA
    graphs for the common shapes if asked to."""
    settings = app.settings
    log.info("loading the default model %s", settings.model)
    engine = app.engines.engine_for(None)
    shapes = sorted({1, 4, app.largest_batch()})  # one image, one grid, a full batch
    applied = engine.environment.get("tuning", "").split(",")  # none off the GPU
    doing = (
        "compiling"
        if "compile" in applied
        else "capturing CUDA graphs of"
        if "cuda_graphs" in applied
        else ""
    )
    if doing:
        log.info("%s the UNet for batches of %s image(s)", doing, ", ".join(map(str, shapes)))
        engine.warm_up(shapes)
    log.info("model %s is ready on %s", engine.model.name, engine.device)


@contextmanager
def failing_in_one_line() -> Iterator[None]:
    """Turn the errors of starting up into :class:`StartupFailure`, one line naming the setting."""
    try:
        yield
    except SettingsError as error:
        raise StartupFailure("; ".join(error.problems)) from error
    except ModelError as error:
        # The upscaler's and the safety check's errors name their own setting
        said = one_line(str(error))
        raise StartupFailure(said if said.startswith("NANKE_") else f"NANKE_MODEL: {said}") from error
    except DeviceError as error:
        raise StartupFailure(f"NANKE_DEVICE / NANKE_DTYPE: {one_line(str(error))}") from error
    except StoreError as error:
        raise StartupFailure(f"DATABASE_URL: {one_line(str(error))}") from error
    except PipelineError as error:
        raise StartupFailure(one_line(str(error))) from error


@contextmanager
def held_back_info() -> Iterator[None]:
    """Hold the log's lines below WARNING back until the block succeeds: a start that fails says
    only its one error line; one that succeeds shows what it did."""
    held: list[logging.LogRecord] = []

    class Hold(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno < logging.WARNING:
                held.append(record)
                return False
            return True

    hold = Hold()
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(hold)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(hold)
    for record in held:  # only reached when the block succeeded
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)
