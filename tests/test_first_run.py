"""The first run, as an admin meets it: ``main.py run`` refuses a broken set-up with one line and
exit status 2 before it touches Discord, ``doctor`` names each problem, Discord being unreachable
is waited out, and the commands that only read stay fast and quiet."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.discord_double import DiscordDouble
from tests.discord_double.client import DEFAULT_TOKEN
from tests.helpers_process import start_process, stop_process

pytest_plugins = ["tests.discord_double.fixtures"]

MAIN = Path(__file__).resolve().parents[1] / "main.py"
UNSET = ("DISCORD_TOKEN", "DATABASE_URL", "NANKE_MODEL", "NANKE_MODELS_DIR", "NANKE_LOG_FILE")
NOISE = ("PyNaCl", "davey", "torchvision", "Context impl", "Will assume", "Traceback", "it/s]")


def main_py(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if name not in UNSET}
    return subprocess.run(
        [sys.executable, str(MAIN), *args],
        cwd=cwd,
        env={**clean, "HF_HUB_OFFLINE": "1", "NANKE_DEVICE": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, dict[str, str]]:
    """Settings an admin gets wrong, by what they break."""
    root = tmp_path_factory.mktemp("broken")
    junk = root / "junk.safetensors"
    junk.write_bytes(b"this is not a checkpoint" * 100)
    a_file = root / "a-file"
    a_file.write_text("not a folder")
    good = {"NANKE_DATA_DIR": str(root / "data"), "NANKE_MODEL": str(tiny_model_dir)}
    return {
        "NANKE_MODEL": {**good, "NANKE_MODEL": str(root / "no-such-model")},
        "NANKE_MODEL junk": {**good, "NANKE_MODEL": str(junk)},
        "NANKE_MODEL hub": {**good, "NANKE_MODEL": "nobody/not-downloaded"},
        "NANKE_DATA_DIR": {**good, "NANKE_DATA_DIR": "/proc/nanke"},
        "NANKE_DATA_DIR file": {**good, "NANKE_DATA_DIR": str(a_file)},
        "DATABASE_URL": {**good, "DATABASE_URL": "garbage"},
        "DATABASE_URL driver": {**good, "DATABASE_URL": "postgresql+psycopg://nanke:s3cret@db/nanke"},
        "NANKE_SAFETY_CHECKER": {**good, "NANKE_SAFETY_CHECKER": str(root / "no-such-checker")},
        "NANKE_SAFETY_CHECKER hub": {**good, "NANKE_SAFETY_CHECKER": "nobody/no-such-checker"},
    }


@pytest.mark.slow
def test_run_stops_with_one_line_naming_the_setting(
    broken: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    env = {"DISCORD_TOKEN": DEFAULT_TOKEN, "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10"}

    def attempt(case: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        return case, main_py("run", cwd=tmp_path, env={**env, **broken[case]})

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(attempt, broken))
    for case, result in results.items():
        setting = case.split()[0]
        said = lines(result.stderr)
        assert result.returncode == 2, (case, result.stderr)
        assert len(said) == 1 and setting in said[0], (case, result.stderr)
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
        assert "cannot reach Discord" not in result.stderr, "it stopped before trying Discord"


@pytest.mark.slow
def test_doctor_names_each_problem_with_a_fix(broken: dict[str, dict[str, str]], tmp_path: Path) -> None:
    def doctor(case: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        return case, main_py("doctor", "--offline", cwd=tmp_path, env=broken[case])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(
            pool.map(doctor, ["NANKE_MODEL", "NANKE_MODEL junk", "NANKE_DATA_DIR", "DATABASE_URL"])
        )
    for case, result in results.items():
        failed = [line for line in lines(result.stdout) if line.startswith("✗")]
        assert result.returncode == 1, (case, result.stdout, result.stderr)
        assert failed, (case, result.stdout)
        assert "Traceback" not in result.stdout + result.stderr
    assert any("→" in line for line in lines(results["NANKE_MODEL"].stdout) if line.startswith("✗"))
    assert any("DATABASE_URL" in line for line in lines(results["DATABASE_URL"].stdout))


@pytest.mark.slow
def test_doctor_passes_a_good_setup(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = main_py(
        "doctor",
        "--offline",
        cwd=tmp_path,
        env={
            "NANKE_DATA_DIR": str(tmp_path / "data"),
            "NANKE_MODEL": str(tiny_model_dir),
            "DISCORD_TOKEN": "x",
        },
    )
    assert result.returncode == 0, result.stdout
    assert all(line.startswith("✓") for line in lines(result.stdout)[:-1]), result.stdout
    assert lines(result.stdout)[-1] == "all checks passed"


@pytest.mark.slow
def test_an_env_file_elsewhere_and_commands_that_only_read_load_no_torch(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    settings = tmp_path / "nanke.env"
    settings.write_text(
        f"NANKE_DATA_DIR={tmp_path / 'data'}\nNANKE_MODEL={tiny_model_dir}\n", encoding="utf-8"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    upgraded = main_py("--env-file", str(settings), "db", "upgrade", cwd=elsewhere, env={})
    assert upgraded.returncode == 0 and str(tmp_path / "data") in upgraded.stdout, upgraded.stderr
    probe = (
        "import runpy, sys\n"
        "main = sys.argv[1]\n"
        "sys.argv = ['main.py', '--env-file', sys.argv[2], 'models']\n"
        "try:\n    runpy.run_path(main, run_name='__main__')\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch', code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(MAIN), str(settings)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip().endswith("no torch 0"), done.stdout + done.stderr
    assert tiny_model_dir.name in done.stdout


@pytest.mark.slow
async def test_run_waits_for_an_unreachable_discord_then_serves_quietly(
    discord_double: DiscordDouble, tmp_path: Path, tiny_model_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "bot.log"
    env = {
        **os.environ,
        "NANKE_DATA_DIR": str(data_dir),
        "NANKE_MODEL": str(tiny_model_dir),
        "NANKE_DEVICE": "cpu",
    }
    unreachable = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MAIN),
        "run",
        cwd=tmp_path,
        env={**env, "DISCORD_TOKEN": DEFAULT_TOKEN, "DISCORD_API_BASE": "http://127.0.0.1:9/api/v10"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        first = await asyncio.wait_for(_line_with(unreachable, "cannot reach Discord"), timeout=120)
        assert "trying again in 5 s" in first
    finally:
        unreachable.terminate()
        await unreachable.wait()

    process = await start_process(discord_double, data_dir, tiny_model_dir, log=log)
    await stop_process(process)
    said = log.read_text(encoding="utf-8")
    assert "model tiny-sd is ready" in said
    assert not [noise for noise in NOISE if noise in said], said


async def _line_with(process: asyncio.subprocess.Process, text: str) -> str:
    assert process.stdout is not None
    while True:
        raw = await process.stdout.readline()
        if not raw:
            raise AssertionError(f"the process ended without saying {text!r}")
        line = raw.decode()
        assert "Traceback" not in line
        if text in line:
            return line
