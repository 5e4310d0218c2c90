"""Midjourney-style flags in /imagine text (pipeline.domain.prompt.flags)."""

from __future__ import annotations

import pytest

from pipeline.domain.prompt.flags import KNOWN_FLAGS, ParsedPrompt, parse_prompt, size_for_aspect
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest


def request(text: str, **defaults: object) -> GenerationRequest:
    base = GenerationRequest(prompt="", **defaults) if defaults else None  # type: ignore[arg-type]
    return parse_prompt(text, defaults=base).request


def error(text: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_prompt(text)
    return caught.value


def test_plain_text_is_the_prompt_with_whitespace_normalised() -> None:
    parsed = parse_prompt("  a   red\tfox \n on a hill ")
    assert parsed == ParsedPrompt(GenerationRequest(prompt="a red fox on a hill"), private=False)


def test_every_flag() -> None:
    parsed = parse_prompt(
        "a fox --ar 3:2 --no trees --seed 7 --steps 30 --cfg 6.5 --sampler euler a --n 3 "
        "--model dreamshaper --clip-skip 2 --private"
    )
    assert parsed.private is True
    assert parsed.request == GenerationRequest(
        prompt="a fox",
        negative_prompt="trees",
        width=768,
        height=512,
        seed=7,
        steps=30,
        cfg_scale=6.5,
        sampler="Euler a",
        count=3,
        model="dreamshaper",
        clip_skip=2,
    )
    assert parsed.request.validate() == parsed.request


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("x --guidance 4", "cfg_scale", 4.0),
        ("x --cfg 12", "cfg_scale", 12.0),
        ("x --count 2", "count", 2),
        ("x --clipskip 3", "clip_skip", 3),
        ("x --size 640x384", "width", 640),
        ("x --size 640×384", "height", 384),
        ("x --seed -1", "seed", None),
        ("x --seed 4294967295", "seed", 4294967295),
        ("x --aspect 2:3", "height", 768),
        ("x --model my model v2", "model", "my model v2"),
        ('x --model "my model" --n 2', "model", "my model"),
    ],
)
def test_flag_values_and_aliases(text: str, field: str, value: object) -> None:
    assert getattr(request(text), field) == value


@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        ("1:1", (512, 512)),
        ("3:2", (768, 512)),
        ("2:3", (512, 768)),
        ("16:9", (912, 512)),
        ("9:16", (512, 912)),
        ("4:3", (680, 512)),
        ("21:9", (1192, 512)),
        ("4:1", (2048, 512)),
        ("6:4", (768, 512)),
    ],
)
def test_aspect_ratio_keeps_the_short_side(ratio: str, size: tuple[int, int]) -> None:
    parsed = request(f"x --ar {ratio}")
    assert (parsed.width, parsed.height) == size
    assert parsed.validate() is not None


def test_aspect_ratio_follows_the_defaults_short_side() -> None:
    parsed = request("x --ar 16:9", width=1024, height=1024)
    assert (parsed.width, parsed.height) == (1824, 1024)
    assert size_for_aspect(3, 2, short_side=768) == (1152, 768)


def test_sampler_is_multi_word_quoted_or_not_and_canonical() -> None:
    assert request("x --sampler DPM++ 2M Karras --seed 1").sampler == "DPM++ 2M Karras"
    assert request('x --sampler "dpm++ 2m karras" --seed 1').sampler == "DPM++ 2M Karras"
    quoted = request("x --sampler “DPM++ 2M Karras” on a hill")
    assert (quoted.sampler, quoted.prompt) == ("DPM++ 2M Karras", "x on a hill")


def test_negative_takes_words_until_the_next_flag_and_repeats_join() -> None:
    parsed = request("castle --no trees, people --seed 3 --no (blurry:1.2) text")
    assert parsed.negative_prompt == "trees, people, (blurry:1.2) text"
    assert parsed.seed == 3
    assert parsed.prompt == "castle"


def test_flags_may_come_first_and_spare_words_return_to_the_prompt() -> None:
    parsed = request("--ar 3:2 a red fox --seed 5 on a hill")
    assert (parsed.prompt, parsed.width, parsed.seed) == ("a red fox on a hill", 768, 5)


def test_em_dash_and_case_are_accepted() -> None:
    parsed = request("a fox —ar 16:9 —no snow —SEED 9")
    assert (parsed.width, parsed.negative_prompt, parsed.seed) == (912, "snow", 9)


def test_emphasis_and_dashes_that_are_not_flags_pass_through() -> None:
    text = "a (house:1.3) [on] a ((hill)) — sunset -- glow --- 1990s \\(x\\) BREAK sky"
    assert request(text).prompt == text


def test_defaults_are_applied_and_flags_override_them() -> None:
    defaults = GenerationRequest(
        prompt="ignored", negative_prompt="lowres", steps=25, cfg_scale=5.0, model="base", seed=1
    )
    parsed = parse_prompt("a cat --steps 40", defaults=defaults).request
    assert parsed == GenerationRequest(
        prompt="a cat", negative_prompt="lowres", steps=40, cfg_scale=5.0, model="base", seed=1
    )
    assert parse_prompt("a cat --no dogs", defaults=defaults).request.negative_prompt == "dogs"


def test_known_flags_lists_every_spelling() -> None:
    assert set(KNOWN_FLAGS) >= {
        "--ar", "--no", "--seed", "--steps", "--cfg", "--guidance", "--sampler", "--n", "--count",
        "--size", "--model", "--clip-skip", "--clipskip", "--private",
    }  # fmt: skip
    assert all(flag.startswith("--") for flag in KNOWN_FLAGS)


def test_unknown_flag_names_it_and_lists_the_known_ones() -> None:
    caught = error("a fox --stylize 100")
    assert caught.field == "--stylize"
    assert all(flag in caught.allowed for flag in KNOWN_FLAGS)
    assert error("a fox —chaos 5").field == "--chaos"


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("x --seed abc", "--seed"),
        ("x --seed 4294967296", "--seed"),
        ("x --seed 1.5", "--seed"),
        ("x --steps", "--steps"),
        ("x --steps --seed 1", "--steps"),
        ("x --steps 0", "--steps"),
        ("x --steps 151", "--steps"),
        ("x --steps ten", "--steps"),
        ("x --cfg", "--cfg"),
        ("x --cfg 0.5", "--cfg"),
        ("x --cfg nan", "--cfg"),
        ("x --guidance 31", "--guidance"),
        ("x --n 0", "--n"),
        ("x --n 5", "--n"),
        ("x --count -1", "--count"),
        ("x --clip-skip 0", "--clip-skip"),
        ("x --clipskip 13", "--clipskip"),
        ("x --ar 3x2", "--ar"),
        ("x --ar 3:0", "--ar"),
        ("x --ar 0:2", "--ar"),
        ("x --ar 3:2:1", "--ar"),
        ("x --ar 5:1", "--ar"),
        ("x --ar 1:5", "--ar"),
        ("x --ar", "--ar"),
        ("x --size 512", "--size"),
        ("x --size 512x500", "--size"),
        ("x --size 32x512", "--size"),
        ("x --size 4096x512", "--size"),
        ("x --sampler", "--sampler"),
        ("x --sampler Euler b", "--sampler"),
        ('x --sampler ""', "--sampler"),
        ("x --no", "--no"),
        ("x --no --seed 1", "--no"),
        ("x --model", "--model"),
        ("x --ar 3:2 --size 512x512", "--size"),
        ("x --seed 1 --seed 2", "--seed"),
        ("x --cfg 5 --guidance 6", "--guidance"),
    ],
)
def test_bad_values_name_the_flag(text: str, flag: str) -> None:
    caught = error(text)
    assert caught.field == flag
    assert caught.allowed
    assert flag in str(caught)


def test_private_is_a_switch() -> None:
    assert parse_prompt("x").private is False
    parsed = parse_prompt("x --private in the rain")
    assert parsed.private is True
    assert parsed.request.prompt == "x in the rain"


def test_empty_prompt_is_left_to_validation() -> None:
    parsed = parse_prompt("--seed 3")
    assert parsed.request.prompt == ""
    with pytest.raises(InvalidRequest) as caught:
        parsed.request.validate()
    assert caught.value.field == "prompt"


def test_format_prompt_round_trips_through_parse_prompt() -> None:
    from dataclasses import replace

    from pipeline.domain.prompt.flags import format_prompt

    text = (
        'a (red:1.2) fox --no trees, text --size 64x128 --steps 2 --cfg 6.5 --n 2 --sampler "DPM++ 2M Karras"'
    )
    request = parse_prompt(f"{text} --seed 9").request.validate()
    assert format_prompt(request) == text
    assert parse_prompt(format_prompt(request)).request.validate() == replace(request, seed=None)
    assert "--seed 9" in format_prompt(request, seed=True)
