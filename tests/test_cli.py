"""The command line, run as a person runs it: ``python main.py ...`` in a fresh folder, piped output.

Every command starts a Python that imports torch and diffusers (seconds each), so the module runs
all its commands once, side by side, in two waves (the second reads the job the first made), and
each test checks one command's result.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.helpers_services import BATCH_ROUNDING, parameters_of, pixels, seed_in, settings_env

MAIN = Path(__file__).resolve().parents[1] / "main.py"
ISSUE_PROMPT = "a red fox in snow --ar 3:2 --seed 7 --n 2 --steps 2"
UNSET = ("DISCORD_TOKEN", "DATABASE_URL", "TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")
"""Inherited variables that would change what is tested (progress bars must be off by themselves)."""
PARALLEL = 4

BAD_FLAGS = {
    "--ar": ("imagine", "a fox --ar 3x2"),
    "--steps": ("imagine", "a fox --steps 999"),
    "--bogus": ("imagine", "a fox --bogus"),
    "--bogus option": ("imagine", "a fox", "--bogus"),
}
HELP = {
    "": ["run", "imagine", "show", "reproduce", "import", "models", "make-test-model", "db"],
    "run": ["--help"],
    "imagine": ["prompt", "--model", "--out", "--no-grid", "--ar", "--seed"],
    "import": ["file", "--model", "--out", "--no-grid"],
    "show": ["job_id", "--json"],
    "reproduce": ["job_id", "--model"],
    "models": ["--help"],
    "make-test-model": ["dir", "--seed"],
    "db": ["upgrade", "current"],
}

Result = subprocess.CompletedProcess[str]


@dataclass(frozen=True)
class Folder:
    """Where the command line runs: its working folder and settings."""

    cwd: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return Path(self.env["NANKE_DATA_DIR"])

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        return subprocess.run(
            [sys.executable, str(MAIN), *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def stored_jobs(self) -> list[str]:
        """The statuses of the jobs in the folder's database, oldest first."""
        database = self.data_dir / "nanke.db"
        if not database.exists():
            return []
        with closing(sqlite3.connect(database)) as connection:
            return [status for (status,) in connection.execute("SELECT status FROM jobs ORDER BY id")]


def folder_at(cwd: Path, model_dir: Path) -> Folder:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NANKE_") and name not in UNSET
    }
    return Folder(cwd, {**inherited, **settings_env(cwd / "data", model_dir)})


@dataclass(frozen=True)
class Command:
    folder: Folder
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def run_side_by_side(commands: Mapping[str, Command]) -> dict[str, Result]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        running = {
            name: pool.submit(command.folder.run, *command.args, env=command.env)
            for name, command in commands.items()
        }
        return {name: future.result() for name, future in running.items()}


@dataclass(frozen=True)
class Session:
    """The folders the module's commands ran in, and every command's result by name."""

    issue: Folder
    """The issue's ``imagine``, then ``show``, ``reproduce`` and ``import`` of its job."""
    mistakes: Folder
    """Bad flags, a bad setting, ``run`` without a token: nothing may be stored here."""
    empty: Folder
    """``db upgrade`` on an empty data folder."""
    missing: Folder
    """``imagine`` with a model that does not exist."""
    maker: Folder
    """``make-test-model``."""
    civitai: Folder
    """``import`` of a WebUI PNG with a LoRA, an embedding, a VAE and the hires fix, then ``reproduce``."""
    results: dict[str, Result]

    @property
    def out(self) -> Path:
        return self.issue.cwd / "out"

    @property
    def imported(self) -> Path:
        return self.issue.cwd / "imported"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Session:
    names = ("issue", "mistakes", "empty", "missing", "maker", "civitai")
    folders = {name: folder_at(tmp_path_factory.mktemp(name), tiny_model_dir) for name in names}
    issue, mistakes = folders["issue"], folders["mistakes"]
    civitai_png = webui_install(folders["civitai"], tiny_model_dir)
    out, imported = issue.cwd / "out", issue.cwd / "imported"
    first: dict[str, Command] = {
        "imagine": Command(
            issue, ("imagine", ISSUE_PROMPT, "--model", str(tiny_model_dir), "--out", str(out))
        ),
        "make-test-model": Command(folders["maker"], ("make-test-model", "models/tiny")),
        "missing model": Command(
            folders["missing"], ("imagine", "a fox --size 64x64 --steps 1", "--model", "no-such-model")
        ),
        "db upgrade": Command(folders["empty"], ("db", "upgrade")),
        "civitai import": Command(folders["civitai"], ("import", str(civitai_png), "--out", "out")),
        "run": Command(mistakes, ("run",)),
        "bad setting": Command(mistakes, ("db", "upgrade"), {"NANKE_DEVICE": "gpu"}),
        **{f"flag {flag}": Command(mistakes, (*args, "--out", "out")) for flag, args in BAD_FLAGS.items()},
        **{f"help {name}": Command(mistakes, (*name.split(), "--help")) for name in HELP},
    }
    results = run_side_by_side(first)
    second = {
        "show": Command(issue, ("show", "1", "--json")),
        "reproduce": Command(issue, ("reproduce", "1")),
        "import": Command(issue, ("import", str(out / "nanke-1-2-8.png"), "--out", str(imported))),
        "db current": Command(folders["empty"], ("db", "current")),
        "civitai reproduce": Command(folders["civitai"], ("reproduce", "1")),
    }
    results.update(run_side_by_side(second))
    return Session(**folders, results=results)


def webui_install(folder: Folder, model_dir: Path) -> Path:
    """LoRA, embedding and VAE files in the WebUI's folders under ``data/models``, and a PNG whose
    infotext calls on them by other names (as a civitai download does): they are found by hash."""
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    from pipeline.domain.metadata import write_png
    from pipeline.domain.models.hashing import sha256_file, tensors_sha256
    from pipeline.engine.testmodel import make_test_embedding, make_test_lora, make_test_vae

    pipe = StableDiffusionPipeline.from_pretrained(model_dir)
    models = folder.data_dir / "models"
    lora = make_test_lora(models / "Lora" / "detail.safetensors", pipe)
    embedding = make_test_embedding(models / "embeddings" / "easyneg.safetensors", pipe)
    vae = make_test_vae(models / "VAE" / "mse.safetensors", pipe)
    infotext = (
        "a lighthouse, <lora:add_detail:0.8>\n"
        "Negative prompt: easynegative, blurry\n"
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, "
        f"Model: {model_dir.name}, Denoising strength: 0.5, Hires upscale: 2, Hires steps: 4, "
        f'Hires upscaler: Latent, Lora hashes: "add_detail: {tensors_sha256(lora)[:12]}", '
        f'TI hashes: "easynegative: {sha256_file(embedding)[:12]}", VAE hash: {sha256_file(vae)[:10]}, '
        "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Version: v1.10.1"
    )
    png = folder.cwd / "civitai.png"
    png.write_bytes(write_png(Image.new("RGB", (64, 64), "gray"), infotext))
    return png


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


def assert_no_terminal_codes(result: Result) -> None:
    for text in (result.stdout, result.stderr):
        assert "\r" not in text and "\x1b[" not in text, text


# -- the issue's example: imagine, then show, reproduce and import its job ------------------------


def test_imagine_writes_the_images_and_says_where(session: Session) -> None:
    result, out = session.results["imagine"], session.out
    assert result.returncode == 0, result.stderr
    assert_no_terminal_codes(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("job 1: 2 image(s) in ")
    assert lines[1:] == [
        f"{out / 'nanke-1-1-7.png'}\tseed 7",
        f"{out / 'nanke-1-2-8.png'}\tseed 8",
        f"{out / 'nanke-1-grid.png'}\tgrid",
    ]
    for name, seed in (("nanke-1-1-7.png", 7), ("nanke-1-2-8.png", 8), ("nanke-1-grid.png", 7)):
        parameters = parameters_of((out / name).read_bytes())
        assert seed_in(parameters) == seed
        assert parameters.startswith("a red fox in snow\n")
        assert "Steps: 2," in parameters
    assert pixels((out / "nanke-1-1-7.png").read_bytes()).shape == (512, 768, 3)
    assert session.issue.stored_jobs()[0] == "done"


def test_show_prints_the_stored_job(session: Session) -> None:
    result = session.results["show"]
    assert result.returncode == 0, result.stderr
    assert "job 1 (imagine)" in result.stdout and ": done" in result.stdout
    assert "prompt:    a red fox in snow" in result.stdout
    assert "768x512, 2 steps, Euler a, CFG 7, seed 7, 2 image(s)" in result.stdout
    assert "seed 8\t768x512" in result.stdout
    assert '"seed":7' in result.stdout


def test_reproduce_regenerates_every_pixel(session: Session) -> None:
    result = session.results["reproduce"]
    assert result.returncode == 0, result.stderr
    assert "image 1 (seed 7): identical" in result.stdout
    assert "image 2 (seed 8): identical" in result.stdout
    assert_no_terminal_codes(result)


def test_import_of_an_imagined_png_makes_the_same_image(session: Session) -> None:
    result, out = session.results["import"], session.imported
    assert result.returncode == 0, result.stderr
    assert f"{out / 'nanke-2-1-8.png'}\tseed 8" in result.stdout.splitlines()
    made = (out / "nanke-2-1-8.png").read_bytes()
    source = (session.out / "nanke-1-2-8.png").read_bytes()
    assert parameters_of(made) == parameters_of(source)
    # Made alone instead of second of two: equal up to the engine's batch-size rounding
    difference = np.abs(pixels(made).astype(np.int16) - pixels(source).astype(np.int16))
    assert difference.max() <= BATCH_ROUNDING


def test_a_civitai_png_imports_with_its_lora_embedding_vae_and_hires_fix(session: Session) -> None:
    result = session.results["civitai import"]
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr, result.stderr
    made = session.civitai.cwd / "out" / "nanke-1-1-5.png"
    parameters = parameters_of(made.read_bytes())
    assert parameters.startswith("a lighthouse, <lora:detail:0.8>\nNegative prompt: easyneg, blurry\n")
    written = ('Lora hashes: "detail: ', 'TI hashes: "easyneg: ', "VAE hash: ", "VAE: mse.safetensors")
    written += ("Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent", "Schedule type: Karras")
    for pair in written:
        assert pair in parameters
    assert pixels(made.read_bytes()).shape == (128, 128, 3)
    reproduced = session.results["civitai reproduce"]
    assert reproduced.returncode == 0, reproduced.stderr
    assert "image 1 (seed 5): identical" in reproduced.stdout


# -- mistakes get one clear line ------------------------------------------------------------------


@pytest.mark.parametrize("flag", BAD_FLAGS)
def test_a_bad_flag_is_named_and_no_job_is_made(session: Session, flag: str) -> None:
    result = session.results[f"flag {flag}"]
    assert result.returncode != 0
    [line] = error_lines(result)
    assert flag.split()[0] in line
    assert "Traceback" not in result.stderr
    assert session.mistakes.stored_jobs() == []
    assert not (session.mistakes.cwd / "out").exists()


def test_run_without_a_token_says_how_to_set_one(session: Session) -> None:
    result = session.results["run"]
    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: DISCORD_TOKEN: not set")
    assert "DISCORD_TOKEN=<token>" in line and ".env" in line


def test_a_bad_setting_is_named(session: Session) -> None:
    result = session.results["bad setting"]
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "error: NANKE_DEVICE: 'gpu' is not one of auto, cuda, cuda:N, mps, cpu"
    ]


def test_a_missing_model_is_refused_without_leaving_a_job(session: Session) -> None:
    result = session.results["missing model"]
    assert result.returncode != 0
    [line] = error_lines(result)
    assert line.startswith("error: model 'no-such-model' not found") and "available: tiny-sd" in line
    assert session.missing.stored_jobs() == [], "nothing is stored for a model that is not there"


# -- set-up commands ------------------------------------------------------------------------------


def test_db_upgrade_on_an_empty_data_folder(session: Session) -> None:
    result = session.results["db upgrade"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database at revision ")
    assert (session.empty.data_dir / "nanke.db").is_file()
    current = session.results["db current"]
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() and current.stdout.strip() in result.stdout


def test_make_test_model_writes_a_model(session: Session) -> None:
    result = session.results["make-test-model"]
    assert result.returncode == 0, result.stderr
    assert_no_terminal_codes(result)
    assert (session.maker.cwd / "models" / "tiny" / "model_index.json").is_file()
    assert "models/tiny" in result.stdout


@pytest.mark.parametrize("command", HELP)
def test_help(session: Session, command: str) -> None:
    result = session.results[f"help {command}"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: main.py")
    for word in HELP[command]:
        assert word in result.stdout, word


# -- in this process: a job is never left queued or running when the command stops ---------------


def _in_folder(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Folder:
    folder = folder_at(tmp_path, tiny_model_dir)
    for name in [name for name in os.environ if name.startswith("NANKE_") or name in UNSET]:
        monkeypatch.delenv(name)
    for name, value in folder.env.items():
        monkeypatch.setenv(name, value)
    return folder


@pytest.mark.parametrize(
    "raised",
    [
        pytest.param(OSError("model.safetensors: Input/output error"), id="error"),
        pytest.param(KeyboardInterrupt(), id="interrupted"),
    ],
)
def test_imagine_stores_no_job_when_loading_the_model_breaks(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException
) -> None:
    import main
    from pipeline.engine.pool import EnginePool

    folder = _in_folder(tmp_path, tiny_model_dir, monkeypatch)

    def engine_for(self: EnginePool, model: str | None) -> None:
        raise raised

    monkeypatch.setattr(EnginePool, "engine_for", engine_for)
    if isinstance(raised, Exception):
        with pytest.raises(type(raised)):
            main.main(["imagine", "a fox --size 64x64 --steps 1", "--out", str(tmp_path / "out")])
    else:
        assert main.main(["imagine", "a fox --size 64x64 --steps 1", "--out", str(tmp_path / "out")]) == 130

    assert folder.stored_jobs() == [], "the model is loaded before a job is stored"


def test_an_interrupted_imagine_cancels_its_running_job(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import main
    from pipeline.engine.core import Engine

    folder = _in_folder(tmp_path, tiny_model_dir, monkeypatch)

    def generate(self: Engine, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while it generates

    monkeypatch.setattr(Engine, "generate", generate)
    assert main.main(["imagine", "a fox --size 64x64 --steps 1", "--out", str(tmp_path / "out")]) == 130

    assert folder.stored_jobs() == ["cancelled"], "not left running for the bot to find"
