"""Midjourney-style flags in /imagine text (pipeline.domain.prompt.flags)."""

from __future__ import annotations

from dataclasses import replace

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


# -- hostile values: a clear, short refusal naming the flag, never a crash ----------------------


HUGE = "1" * 5000  # past Python's 4 300-digit limit on converting text to int


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("x --ar 1:1" + "0" * 400, "--ar"),  # was an OverflowError dividing the terms
        ("x --ar 1:" + "9" * 38, "--ar"),  # short enough to read: simply too tall
        (f"x --seed {HUGE}", "--seed"),
        (f"x --size {HUGE}x512", "--size"),
        (f"x --size 512x{HUGE}", "--size"),
        (f"x --steps {HUGE}", "--steps"),
        (f"x --cfg {HUGE}", "--cfg"),
        (f"x --cfg 1.{HUGE}", "--cfg"),
        (f"x --n {HUGE}", "--n"),
        (f"x --clip-skip {HUGE}", "--clip-skip"),
        (f"x --ar {HUGE}:1", "--ar"),
    ],
)
def test_numbers_of_thousands_of_digits_are_refused_shortly(text: str, flag: str) -> None:
    caught = error(text)
    assert caught.field == flag
    message = str(caught)
    assert message.startswith(f"{flag}: ")
    assert len(message) < 300
    assert "1" * 61 not in message and "0" * 61 not in message


def test_number_length_limit_is_what_the_message_says() -> None:
    assert "is too long (5,000 characters, at most 40)" in str(error(f"x --seed {HUGE}"))
    assert request("x --seed " + "0" * 39 + "7").seed == 7  # 40 characters are still read


# -- text fields: refused characters, line breaks and NFC (GenerationRequest.validate) ----------


def invalid(text: str, **fields: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        replace(parse_prompt(text).request, **fields).validate()
    return caught.value


@pytest.mark.parametrize(
    ("text", "fields", "field", "words"),
    [
        ("a\ud800fox", {}, "prompt", "lone surrogate (U+D800) at character 2"),
        ("a fox \udcff", {}, "prompt", "lone surrogate (U+DCFF) at character 7"),  # argv's invalid UTF-8
        ("a\x00fox", {}, "prompt", "control character U+0000 at character 2"),
        ("a fox\x1b[31m", {}, "prompt", "control character U+001B"),
        ("a fox\x7f", {}, "prompt", "control character U+007F"),
        ("a", {"prompt": "a fox\x85"}, "prompt", "control character U+0085"),  # C1 (split() drops it)
        ("a fox --no trees\x00", {}, "negative_prompt", "control character U+0000"),
        ("a fox --no \ud83d", {}, "negative_prompt", "lone surrogate (U+D83D)"),
        ("a fox --model my\x00model", {}, "model", "control character U+0000"),
        ("a fox --model \udcc3\udca9", {}, "model", "lone surrogate (U+DCC3)"),
        ("a fox", {"sampler": "Euler\x00a"}, "sampler", "control character U+0000"),
        ("a fox", {"negative_prompt": "x\x0cy"}, "negative_prompt", "control character U+000C"),
    ],
)
def test_surrogates_and_control_characters_are_refused(
    text: str, fields: dict[str, object], field: str, words: str
) -> None:
    caught = invalid(text, **fields)
    assert caught.field == field
    message = str(caught)
    assert message.startswith(f"{field}: ") and words in message
    assert len(message) < 300
    message.encode("utf-8")  # the value is echoed escaped, so the message itself can be sent


def test_a_refused_character_far_into_a_long_prompt_is_located_and_the_echo_short() -> None:
    caught = invalid("a " * 900 + "\x00")
    assert "at character 1,801" in str(caught)
    assert len(str(caught)) < 300


def test_tabs_and_line_breaks_are_text_and_crlf_becomes_lf() -> None:
    validated = GenerationRequest(
        prompt="a fox\r\non a hill\rat dusk\tnow", negative_prompt="x\r\n"
    ).validate()
    assert validated.prompt == "a fox\non a hill\nat dusk\tnow"
    assert validated.negative_prompt == "x\n"


def test_text_is_normalised_to_nfc_idempotently() -> None:
    decomposed = GenerationRequest(prompt="cafe\u0301", negative_prompt="A\u030a", model="ne\u0301e")
    validated = decomposed.validate()
    assert (validated.prompt, validated.negative_prompt, validated.model) == ("café", "Å", "née")
    assert validated.validate() == validated
    assert GenerationRequest.from_json(validated.to_json()) == validated
    composed = GenerationRequest(prompt="café", negative_prompt="Å", model="née")
    assert composed.validate().to_json() == validated.to_json()


def test_length_limit_applies_to_the_normalised_text() -> None:
    # NFC composes "e" + U+0301 into one character: 2 000 characters once normalised.
    assert len(GenerationRequest(prompt="e\u0301" * 1000).validate().prompt) == 1000
    with pytest.raises(InvalidRequest, match="prompt: '2001 characters' is too long"):
        GenerationRequest(prompt="x" * 2001).validate()


@pytest.mark.parametrize("sha", ["\ud800" * 64, "AB" * 32, "g" * 64, "ab" * 31])
def test_init_image_must_be_a_lowercase_sha256(sha: str) -> None:
    source = GenerationRequest(prompt="x", mode="img2img", init_image=sha, strength=0.5)
    with pytest.raises(InvalidRequest) as caught:
        source.validate()
    assert caught.value.field == "init_image"
    assert GenerationRequest(prompt="x", mode="img2img", init_image="ab" * 32, strength=0.5).validate()
