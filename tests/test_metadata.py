"""The A1111 infotext: exact output, round trips, and real-world texts read back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.domain.metadata import format_infotext, parse_infotext, strip_network_tags
from pipeline.domain.metadata.imported import import_request
from pipeline.domain.metadata.infotext import format_value, parse_settings_line
from pipeline.domain.models import ModelCatalog
from pipeline.domain.request import GenerationRequest
from pipeline.domain.samplers import SAMPLER_NAMES

HASH = "0123456789"
PAD = "Batch size: 1, Batch pos: 0"
"""Pairs nanke ignores silently, so a short settings line has the 3 pairs that make it one."""
SOURCE = "ab" * 32


def _normalised(text: str) -> str:
    """What any A1111-compatible reader gives back for a prompt: lines stripped, ends stripped."""
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# -- writing ------------------------------------------------------------------------------------


def test_issue_example_exact() -> None:
    request = GenerationRequest("a cat", width=512, height=768, steps=20, cfg_scale=7.0, seed=7)
    text = format_infotext(request, seed=7, model_name="name", model_hash=HASH)
    assert text == (
        "a cat\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7, Seed: 7, Size: 512x768, "
        "Model hash: 0123456789, Model: name"
    )


def test_full_img2img_exact() -> None:
    request = GenerationRequest(
        "a castle\non a hill",
        negative_prompt="blurry, lowres",
        width=640,
        height=448,
        steps=30,
        cfg_scale=6.5,
        sampler="dpm++ 2m karras",
        seed=100,
        count=2,
        clip_skip=2,
        mode="img2img",
        init_image=SOURCE,
        strength=0.6,
    )
    text = format_infotext(
        request,
        seed=request.seeds[1],
        model_name="my, model",
        model_hash=None,
        extra={"Version": "nanke 0.1.0"},
    )
    assert text == (
        "a castle\non a hill\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 101, Size: 640x448, "
        'Model: "my, model", Denoising strength: 0.6, Clip skip: 2, Version: nanke 0.1.0'
    )


def test_blank_values_and_clip_skip_one_are_omitted() -> None:
    request = GenerationRequest("x", negative_prompt="   ", seed=1, clip_skip=1)
    text = format_infotext(request, seed=1, model_name=None, model_hash="", extra={"Note": None, "Empty": ""})
    assert text == (
        "x\nSteps: 20, Sampler: Euler a, Schedule type: Uniform, CFG scale: 7, Seed: 1, Size: 512x512"
    )


def test_extra_replaces_in_place_and_none_removes() -> None:
    request = GenerationRequest("x", seed=1)
    text = format_infotext(
        request, seed=1, model_name="m", model_hash=HASH, extra={"Size": "1024x1024", "Model hash": None}
    )
    assert text.endswith("Seed: 1, Size: 1024x1024, Model: m")


@pytest.mark.parametrize("key", ["", "a,b", "a:b", 'a"b', "a\nb"])
def test_extra_rejects_keys_that_break_the_line(key: str) -> None:
    with pytest.raises(ValueError, match="infotext key"):
        format_infotext(GenerationRequest("x"), seed=1, model_name=None, model_hash=None, extra={key: "v"})


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (7.0, "7"),
        (6.5, "6.5"),
        (0.6, "0.6"),
        (20, "20"),
        (True, "True"),
        ("R-ESRGAN 4x+", "R-ESRGAN 4x+"),
        ("a: b", '"a: b"'),
        ("a, b", '"a, b"'),
        ("a\nb", '"a\\nb"'),
        ('"quoted"', '"\\"quoted\\""'),
        (" padded", '" padded"'),
        ("ünïcode", "ünïcode"),
    ],
)
def test_format_value(value: object, shown: str) -> None:
    assert format_value(value) == shown


def test_crlf_in_prompt_is_written_as_lf() -> None:
    text = format_infotext(GenerationRequest("a\r\nb\rc"), seed=1, model_name=None, model_hash=None)
    assert text.startswith("a\nb\nc\nSteps: 20")


# -- round trips --------------------------------------------------------------------------------

_TEXT_ALPHABET = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029\x85"
) | st.sampled_from(list(",:\"'\n()[]<>{}\\ "))
_PROMPT = st.text(_TEXT_ALPHABET, min_size=1, max_size=200)
_NAME = st.text(_TEXT_ALPHABET, min_size=1, max_size=40).map(str.strip).filter(bool)


def _usable_prompt(text: str) -> bool:
    normal = _normalised(text)
    return (
        not any(line.startswith("Negative prompt:") for line in normal.split("\n"))
        and strip_network_tags(normal)[1] == []
    )


@settings(max_examples=300, deadline=None)
@given(
    prompt=_PROMPT,
    negative=st.one_of(st.just(""), _PROMPT),
    width=st.integers(8, 256).map(lambda n: n * 8),
    height=st.integers(8, 256).map(lambda n: n * 8),
    steps=st.integers(1, 150),
    cfg=st.floats(1.0, 30.0, allow_nan=False),
    sampler=st.sampled_from(SAMPLER_NAMES),
    seed=st.integers(0, 2**32 - 1),
    clip_skip=st.integers(1, 12),
    model=st.one_of(st.none(), _NAME),
    model_hash=st.one_of(st.none(), st.text("0123456789abcdef", min_size=10, max_size=10)),
    strength=st.one_of(st.none(), st.floats(0.01, 1.0)),
    extra_value=_NAME,
)
def test_round_trip_every_field(
    prompt: str,
    negative: str,
    width: int,
    height: int,
    steps: int,
    cfg: float,
    sampler: str,
    seed: int,
    clip_skip: int,
    model: str | None,
    model_hash: str | None,
    strength: float | None,
    extra_value: str,
) -> None:
    assume(_normalised(prompt) and _usable_prompt(prompt) and _usable_prompt(negative))
    request = GenerationRequest(
        prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=cfg,
        sampler=sampler,
        seed=seed,
        model=model,
        clip_skip=clip_skip,
        mode="txt2img" if strength is None else "img2img",
        init_image=None if strength is None else SOURCE,
        strength=strength,
    )
    text = format_infotext(
        request,
        seed=seed,
        model_name=model,
        model_hash=model_hash,
        extra={"Version": "nanke 0.1.0", "Note": extra_value},
    )
    parsed = parse_infotext(text)
    got = parsed.request
    assert parsed.prompt == got.prompt == _normalised(prompt)
    assert parsed.negative_prompt == got.negative_prompt == _normalised(negative)
    assert (got.width, got.height, got.steps, got.cfg_scale) == (width, height, steps, cfg)
    assert (got.sampler, got.seed, got.model, got.clip_skip) == (sampler, seed, model, clip_skip)
    assert got.mode == "txt2img"
    assert parsed.model_hash == model_hash
    assert parsed.denoising_strength == strength
    assert parsed.settings["Note"] == extra_value
    assert parsed.settings["Version"] == "nanke 0.1.0"
    expected_notes = 1 if strength is not None else 0  # the img2img strength, reported
    assert len(parsed.unsupported) == expected_notes + 1  # "Note" is not an A1111 setting
    got.validate()


@given(st.dictionaries(_NAME.filter(lambda key: not any(c in key for c in ',:"\n\r')), _NAME, max_size=6))
def test_settings_line_round_trip(pairs: dict[str, str]) -> None:
    line = ", ".join(f"{key}: {format_value(value)}" for key, value in pairs.items())
    assert parse_settings_line(line) == pairs


# -- real-world texts ---------------------------------------------------------------------------

A1111_HIRES_LORA = (
    "masterpiece, best quality, 1girl, solo, looking at viewer, <lora:add_detail:0.8>, cherry blossoms\n"
    "Negative prompt: (worst quality, low quality:1.4), bad hands, watermark\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, "
    "Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)

CIVITAI_FOLDED = (
    "photo of a red fox in the snow, 85mm, bokeh\r\n"
    "Negative prompt: cartoon, painting, <lora:badhands:1>  \r\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 768x512, Model hash: e6bb9ea85b, "
    "Model: realisticVisionV51, VAE: vae-ft-mse-840000-ema-pruned.safetensors, ENSD: 31337, "
    'Hashes: {"vae": "735e4c3a44", "model": "e6bb9ea85b"}, '
    "Variation seed: 77, Variation seed strength: 0.3\r\n"
)

A1111_IMG2IMG = (
    "a castle on a hill, oil painting\n"
    "Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 3141592653, Size: 768x768, "
    "Model hash: cc6cb27103, Model: v1-5-pruned-emaonly, Denoising strength: 0.6, Mask blur: 4, "
    "Version: v1.6.0"
)

A1111_EXTENSIONS = (
    "portrait of an old man, detailed skin\n"
    "Negative prompt: blurry\n"
    "Steps: 40, Sampler: DPM++ 3M SDE, Schedule type: Exponential, CFG scale: 4, Seed: 99, Size: 1000x1003, "
    "Model hash: 31e35c80fc, Model: sd_xl_base_1.0, "
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1", '
    "ADetailer model: face_yolov8n.pt, ADetailer denoising strength: 0.4, "
    'TI hashes: "easynegative: c74b4e810b03", Version: v1.7.0'
)

A1111_OLD = (
    "a cozy cabin in the woods, winter, night\n"
    "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Eta: 0.67, Face restoration: CodeFormer, "
    "Clip skip: 2, Version: v1.5.1"
)


def _note(parsed_notes: list[str], *words: str) -> str:
    found = [note for note in parsed_notes if all(word in note for word in words)]
    assert len(found) == 1, (words, parsed_notes)
    return found[0]


def test_a1111_hires_lora_schedule_type() -> None:
    parsed = parse_infotext(A1111_HIRES_LORA)
    request = parsed.request
    # The LoRA tag stays in the prompt (the engine takes it out of what the text encoder reads)
    assert request.prompt == parsed.prompt
    assert parsed.prompt.endswith("<lora:add_detail:0.8>, cherry blossoms")
    assert request.loras == (("add_detail", 0.8),)
    assert parsed.lora_hashes == {"add_detail": "7c6bad76eb54"}
    assert request.negative_prompt == "(worst quality, low quality:1.4), bad hands, watermark"
    assert (request.steps, request.sampler, request.cfg_scale) == (28, "DPM++ 2M Karras", 6.5)
    assert request.seed == 1234567890
    assert (request.width, request.height, request.model, request.clip_skip) == (512, 768, "anything-v5", 2)
    assert parsed.model_hash == "7f96a1a9ca"
    assert parsed.settings["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert parsed.settings["Version"] == "v1.10.1"
    assert parsed.denoising_strength is None
    # The hires fix is honoured; only the model upscaler nanke lacks is replaced (and said)
    assert (request.hires_scale, request.hires_steps, request.hires_denoise) == (2.0, 15, 0.45)
    assert request.hires_upscaler == "Lanczos"
    _note(parsed.unsupported, "Hires upscaler", "R-ESRGAN 4x+ Anime6B")
    assert len(parsed.unsupported) == 1
    request.validate(max_pixels=1024 * 1536)


def test_civitai_folded_sampler_crlf_and_hashes_object() -> None:
    parsed = parse_infotext(CIVITAI_FOLDED)
    request = parsed.request
    assert request.prompt == "photo of a red fox in the snow, 85mm, bokeh"
    assert request.negative_prompt == parsed.negative_prompt == "cartoon, painting, <lora:badhands:1>"
    assert request.vae == "vae-ft-mse-840000-ema-pruned"
    assert (request.sampler, request.seed, request.width, request.height) == ("DPM++ 2M Karras", 42, 768, 512)
    assert request.model == "realisticVisionV51"
    assert parsed.settings["Hashes"] == '{"vae": "735e4c3a44", "model": "e6bb9ea85b"}'
    assert parsed.settings["Variation seed strength"] == "0.3"
    _note(parsed.unsupported, "ENSD: 31337")
    _note(parsed.unsupported, "variation seed", "Variation seed: 77", "Variation seed strength: 0.3")
    assert len(parsed.unsupported) == 2
    assert not any("Hashes" in note for note in parsed.unsupported)


def test_a1111_img2img_strength_is_reported_and_kept() -> None:
    parsed = parse_infotext(A1111_IMG2IMG)
    request = parsed.request
    assert (request.cfg_scale, request.seed) == (7.5, 3141592653)
    assert (request.mode, request.strength) == ("txt2img", None)
    assert parsed.denoising_strength == 0.6
    _note(parsed.unsupported, "Denoising strength: 0.6", "img2img")
    _note(parsed.unsupported, "ignored", "Mask blur: 4")
    assert len(parsed.unsupported) == 2
    request.validate()


def test_unknown_sampler_odd_size_and_extensions() -> None:
    parsed = parse_infotext(A1111_EXTENSIONS)
    request = parsed.request
    assert request.sampler == "Euler a"
    assert (request.width, request.height, request.cfg_scale) == (1000, 1000, 4.0)
    _note(parsed.unsupported, "Sampler: DPM++ 3M SDE (Exponential)", "Euler a")
    _note(parsed.unsupported, "Size: 1000x1003", "1000x1000")
    _note(parsed.unsupported, "ControlNet", "control_v11p_sd15_canny")
    _note(parsed.unsupported, "ADetailer", "ADetailer model: face_yolov8n.pt", "ADetailer denoising strength")
    assert parsed.ti_hashes == {"easynegative": "c74b4e810b03"}
    assert len(parsed.unsupported) == 4
    assert parsed.denoising_strength is None
    request.validate()


def test_old_a1111_noise_settings_and_schedule_nanke_lacks() -> None:
    parsed = parse_infotext(A1111_OLD)
    request = parsed.request
    assert (request.sampler, request.clip_skip, request.seed) == ("Euler a", 2, 5)
    _note(parsed.unsupported, "Schedule type: Karras", "Euler a")
    _note(parsed.unsupported, "Eta: 0.67")
    _note(parsed.unsupported, "face restoration", "CodeFormer")
    assert len(parsed.unsupported) == 3


def test_prompt_only_text() -> None:
    parsed = parse_infotext("  a lighthouse at dusk  \n  dramatic sky \n\n")
    assert parsed.prompt == "a lighthouse at dusk\ndramatic sky"
    assert parsed.settings == {}
    assert parsed.unsupported == []
    assert parsed.request == GenerationRequest("a lighthouse at dusk\ndramatic sky")


def test_negative_prompt_only_at_line_start() -> None:
    parsed = parse_infotext(f"a sign that says Negative prompt: none\nNegative prompt: text\nSteps: 5, {PAD}")
    assert parsed.prompt == "a sign that says Negative prompt: none"
    assert parsed.negative_prompt == "text"
    assert parsed.request.steps == 5


@pytest.mark.parametrize(
    ("line", "field", "value", "words"),
    [
        ("Steps: 500", "steps", 150, "Steps: 500"),
        ("Steps: 0", "steps", 1, "Steps: 0"),
        ("Steps: many", "steps", 20, "not a whole number"),
        ("Steps: 20, CFG scale: 45", "cfg_scale", 30.0, "CFG scale: 45"),
        ("Steps: 20, Clip skip: 20", "clip_skip", 12, "Clip skip: 20"),
        ("Steps: 20, Seed: 4294967300", "seed", 4, "Seed: 4294967300"),
        ("Steps: 20, Size: 4096x32", "width", 2048, "Size: 4096x32"),
        ("Steps: 20, Size: huge", "width", 512, "not WIDTHxHEIGHT"),
        ("Steps: 20, Sampler: Restart", "sampler", "Euler a", "Sampler: Restart"),
    ],
)
def test_out_of_range_values_are_fixed_and_reported(line: str, field: str, value: object, words: str) -> None:
    parsed = parse_infotext(f"a cat\n{line}, {PAD}")
    assert getattr(parsed.request, field) == value
    _note(parsed.unsupported, words)
    parsed.request.validate()


def test_seed_minus_one_means_random() -> None:
    assert parse_infotext(f"a cat\nSteps: 20, Seed: -1, {PAD}").request.seed is None


def test_settings_line_tolerates_garbage() -> None:
    line = 'Steps: 20, junk without colon, Key: "unterminated, Other: 1, Empty: , Last: x,'
    assert parse_settings_line(line) == {
        "Steps": "20",
        "Key": '"unterminated',
        "Other": "1",
        "Empty": "",
        "Last": "x",
    }


@pytest.mark.parametrize(
    ("text", "cleaned", "removed"),
    [
        ("a cat, <lora:x:0.8>, best quality", "a cat, best quality", ["<lora:x:0.8>"]),
        ("<LoRA:x>, a cat", "a cat", ["<LoRA:x>"]),
        ("a <lyco:y:0.5:0.5> cat <hypernet:z:1>", "a cat", ["<lyco:y:0.5:0.5>", "<hypernet:z:1>"]),
        ("a cat,<lora:x:1>,dog\nsecond line", "a cat,dog\nsecond line", ["<lora:x:1>"]),
        ("a <cat>, (b:1.2)", "a <cat>, (b:1.2)", []),
    ],
)
def test_strip_network_tags(text: str, cleaned: str, removed: list[str]) -> None:
    assert strip_network_tags(text) == (cleaned, removed)


# -- hostile infotexts: notes and defaults, never a crash, always short -------------------------

HUGE = "1" * 5000  # past Python's 4 300-digit limit on converting text to int


@pytest.mark.parametrize(
    ("pair", "field", "default"),
    [
        (f"Size: {HUGE}x512", "width", 512),
        (f"Size: 512x{HUGE}", "height", 512),
        (f"Seed: {HUGE}", "seed", None),
        (f"Steps: {HUGE}", "steps", 20),
        (f"CFG scale: {HUGE}", "cfg_scale", 7.0),
        (f"Clip skip: {HUGE}", "clip_skip", 1),
        (f"Denoising strength: 0.{HUGE}", "denoising_strength", None),
    ],
)
def test_numbers_of_thousands_of_digits_keep_the_default_with_a_short_note(
    pair: str, field: str, default: object
) -> None:
    parsed = parse_infotext(f"a cat\nSteps: 20, {PAD}, {pair}")
    assert getattr(parsed if field == "denoising_strength" else parsed.request, field) == default
    note = _note(parsed.unsupported, pair.split(":")[0] + ": ")
    assert len(note) < 200 and "1" * 61 not in note
    parsed.request.validate()


def test_a_seed_that_reads_as_a_huge_number_is_echoed_shortly() -> None:
    parsed = parse_infotext(f"a cat\nSteps: 20, {PAD}, Seed: " + "9" * 39)
    assert len(_note(parsed.unsupported, "Seed: 999")) < 200


@pytest.mark.parametrize(
    "value",
    ["[" * 100_000, "{" * 100_000, '{"a": ' + HUGE + "}", '"' + "\\" * 5001],
    ids=["deep-array", "deep-object", "huge-int", "escapes"],
)
def test_json_values_that_json_cannot_read_are_plain_text(value: str) -> None:
    settings = parse_settings_line(f"Steps: 20, Hashes: {value}, Seed: 3")
    assert settings["Steps"] == "20" and settings["Seed"] == "3"


def test_long_lists_in_notes_are_cut() -> None:
    pairs = ", ".join(f"Extension {n}: value" for n in range(100))
    tags = " ".join(f"<lora:{'x' * 200}{n}:1>" for n in range(50))
    parsed = parse_infotext(f"a cat {tags}\nSteps: 20, {pairs}")
    ignored = _note(parsed.unsupported, "ignored settings")
    assert "Extension 5: value" in ignored and "Extension 6" not in ignored and "and 94 more" in ignored
    removed = _note(parsed.unsupported, "removed")
    assert "and 44 more" in removed and "x" * 61 not in removed
    assert all(len(note) < 600 for note in parsed.unsupported)


@pytest.mark.parametrize(
    "text",
    [
        "a cat\nSteps: 1, a" + " " * 50_000 + "b",  # key reading used to backtrack over the spaces
        "a <lora:x:1>" + " " * 50_000 + "cat\nSteps: 1",  # so did tidying a line a tag left
    ],
    ids=["settings-key", "network-tag"],
)
def test_reading_takes_linear_time(text: str) -> None:
    started = time.perf_counter()
    parse_infotext(text)
    assert time.perf_counter() - started < 1.0, "quadratic reading is back"


def test_an_unknown_model_of_300_characters_is_a_short_note(tmp_path: Path) -> None:
    catalog = ModelCatalog(default="", models_dir=tmp_path)
    imported = import_request(f"a cat\nSteps: 20, {PAD}, Model: " + "m" * 300, catalog=catalog)
    assert imported.request.model is None
    (note,) = imported.notes
    assert "is not installed here" in note and "m" * 61 not in note and len(note) < 150
