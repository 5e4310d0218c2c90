"""The WebUI 1.9+ schedule type in the infotext, and which last line is the settings line."""

from __future__ import annotations

import time

import pytest

from pipeline.domain.metadata import format_infotext, parse_infotext
from pipeline.domain.metadata.infotext import MAX_JSON_FAILURES, parse_settings_line
from pipeline.domain.request import GenerationRequest
from pipeline.domain.samplers import (
    SAMPLER_NAMES,
    SAMPLERS,
    automatic_sampler,
    build_scheduler,
    canonical_sampler,
    means_automatic,
    split_sampler,
    webui_version,
)
from pipeline.errors import InvalidRequest

WEBUI_110 = "Steps: 20, Sampler: {sampler}, CFG scale: 7, Seed: 5, Size: 512x512{version}"


def _webui_text(sampler: str, version: str | None) -> str:
    shown = "" if version is None else f", Version: {version}"
    return "a fox\n" + WEBUI_110.format(sampler=sampler, version=shown)


# -- the samplers' names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_split_and_fold_are_each_others_inverse(name: str) -> None:
    sampler, schedule = split_sampler(name)
    assert canonical_sampler(sampler, schedule) == name
    assert schedule in ("Uniform", "Automatic", "Karras", "Exponential")
    assert not sampler.endswith((" Karras", " Exponential"))


def test_schedule_types_nanke_writes() -> None:
    assert split_sampler("dpm++ 2m karras") == ("DPM++ 2M", "Karras")
    assert split_sampler("DPM++ 2M") == ("DPM++ 2M", "Uniform")
    assert split_sampler("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_sampler("Euler a") == ("Euler a", "Uniform")
    assert [split_sampler(name)[1] for name in ("DDIM", "PLMS", "UniPC")] == ["Automatic"] * 3
    with pytest.raises(InvalidRequest, match="sampler"):
        split_sampler("Restart")


def test_unknown_schedule_type_is_an_error_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        canonical_sampler("Euler", "SGM Uniform")
    assert caught.value.field == "schedule type"


def test_sampler_count_fits_discords_choices() -> None:
    assert len(SAMPLER_NAMES) <= 25


def test_automatic_follows_the_webui() -> None:
    assert automatic_sampler("DPM++ 2M") == "DPM++ 2M Karras"
    assert automatic_sampler("DPM++ SDE") == "DPM++ SDE Karras"
    assert automatic_sampler("DPM++ 2M SDE") == "DPM++ 2M SDE Exponential"
    for name in ("Euler", "Euler a", "DDIM", "UniPC", "DPM++ 2M SDE Karras", "DPM++ 2M Karras"):
        assert automatic_sampler(name) == name


@pytest.mark.parametrize(
    ("version", "found"),
    [
        ("v1.10.1", (1, 10)),
        ("v1.9.4", (1, 9)),
        ("f2.0.1v1.10.1-previous-669-gdfdcbab6", (1, 10)),
        ("f1.7.0-v1.10.1RC-latest-2146-g4d7d3b5c", (1, 10)),
        ("v1.8.0", (1, 8)),
        ("nanke 0.1.0", None),
        ("v" + "9" * 5000 + ".1", None),
        ("", None),
        (None, None),
    ],
)
def test_webui_version(version: str | None, found: tuple[int, int] | None) -> None:
    assert webui_version(version) == found


@pytest.mark.parametrize(
    ("schedule", "version", "automatic"),
    [
        (None, "v1.10.1", True),
        ("  ", "v1.9.0", True),
        (None, "v1.8.0", False),
        (None, "nanke 0.1.0", False),
        (None, None, False),
        ("Automatic", None, True),
        ("Uniform", "v1.10.1", False),
        ("Karras", "v1.10.1", False),
    ],
)
def test_means_automatic(schedule: str | None, version: str | None, automatic: bool) -> None:
    assert means_automatic(schedule, version) is automatic


def test_the_exponential_sampler_builds_and_steps() -> None:
    import torch
    from diffusers import DPMSolverMultistepScheduler

    base = DPMSolverMultistepScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    scheduler = build_scheduler("DPM++ 2M SDE Exponential", base.config)
    assert SAMPLERS["DPM++ 2M SDE Exponential"].options == {
        "algorithm_type": "sde-dpmsolver++",
        "use_exponential_sigmas": True,
    }
    assert scheduler.config.use_exponential_sigmas and scheduler.config.algorithm_type == "sde-dpmsolver++"
    scheduler.set_timesteps(4)
    noise = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    for timestep in scheduler.timesteps:
        sample = scheduler.step(sample * 0.1, timestep, sample, generator=noise).prev_sample
    assert torch.isfinite(sample).all()


# -- writing and reading back ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_round_trips_through_the_infotext(name: str) -> None:
    request = GenerationRequest("a fox", sampler=name, seed=3)
    text = format_infotext(
        request, seed=3, model_name=None, model_hash=None, extra={"Version": "nanke 0.1.0"}
    )
    sampler, schedule = split_sampler(name)
    assert f"Sampler: {sampler}, Schedule type: {schedule}, CFG scale:" in text
    assert parse_infotext(text).request.sampler == name


def test_a_webui_text_without_version_round_trips_too() -> None:
    for name in SAMPLER_NAMES:
        text = format_infotext(
            GenerationRequest("a fox", sampler=name), seed=1, model_name=None, model_hash=None
        )
        assert "Schedule type: " in text
        assert parse_infotext(text + ", Version: v1.10.1").request.sampler == name


@pytest.mark.parametrize(
    ("sampler", "version", "runs"),
    [
        ("DPM++ 2M", "v1.10.1", "DPM++ 2M Karras"),
        ("DPM++ 2M", "f2.0.1v1.10.1-previous-669-gdfdcbab6", "DPM++ 2M Karras"),
        ("DPM++ SDE", "v1.9.4", "DPM++ SDE Karras"),
        ("DPM++ 2M SDE", "v1.10.1", "DPM++ 2M SDE Exponential"),
        ("Euler", "v1.10.1", "Euler"),
        ("DPM++ 2M Karras", "v1.10.1", "DPM++ 2M Karras"),
        ("DPM++ 2M", "v1.6.0", "DPM++ 2M"),
        ("DPM++ 2M", "v1.8.0", "DPM++ 2M"),
        ("DPM++ 2M", None, "DPM++ 2M"),
        ("DPM++ 2M", "nanke 0.1.0", "DPM++ 2M"),
        ("DPM++ 2M", "SD.Next 2a1b3c4", "DPM++ 2M"),
    ],
)
def test_a_missing_schedule_type_follows_the_writers_version(
    sampler: str, version: str | None, runs: str
) -> None:
    parsed = parse_infotext(_webui_text(sampler, version))
    assert parsed.request.sampler == runs
    assert parsed.unsupported == []


def test_an_explicit_automatic_schedule_is_the_webuis_automatic() -> None:
    parsed = parse_infotext("a fox\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Automatic, Seed: 5")
    assert parsed.request.sampler == "DPM++ 2M Karras"
    parsed = parse_infotext("a fox\nSteps: 20, Sampler: DPM++ 2M SDE, Schedule type: Exponential, Seed: 5")
    assert parsed.request.sampler == "DPM++ 2M SDE Exponential"


def test_a_schedule_nanke_lacks_keeps_the_plain_sampler_with_a_note() -> None:
    parsed = parse_infotext("a fox\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Exponential, Seed: 5")
    assert parsed.request.sampler == "DPM++ 2M"
    assert any("Schedule type: Exponential" in note for note in parsed.unsupported)


# -- the settings line ----------------------------------------------------------------------------


def test_a_settings_line_without_steps_is_read_as_settings() -> None:
    parsed = parse_infotext("a fox in the snow\nSampler: Euler, CFG scale: 7, Seed: 5, Size: 512x512")
    request = parsed.request
    assert (request.seed, request.width, request.height, request.cfg_scale) == (5, 512, 512, 7.0)
    assert request.sampler == "Euler"
    assert parsed.prompt == request.prompt == "a fox in the snow"
    assert parsed.settings["Seed"] == "5"


def test_three_pairs_make_a_settings_line() -> None:
    parsed = parse_infotext("a fox\nNegative prompt: blur\nSeed: 5, Size: 512x512, CFG scale: 7")
    assert (parsed.prompt, parsed.negative_prompt, parsed.request.seed) == ("a fox", "blur", 5)


@pytest.mark.parametrize("line", ["Seed: 5, Size: 640x640", "Steps: 30, Seed: 5", "style: anime"])
def test_a_last_line_of_fewer_than_three_pairs_stays_prompt_text(line: str) -> None:
    parsed = parse_infotext(f"a fox\n{line}")
    assert parsed.prompt == f"a fox\n{line}"
    assert parsed.settings == {}
    assert (parsed.request.seed, parsed.request.width, parsed.request.steps) == (None, 512, 20)


@pytest.mark.parametrize(
    "line",
    ["k: [0, " * 40_000, 'k: {"a": 1, ' * 40_000, 'k: "x, ' * 40_000, "k: v, " * 40_000, "," * 200_000],
    ids=["broken-arrays", "broken-objects", "broken-strings", "pairs", "commas"],
)
def test_telling_the_settings_line_apart_takes_linear_time(line: str) -> None:
    started = time.perf_counter()
    parse_infotext(f"a fox\n{line}")
    assert time.perf_counter() - started < 1.0, "quadratic reading is back"


def test_json_values_after_many_broken_ones_are_read_as_plain_text() -> None:
    broken = ", ".join(f"Broken {n}: [0" for n in range(MAX_JSON_FAILURES))
    settings = parse_settings_line(f'Good: "a, b", {broken}, Late: "c, d", Last: 1')
    assert settings["Good"] == "a, b" and settings["Broken 0"] == "[0"
    assert settings["Late"] == '"c' and settings["Last"] == "1"
