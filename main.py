"""nanke's command line: run the bot, generate locally, inspect and reproduce jobs.

python main.py run                       start the Discord bot with the embedded GPU worker
python main.py serve                     start the HTTP API (WebUI-compatible) with the GPU worker
python main.py worker                    run a remote GPU worker (NANKE_BROKER_URL: scaling out)
python main.py api-key create NAME       make a key of the HTTP API (also: list, revoke NAME)
python main.py imagine "PROMPT --flags"  generate without Discord
python main.py show JOB_ID               print a stored job
python main.py reproduce JOB_ID          regenerate a job and check every pixel
python main.py import FILE.png           regenerate an A1111 / civitai image from its PNG Info
python main.py models [fetch HUB_ID]     list the models nanke can see, or download one
python main.py doctor                    check the set-up, one line per check
python main.py make-test-model DIR       write a tiny random-weight model for tests and demos
python main.py db upgrade                upgrade the database schema

Settings come from the environment and from the ``.env`` file beside this file (``--env-file``
names another). Commands that only read the database (``show``, ``models``, ``db``) load no torch.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import logging.handlers
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import DiscordSettings
    from pipeline.app import App
    from pipeline.domain.request import GenerationRequest
    from pipeline.engine.results import StepProgress
    from pipeline.queue.jobs import JobSnapshot
    from pipeline.settings import Settings

log = logging.getLogger("nanke")

HERE = Path(__file__).resolve().parent
DEFAULT_ENV_FILE = HERE / ".env"
DEFAULT_API_PORT = 7860
"""``main.py serve``'s port without NANKE_API_PORT: the WebUI's, where its clients look first."""
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


# -- terminal output ------------------------------------------------------------------------------


class Terminal:
    """Progress on an interactive terminal (stderr); silence when output is piped or logged."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._line = False

    def status(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()
            self._line = True

    def done(self) -> None:
        if self._line:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._line = False

    def step(self, progress: StepProgress, *, label: str = "generating") -> None:
        width = 24
        filled = int(width * progress.fraction)
        bar = "█" * filled + "·" * (width - filled)
        self.status(f"{label} {bar} step {progress.step}/{progress.total_steps} · {progress.elapsed_s:.1f} s")


# -- commands -------------------------------------------------------------------------------------


def cmd_imagine(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.domain.prompt.flags import parse_prompt

    app = _app(settings)
    parsed = parse_prompt(args.prompt, styles=app.styles.book())
    request = parsed.request
    if args.model:
        request = replace(request, model=args.model)
    return _generate(args, app, request, kind="imagine")


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.domain.metadata import read_parameters
    from pipeline.domain.metadata.imported import import_request

    path = Path(args.file)
    if not path.is_file():
        return _fail(f"file: {args.file} does not exist")
    text = read_parameters(path.read_bytes())
    if text is None:
        return _fail(f"{path.name} has no generation parameters (no A1111 'parameters' text or EXIF comment)")
    app = _app(settings)
    imported = import_request(text, catalog=app.catalog, model=args.model or None, resources=app.resources)
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    return _generate(args, app, imported.request, kind="imagine")


def _generate(args: argparse.Namespace, app: App, request: GenerationRequest, *, kind: str) -> int:
    from pipeline.engine.results import StepProgress
    from pipeline.queue.jobs import Requester
    from pipeline.queue.worker import WorkerEvents

    terminal = Terminal()
    request = request.validate(max_pixels=app.settings.max_pixels)
    # The model first: one that cannot be found or loaded is refused before a job is stored
    terminal.status("loading model…")
    try:
        app.engines.engine_for(request.model)
    finally:
        terminal.done()
    job = app.jobs.submit(request, requester=Requester(name=_local_user()), kind=kind)

    class Progress(WorkerEvents):
        def progress(self, job_id: int, step: int, total: int, elapsed_s: float) -> None:
            terminal.step(StepProgress(step, total, elapsed_s), label=f"job {job_id}:")

    try:
        started = time.monotonic()
        app.runner.run_and_save([job.id], events=Progress())
    except BaseException as error:
        # Not left for the bot to run with nowhere to send it: an interrupted job is cancelled (a
        # running one flagged), one that hit an error (a model unreadable, torch) fails with it
        _abandon(app, job.id, error)
        raise
    finally:
        terminal.done()
    job = app.jobs.get(job.id)
    if job.status != "done":
        return _fail(f"job {job.id} {job.status}: {job.error or 'no images'}")
    paths = _export(app, job, Path(args.out), grid=not args.no_grid)
    print(f"job {job.id}: {len(job.images)} image(s) in {time.monotonic() - started:.1f} s")
    for image, path in zip(job.images, paths, strict=False):
        print(f"{path}\tseed {image.seed}")
    if len(paths) > len(job.images):
        print(f"{paths[-1]}\tgrid")
    return 0


def _abandon(app: App, job_id: int, error: BaseException) -> None:
    from pipeline.errors import PipelineError

    if not isinstance(error, Exception):
        reason = None
    elif isinstance(error, PipelineError):
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}"
    try:
        app.jobs.abandon(job_id, reason=reason)
    except Exception:
        log.debug("job %d could not be cancelled or failed", job_id, exc_info=True)


def _export(app: App, job: JobSnapshot, out: Path, *, grid: bool) -> list[Path]:
    """Write the job's PNGs (and a grid for several images) to ``out``."""
    from pipeline.domain.metadata import write_png

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for image in job.images:
        target = out / f"nanke-{job.id}-{image.index + 1}-{image.seed}.png"
        target.write_bytes(app.jobs.images.read(image))
        paths.append(target)
    picture = app.jobs.images.picture(job) if grid else None
    if picture is not None and picture.grid:
        target = out / f"nanke-{job.id}-grid.png"
        target.write_bytes(write_png(picture.image, picture.parameters))
        paths.append(target)
    return paths


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.app import App

    app = App(settings)
    job = app.jobs.get(args.job_id)
    request = job.request
    print(f"job {job.id} ({job.kind}) by {job.owner_name}: {job.status}")
    if job.parent_id is not None:
        image = f", image {job.parent_image_index + 1}" if job.parent_image_index is not None else ""
        print(f"  from job {job.parent_id}{image}")
    print(f"  prompt:    {request.prompt}")
    if request.negative_prompt:
        print(f"  negative:  {request.negative_prompt}")
    print(
        f"  settings:  {request.width}x{request.height}, {request.steps} steps, {request.sampler}, "
        f"CFG {request.cfg_scale:g}, seed {request.seed}, {request.count} image(s)"
        + (f", clip skip {request.clip_skip}" if request.clip_skip > 1 else "")
        + (f", {request.mode} strength {request.strength:g}" if request.strength is not None else "")
    )
    print(
        f"  model:     {job.model_name or request.model or '(default)'}"
        + (f" [{job.model_hash}]" if job.model_hash else "")
    )
    print(f"  created:   {job.created_at:%Y-%m-%d %H:%M:%S %Z}")
    if job.finished_at and job.started_at:
        print(f"  ran:       {(job.finished_at - job.started_at).total_seconds():.1f} s")
    if job.error:
        print(f"  error:     {job.error}")
    for image in job.images:
        path = app.jobs.images.path(image)
        print(f"  image {image.index + 1}: {path}\tseed {image.seed}\t{image.width}x{image.height}")
    if args.json:
        print(request.to_json())
    return 0


def cmd_reproduce(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.queue.reproduce import reproduce_job

    terminal = Terminal()
    app = _app(settings)
    result = reproduce_job(app.jobs, app.engines, args.job_id, model=args.model, on_step=terminal.step)
    terminal.done()
    for image in result.images:
        verdict = (
            "identical"
            if image.identical
            else (f"DIFFERS ({image.differing_pixels} pixels, by up to {image.max_difference})")
        )
        print(f"image {image.index + 1} (seed {image.seed}): {verdict}")
    if result.identical:
        print(f"job {args.job_id}: every image reproduced pixel for pixel")
        return 0
    print(
        f"job {args.job_id}: not identical. Exact reproduction needs the same model file, device and "
        "library versions as the original run.",
        file=sys.stderr,
    )
    return 1


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.app import App
    from pipeline.domain.models.inspection import inspect_model

    if args.action == "fetch":
        return _fetch_model(args, settings)
    catalog = App(settings).catalog
    print(f"default: {settings.model}")
    print(f"models folder: {settings.models_dir or '(none)'}")
    for name in catalog.names():
        spec = catalog.resolve(name)
        state = inspect_model(spec)
        print(f"  {'✓' if state.usable else '✗'} {name}\t{spec.kind}\t{spec.source}\t{state.detail}")
    return 0


def _fetch_model(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.domain.models.fetching import fetch_model

    if not args.repo:
        return _fail(
            "models fetch: name the Hub id to download, such as stable-diffusion-v1-5/stable-diffusion-v1-5"
        )
    folder = settings.models_dir or settings.data_dir / "models"
    _quiet(live=sys.stderr.isatty())
    target = fetch_model(args.repo, models_dir=folder, name=args.name)
    print(f"downloaded {args.repo} to {target}")
    print(f"use it with NANKE_MODEL={target.name} (or /imagine model:{target.name})")
    return 0


def cmd_make_test_model(args: argparse.Namespace, settings: Settings | None) -> int:
    from pipeline.engine.testmodel import make_test_model

    _quiet(live=sys.stderr.isatty())
    folder = make_test_model(Path(args.dir), seed=args.seed)
    print(f"wrote a tiny random-weight Stable Diffusion model to {folder}")
    print("its images are coloured noise (the weights are random); it is meant for tests and demos")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.app import App

    store = App(settings).store
    if args.action == "upgrade":
        store.upgrade()
        print(f"database at revision {store.revision()} ({store.label})")
    else:
        print(store.revision() or "(empty database)")
    return 0


def cmd_doctor(args: argparse.Namespace, settings: None) -> int:
    """Every check on its own line; the settings' own problems are checks too."""
    from bot.settings import load_bot_settings
    from bot.token_check import check_token
    from pipeline.diagnostics import run_checks
    from pipeline.settings import SettingsError

    failed = 0
    try:
        shared, discord = load_bot_settings(dotenv=args.env_file)
    except SettingsError as error:
        for problem in error.problems:
            print(f"✗ settings: {problem}")
        return 1
    source = f"the environment and {args.env_file}" if args.env_file.is_file() else "the environment"
    print(f"✓ settings: read from {source}")
    for check in (*run_checks(shared), check_token(discord, online=not args.offline)):
        print(check.line())
        failed += not check.ok
    print("all checks passed" if not failed else f"{failed} check(s) failed")
    return 1 if failed else 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.api.serving import run_api

    port = args.port if args.port is not None else settings.api_port or DEFAULT_API_PORT
    return run_api(replace(settings, api_port=port, api_host=args.host or settings.api_host))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.queue.remote.gpu_worker import run_worker

    _quiet(live=sys.stderr.isatty())
    return run_worker(settings)


def cmd_api_key(args: argparse.Namespace, settings: Settings) -> int:
    keys = _app(settings).jobs.keys
    if args.action == "create":
        if not args.name:
            return _fail("api-key create needs a NAME")
        key, secret = keys.create(args.name, guild_id=args.guild, adult=args.adult)
        print(f"API key {key.name} created. Its secret (shown only now, keep it safe):\n\n    {secret}\n")
        print(f"Use it as 'Authorization: Bearer {secret[:10]}…', or as HTTP Basic with the user {key.name}.")
        return 0
    if args.action == "revoke":
        if not args.name:
            return _fail("api-key revoke needs a NAME")
        if not keys.revoke(args.name):
            return _fail(f"no active API key is named {args.name!r}")
        print(f"API key {args.name} revoked: its requests are refused from now on")
        return 0
    listed = keys.list()
    if not listed:
        print("no API keys yet: python main.py api-key create NAME")
    for key in listed:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        guild = f"server {key.guild_id}" if key.guild_id else "no server"
        print(f"{key.name}  {key.prefix}…  {state}, {used}, {guild}{', adult' if key.adult else ''}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings, discord: DiscordSettings) -> int:
    token = discord.require_discord_token()
    from bot.runner import run_bot

    return run_bot(settings, discord, token)


# -- plumbing -------------------------------------------------------------------------------------


def _app(settings: Settings) -> App:
    """The application; the machine-learning libraries are quietened before anything loads them."""
    from pipeline.app import App

    _quiet(live=sys.stderr.isatty())
    return App(settings)


def _quiet(*, live: bool) -> None:
    from pipeline.engine.quiet import quiet_libraries

    quiet_libraries(live=live)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local"


def _fail(message: str, *, code: int = 1) -> int:
    """Say what went wrong on one line of stderr; ``code`` is the exit status."""
    from pipeline.domain.text import one_line

    print(f"error: {one_line(message)}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="nanke: a self-hosted /imagine bot for Discord, and a local Stable Diffusion "
        "command line.",
        epilog="Settings come from the environment and the .env file beside main.py (see .env.example).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO level)")
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        metavar="FILE",
        help=f"read settings from FILE instead of {DEFAULT_ENV_FILE.name} beside main.py",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the Discord bot with the embedded GPU worker",
        description="Run the Discord bot: it loads the default model, upgrades the database, connects "
        "to Discord and answers /imagine with the GPU worker in the same process. It stops "
        "cleanly on Ctrl-C or SIGTERM (the running batch finishes first).",
        epilog="Needs DISCORD_TOKEN. Also read: NANKE_MODEL, NANKE_MODELS_DIR, NANKE_DATA_DIR, "
        "DATABASE_URL, NANKE_DEVICE, NANKE_DTYPE, NANKE_MAX_PIXELS, NANKE_MAX_BATCH, "
        "NANKE_MAX_QUEUED_PER_USER, NANKE_JOB_TIMEOUT, NANKE_UPSCALER, NANKE_SAFETY_CHECKER, NANKE_LOW_VRAM, "
        "NANKE_GUILD_IDS, "
        "NANKE_LOG_LEVEL, NANKE_LOG_FILE (README: Configuration). `main.py doctor` checks them all.",
    )
    run.set_defaults(func=cmd_run, needs_discord=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API (the WebUI's /sdapi/v1 and nanke's /api/v1) with the GPU worker, no Discord",
        description="Serve the HTTP API with the embedded GPU worker; no Discord token is needed. Every "
        "request needs an API key (`main.py api-key create NAME`). It stops cleanly on Ctrl-C or SIGTERM.",
        epilog=f"Listens on NANKE_API_HOST:NANKE_API_PORT (default 127.0.0.1:{DEFAULT_API_PORT}, the WebUI's "
        "port); docs at /docs. Also read: NANKE_API_RATE, NANKE_API_MAX_BODY_MB and the model settings.",
    )
    serve.add_argument("--host", help="the address to listen on (default: NANKE_API_HOST, 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help=f"the port (default: NANKE_API_PORT, else {DEFAULT_API_PORT})"
    )
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="run a GPU worker for a bot on another machine (Celery, through NANKE_BROKER_URL's Redis)",
        description="Load the default model on this machine's GPU, then run the batches the bot's "
        "scheduler sends through Redis, one at a time, until Ctrl-C or SIGTERM (the running batch "
        "finishes first). It needs no database and no Discord token.",
        epilog="Needs NANKE_BROKER_URL (the bot's too). Also read: NANKE_WORKER_NAME (default: the host "
        "name), NANKE_WORKER_TIMEOUT, NANKE_JOB_TIMEOUT and the model settings (README: Scaling out).",
    )
    worker.set_defaults(func=cmd_worker)

    api_key = commands.add_parser(
        "api-key",
        help="create, list or revoke keys of the HTTP API",
        description="Each key is a user of nanke's fair queue; its secret is printed once, at creation, "
        "and only its hash is stored.",
    )
    api_key.add_argument("action", choices=("create", "list", "revoke"))
    api_key.add_argument(
        "name", nargs="?", help="with create and revoke: the key's name (letters, digits, . _ -)"
    )
    api_key.add_argument(
        "--guild",
        type=int,
        metavar="ID",
        help="with create: the Discord server whose rules and prompts it shares",
    )
    api_key.add_argument(
        "--adult", action="store_true", help="with create: judge its prompts as in an age-restricted channel"
    )
    api_key.set_defaults(func=cmd_api_key)

    doctor = commands.add_parser(
        "doctor",
        help="check the set-up: Python, PyTorch and the GPU, data folder, database, token, models, disk",
        description="One line per check, ✓ or ✗ with what to do; exit 1 if any check fails.",
    )
    doctor.add_argument("--offline", action="store_true", help="do not ask Discord whether the token works")
    doctor.set_defaults(func=cmd_doctor, needs_settings=False)

    imagine = commands.add_parser(
        "imagine",
        help="generate images from a prompt without Discord",
        description="Generate images, record the job in the database and write the PNGs.",
        epilog="Flags inside the prompt: --ar W:H, --size WxH, --no WORDS, --seed N, --steps N, --cfg X, "
        "--sampler NAME, --n N, --model NAME, --clip-skip N. "
        'Example: "a red fox in snow --ar 3:2 --seed 7 --n 2"',
    )
    imagine.add_argument("prompt", help="the prompt, with optional --flags inside the quotes")
    _add_output_options(imagine)
    imagine.set_defaults(func=cmd_imagine)

    importer = commands.add_parser(
        "import",
        help="regenerate an AUTOMATIC1111 / civitai image from its embedded parameters",
        description="Read the 'parameters' of a PNG (or the EXIF comment of a JPEG/WebP) "
        "and generate it again.",
    )
    importer.add_argument("file", help="a PNG, JPEG or WebP with A1111 generation parameters")
    _add_output_options(importer)
    importer.set_defaults(func=cmd_import)

    show = commands.add_parser("show", help="print a stored job: its request, status and images")
    show.add_argument("job_id", type=int, help="the job id printed by imagine (or shown in Discord)")
    show.add_argument("--json", action="store_true", help="also print the canonical request JSON")
    show.set_defaults(func=cmd_show)

    reproduce = commands.add_parser(
        "reproduce",
        help="regenerate a job and check every image is pixel-identical",
        description="Regenerate a stored job from its row; exit 0 only if every image matches "
        "the stored one.",
    )
    reproduce.add_argument("job_id", type=int, help="the job to regenerate")
    reproduce.add_argument("--model", help="use this model instead of the stored one (a name or a path)")
    reproduce.set_defaults(func=cmd_reproduce)

    models = commands.add_parser(
        "models",
        help="list the models nanke can find, or download one into the models folder",
        description="List the models (✓ usable, ✗ with why not), or `models fetch HUB_ID` to download a "
        "diffusers model from the Hugging Face Hub into the models folder, so it works offline later.",
    )
    models.add_argument("action", nargs="?", choices=("list", "fetch"), default="list", help="default: list")
    models.add_argument("repo", nargs="?", help="with fetch: the Hub id, such as owner/model")
    models.add_argument("--name", help="with fetch: the folder name in the models folder (default: the id's)")
    models.set_defaults(func=cmd_models)

    make = commands.add_parser(
        "make-test-model",
        help="write a tiny random-weight Stable Diffusion model (for tests and demos: its images are noise)",
    )
    make.add_argument("dir", help="the folder to write the diffusers model to")
    make.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    make.set_defaults(func=cmd_make_test_model, needs_settings=False)

    db = commands.add_parser("db", help="database maintenance")
    db.add_argument(
        "action", choices=("upgrade", "current"), help="upgrade to the latest schema, or show the revision"
    )
    db.set_defaults(func=cmd_db)
    return parser


def _add_output_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--model", help="model name, diffusers folder or .safetensors file (default: NANKE_MODEL)"
    )
    command.add_argument("--out", default="outputs", help="folder to write the PNGs to (default: ./outputs)")
    command.add_argument(
        "--no-grid", action="store_true", help="do not write a grid image for several images"
    )


def _read_settings(args: argparse.Namespace) -> tuple[object, ...]:
    """The settings the command takes after ``args``: the shared ones, and Discord's for ``run``."""
    if not getattr(args, "needs_settings", True):
        return (None,)
    if getattr(args, "needs_discord", False):
        from bot.settings import load_bot_settings

        return load_bot_settings(dotenv=args.env_file)
    from pipeline.settings import load_settings

    return (load_settings(dotenv=args.env_file),)


def _configure_logging(args: argparse.Namespace, settings: Settings | None) -> None:
    """INFO for ``run`` and ``serve`` (or ``-v``), warnings only for the other commands; a file too
    with NANKE_LOG_FILE."""
    serving = args.command in ("run", "serve", "worker")
    level = settings.log_level if settings and (args.verbose or serving) else "WARNING"
    logging.basicConfig(level=logging.INFO if args.verbose else level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    if settings is not None and settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
    # Alembic says what it does on every start; nanke logs an upgrade itself when there is one
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from pipeline.errors import PipelineError
    from pipeline.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        settings = _read_settings(args)
        _configure_logging(args, settings[0])  # type: ignore[arg-type]
    except SettingsError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except OSError as error:  # NANKE_LOG_FILE cannot be written
        return _fail(f"NANKE_LOG_FILE: {error.filename or ''} cannot be written ({error.strerror})", code=2)
    try:
        return args.func(args, *settings)
    except SettingsError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except (PipelineError, ValueError) as error:
        log.debug("command failed", exc_info=True)
        return _fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
