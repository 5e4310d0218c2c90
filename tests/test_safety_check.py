"""The optional image safety check (NANKE_SAFETY_CHECKER) on tiny random-weight classifiers built
here: loading from the layouts admins have, the checker's own rule, and flags that reach the job
rows and the audit log."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.app import App
from pipeline.engine.safety import SafetyChecker, locate
from pipeline.errors import ModelLoadError, ModelNotFound
from pipeline.queue.jobs import Destination
from pipeline.settings import load_settings
from tests.helpers_services import Services, member, settings_env, small_request

CPU = torch.device("cpu")
IMAGES = [Image.new("RGB", (64, 48), colour) for colour in ("red", "navy", "white")]


def load(source: Path | str) -> SafetyChecker:
    return SafetyChecker.load(str(source), device=CPU, dtype=torch.float32)


def test_each_kind_of_classifier_gives_one_flag_per_image(tiny_safety_checkers: dict[str, Path]) -> None:
    assert load(tiny_safety_checkers["sd_all"]).flags(IMAGES) == [True, True, True]
    assert load(tiny_safety_checkers["sd_none"]).flags(IMAGES) == [False, False, False]
    classifier = load(tiny_safety_checkers["classifier_all"])
    assert classifier.kind == "classifier" and classifier.flags(IMAGES[:1]) == [True]
    assert load(tiny_safety_checkers["sd_none"]).flags([]) == []


def test_the_rule_is_the_stable_diffusion_checkers_own(tiny_safety_checkers: dict[str, Path]) -> None:
    checker = load(tiny_safety_checkers["sd_none"])
    model = checker.model
    inputs = checker.processor(images=IMAGES, return_tensors="pt")["pixel_values"]
    embeds = model.visual_projection(model.vision_model(inputs)[1])
    cosines = torch.nn.functional.normalize(embeds) @ torch.nn.functional.normalize(model.concept_embeds).T
    generator = np.random.default_rng(0)
    for _ in range(5):
        # Thresholds around the actual scores, so that some images pass and some do not
        with torch.no_grad():
            model.concept_embeds_weights.copy_(
                cosines.mean(dim=0)
                + torch.tensor(generator.normal(0, 0.05, cosines.shape[1]), dtype=torch.float32)
            )
        _, expected = model(clip_input=inputs, images=np.zeros((len(IMAGES), 8, 8, 3)))
        assert checker.flags(IMAGES) == list(expected)


def test_a_stable_diffusion_folder_with_a_safety_checker_folder_is_found(
    tiny_safety_checkers: dict[str, Path], tmp_path: Path
) -> None:
    pipeline = tmp_path / "stable-diffusion-v1-5"
    shutil.copytree(tiny_safety_checkers["sd_all"], pipeline / "safety_checker")
    (pipeline / "feature_extractor").mkdir()
    (pipeline / "safety_checker" / "preprocessor_config.json").rename(
        pipeline / "feature_extractor" / "preprocessor_config.json"
    )
    where = locate(str(pipeline))
    assert (Path(where.model).name, Path(where.processor).name) == ("safety_checker", "feature_extractor")
    assert load(pipeline).flags(IMAGES[:2]) == [True, True]


def test_what_cannot_be_a_classifier_is_one_clear_line(
    tiny_safety_checkers: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ModelNotFound, match=r"NANKE_SAFETY_CHECKER: .* is not a folder or a Hugging Face Hub id"
    ):
        locate(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        locate(str(tmp_path))
    no_processor = tmp_path / "no-processor"
    shutil.copytree(tiny_safety_checkers["sd_all"], no_processor)
    (no_processor / "preprocessor_config.json").unlink()
    with pytest.raises(ModelNotFound, match=r"no preprocessor_config\.json"):
        locate(str(no_processor))
    assert locate("CompVis/stable-diffusion-safety-checker").local is False
    with pytest.raises(ModelLoadError, match="NANKE_SAFETY_CHECKER: 'nobody/no-such-checker'"):
        load("nobody/no-such-checker")  # the tests run offline
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(tiny_safety_checkers["classifier_all"], unlabelled)
    config = json.loads((unlabelled / "config.json").read_text())
    config["id2label"], config["label2id"] = {"0": "cat", "1": "dog"}, {"cat": 0, "dog": 1}
    (unlabelled / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"without an adult-content label \(its labels: cat, dog"):
        load(unlabelled)
    unet = tmp_path / "unet"
    shutil.copytree(tiny_model_dir / "unet", unet)
    shutil.copy(tiny_safety_checkers["sd_all"] / "preprocessor_config.json", unet)
    with pytest.raises(ModelLoadError, match="could not be loaded as an image safety classifier") as caught:
        load(unet)  # a UNet is not an image classifier
    assert "\n" not in str(caught.value)


@pytest.fixture
def checked(
    tmp_path: Path, tiny_model_dir: Path, tiny_safety_checkers: dict[str, Path]
) -> Iterator[Services]:
    env = settings_env(
        tmp_path / "data", tiny_model_dir, NANKE_SAFETY_CHECKER=str(tiny_safety_checkers["sd_all"])
    )
    built = Services(App(load_settings(env)).open())
    yield built
    built.close()


def test_flagged_images_are_stored_flagged_and_logged(checked: Services) -> None:
    job = checked.jobs.submit(
        small_request("a lighthouse", count=2),
        requester=member(7),
        destination=Destination(channel_id=11, guild_id=10),
    )
    checked.runner.run_and_save([job.id])
    done = checked.jobs.get(job.id)
    assert done.status == "done", done.error
    assert done.flagged and [image.flagged for image in done.images] == [True, True]
    assert checked.jobs.community.listing("recent", guild_id=10, limit=10, offset=0) == []
    [entry] = checked.jobs.moderation.log(guild_id=10)
    assert (entry.action, entry.job_id, entry.target_discord_id, entry.detail) == (
        "image_flagged",
        job.id,
        7,
        {"images": [1, 2]},
    )
    png = checked.store.read(done.images[0].path)
    assert Image.open(io.BytesIO(png)).getextrema() != ((0, 0),) * 3, "the image is kept, not blacked out"


def test_a_checker_that_does_not_flag_leaves_jobs_as_they_were(
    tmp_path: Path, tiny_model_dir: Path, tiny_safety_checkers: dict[str, Path]
) -> None:
    env = settings_env(
        tmp_path / "data", tiny_model_dir, NANKE_SAFETY_CHECKER=str(tiny_safety_checkers["sd_none"])
    )
    services = Services(App(load_settings(env)).open())
    try:
        job = services.jobs.submit(small_request("a lighthouse"), requester=member(7))
        services.runner.run_and_save([job.id])
        done = services.jobs.get(job.id)
        assert not done.flagged and not done.images[0].flagged
    finally:
        services.close()


def test_doctor_says_where_the_safety_check_points(
    tmp_path: Path, tiny_model_dir: Path, tiny_safety_checkers: dict[str, Path]
) -> None:
    from pipeline.diagnostics import check_safety

    def said(value: str | None) -> str:
        extra = {"NANKE_SAFETY_CHECKER": value} if value is not None else {}
        [check] = check_safety(load_settings(settings_env(tmp_path / "data", tiny_model_dir, **extra)))
        return check.line()

    assert said(None) == "✓ image safety check: off (NANKE_SAFETY_CHECKER is empty)"
    assert said(str(tiny_safety_checkers["sd_all"])).startswith("✓ image safety check: ")
    hub = said("CompVis/stable-diffusion-safety-checker")
    assert hub.endswith("(a Hub id, downloaded at the first start)")
    missing = said(str(tmp_path / "nowhere"))
    assert missing.startswith("✗") and missing.endswith("→ check NANKE_SAFETY_CHECKER")
