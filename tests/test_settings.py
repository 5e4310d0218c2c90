"""Settings: defaults, every variable, one clear line per bad value."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.settings import load_bot_settings
from pipeline.app import App
from pipeline.settings import DEFAULT_MODEL, SettingsError, load_settings


def test_defaults(tmp_path: Path) -> None:
    settings, discord = load_bot_settings({"NANKE_DATA_DIR": str(tmp_path)})
    assert settings.model == DEFAULT_MODEL
    assert settings.database_url == f"sqlite:///{tmp_path.as_posix()}/nanke.db"
    assert settings.device == "auto" and settings.dtype == "auto"
    assert discord.discord_token is None
    assert settings.models_dir is None
    assert settings.image_dir == tmp_path / "images"


def test_every_variable_is_read(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    settings, discord = load_bot_settings(
        {
            "NANKE_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://db/nanke",
            "NANKE_MODEL": "/srv/model.safetensors",
            "NANKE_MODELS_DIR": str(models),
            "NANKE_DEVICE": "cuda:1",
            "NANKE_DTYPE": "BF16",
            "NANKE_MAX_PIXELS": "262_144",
            "NANKE_MAX_BATCH": "8",
            "NANKE_MAX_QUEUED_PER_USER": "5",
            "NANKE_LOW_VRAM": "yes",
            "DISCORD_TOKEN": "abc",
            "DISCORD_API_BASE": "http://127.0.0.1:9999/api/v10",
            "DISCORD_GATEWAY_URL": "ws://127.0.0.1:9999/gateway",
            "NANKE_GUILD_IDS": "1, 2",
            "NANKE_LOG_LEVEL": "debug",
        }
    )
    assert settings.database_url == "postgresql://db/nanke"
    assert settings.models_dir == models
    assert (settings.device, settings.dtype) == ("cuda:1", "bf16")
    assert (settings.max_pixels, settings.max_batch, settings.max_queued_per_user) == (262_144, 8, 5)
    assert settings.low_vram is True
    assert discord.require_discord_token() == "abc"
    assert discord.guild_ids == (1, 2)
    assert settings.log_level == "DEBUG"
    assert "abc" not in repr(settings) + repr(discord)


def test_models_dir_defaults_to_data_models_when_present(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    assert load_settings({"NANKE_DATA_DIR": str(tmp_path)}).models_dir == tmp_path / "models"


def test_every_problem_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_bot_settings(
            {
                "NANKE_DATA_DIR": str(tmp_path),
                "NANKE_DEVICE": "gpu",
                "NANKE_DTYPE": "half",
                "NANKE_MAX_BATCH": "many",
                "NANKE_MAX_PIXELS": "10",
                "DISCORD_API_BASE": "discord.com",
                "NANKE_GUILD_IDS": "12,abc",
                "NANKE_MODELS_DIR": str(tmp_path / "missing"),
            }
        )
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "NANKE_MODELS_DIR",
        "NANKE_DEVICE",
        "NANKE_DTYPE",
        "NANKE_MAX_PIXELS",
        "NANKE_MAX_BATCH",
        "DISCORD_API_BASE",
        "NANKE_GUILD_IDS",
    ]
    assert all("\n" not in p for p in problems)


def test_missing_token_says_how_to_set_it(tmp_path: Path) -> None:
    _, discord = load_bot_settings({"NANKE_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match=r"DISCORD_TOKEN: not set.*developers/applications"):
        discord.require_discord_token()


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("NANKE_MODEL=from-dotenv\nNANKE_DEVICE=cpu\n", encoding="utf-8")
    monkeypatch.setenv("NANKE_DEVICE", "mps")
    monkeypatch.delenv("NANKE_MODEL", raising=False)
    monkeypatch.setenv("NANKE_DATA_DIR", str(tmp_path))
    settings = load_settings(dotenv=env)
    assert settings.model == "from-dotenv"
    assert settings.device == "mps"


def test_a_database_url_is_checked_and_its_password_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as where the [postgres] extra is not installed
    with pytest.raises(SettingsError) as caught:
        load_settings({"NANKE_DATA_DIR": str(tmp_path), "DATABASE_URL": "garbage"})
    [problem] = caught.value.problems
    assert problem.startswith("DATABASE_URL: 'garbage' is not a database URL")
    settings = load_settings(
        {"NANKE_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgresql+psycopg://me:s3cret@db/n"}
    )
    with pytest.raises(SettingsError) as caught:
        App(settings).store  # noqa: B018 (opening it is the check)
    [problem] = caught.value.problems
    assert problem.startswith("DATABASE_URL: ") and "[postgres]" in problem
    assert "s3cret" not in problem and "***" in problem
    assert load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "NANKE_DATA_DIR": str(tmp_path)})


def test_a_data_dir_that_is_a_file_is_one_problem(tmp_path: Path) -> None:
    a_file = tmp_path / "data"
    a_file.write_text("not a folder")
    with pytest.raises(SettingsError) as caught:
        load_settings({"NANKE_DATA_DIR": str(a_file)})
    assert caught.value.problems == [f"NANKE_DATA_DIR: {str(a_file)!r} is a file, not a folder"]
