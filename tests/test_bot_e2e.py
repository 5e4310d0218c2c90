"""The bot end to end: the real discord.py client, the real tiny model and database, and the
loopback Discord double in ``tests/discord_double`` playing Discord's REST API and gateway."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from bot.client import NankeBot
from bot.settings import DiscordSettings, load_bot_settings
from pipeline.app import App
from pipeline.domain.metadata import read_parameters
from pipeline.settings import Settings
from storage import Database, Job
from tests.discord_double import DiscordDouble
from tests.discord_double.client import DEFAULT_TOKEN, running_client
from tests.helpers_services import has_image

pytest_plugins = ["tests.discord_double.fixtures"]

FAST = "--steps 2 --size 64x64"
TIMEOUT = 60.0


BotSettings = tuple[Settings, DiscordSettings]


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path, discord_double: DiscordDouble) -> BotSettings:
    return load_bot_settings(
        {
            "NANKE_DATA_DIR": str(tmp_path / "data"),
            "NANKE_MODEL": str(tiny_model_dir),
            "NANKE_DEVICE": "cpu",
            "DISCORD_TOKEN": DEFAULT_TOKEN,
            "DISCORD_API_BASE": discord_double.api_base,
            "DISCORD_GATEWAY_URL": discord_double.gateway_url,
            "NANKE_MAX_QUEUED_PER_USER": "10",
        }
    )


@contextlib.asynccontextmanager
async def running_nanke(
    settings: BotSettings, double: DiscordDouble, *, worker: bool = True, api: bool = False
) -> AsyncIterator[NankeBot]:
    """A brand-new bot process (app, worker, client) on ``settings``' database; with ``api``, the
    HTTP API beside it on a free port (``bot.api.port``)."""
    shared, discord_settings = settings
    app = await asyncio.to_thread(App(shared).open)
    server = None
    if api:
        from pipeline.api.progress import ProgressHub
        from pipeline.api.serving import ApiServer

        server = ApiServer(app, ProgressHub(), host="127.0.0.1", port=0)
    bot = NankeBot(app, discord_settings, start_worker=worker, api=server)
    bot.deliverer.now = lambda: double.clock.datetime()
    bot.deliverer.edit_interval = 2.0
    async with running_client(bot, timeout=20.0):
        yield bot


async def result_message(double: DiscordDouble, *, count: int = 1, where: Callable[[Any], bool] = bool):
    """Wait until ``count`` result messages (those with an image attachment) exist; return the last."""

    def results() -> list[Any]:
        return [m for m in double.messages() if has_image(m) and where(m)]

    found = await double.wait_for(lambda: results() if len(results()) >= count else None, timeout=TIMEOUT)
    return found[-1]


def custom_ids(message: Any) -> list[str]:
    return [
        c["custom_id"] for row in message.components for c in row.get("components", []) if "custom_id" in c
    ]


def labels(message: Any) -> list[str]:
    return [
        c.get("label") or c.get("emoji", {}).get("name", "")
        for row in message.components
        for c in row.get("components", [])
    ]


def image_of(message: Any) -> tuple[Image.Image, str | None]:
    data = message.attachments[0].data
    return Image.open(io.BytesIO(data)), read_parameters(data)


def job_count(bot: NankeBot) -> int:
    database = Database(bot.app.settings.database_url)
    try:
        with database.session() as session:
            return session.scalar(select(func.count(Job.id))) or 0
    finally:
        database.dispose()


async def test_imagine_posts_a_grid_with_buttons(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.min_edit_interval = 2.0
    async with running_nanke(settings, discord_double) as bot:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a red fox @everyone --n 4 --seed 5 {FAST}"}
        )
        response = await command.wait_for_response()
        assert response.type == 5  # deferred at once

        result = await result_message(discord_double)
        grid, parameters = image_of(result)
        assert grid.size == (128, 128)  # 2x2 of 64x64
        assert parameters is not None and "Seed: 5" in parameters and "Steps: 2" in parameters
        job = bot.app.jobs.get(1)
        assert job.grid_path is not None, "the grid was built where the images were made"
        assert result.attachments[0].data == bot.app.store.read(job.grid_path), "posted as stored"
        assert labels(result) == [
            *("U1", "U2", "U3", "U4", "🔄"),
            *("V1", "V2", "V3", "V4", "🗑️"),
            *("❤️", "Share", "Use this prompt"),
        ]
        embed = result.embeds[0]
        fields = {field["name"]: field["value"] for field in embed["fields"]}
        assert fields["Seeds"] == "5, 6, 7, 8" and fields["Steps"] == "2" and fields["Size"] == "64×64"
        assert result.allowed_mentions == {"parse": []}, "echoed prompts must not ping anyone"
        assert job_count(bot) == 1
    assert not discord_double.violations, discord_double.violations
    queued = command.original
    assert queued is None or "job #1" in (queued.content or "")


async def test_bad_options_get_an_ephemeral_error_and_queue_nothing(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        for prompt, named in (
            ("a fox --steps 999", "--steps"),
            ("a fox --ar 3x2", "--ar"),
            ("a fox --bogus", "--bogus"),
        ):
            command = await discord_double.send_slash_command(name="imagine", options={"prompt": prompt})
            response = await command.wait_for_response()
            assert response.type == 4
            assert response.data["flags"] & 64, "the error is ephemeral"
            assert named in response.data["content"]
        assert job_count(bot) == 0


async def test_upscale_variation_and_reroll_buttons(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a red fox --n 4 --seed 5 {FAST}"}
        )
        await command.wait_for_response()
        grid = await result_message(discord_double)
        ids = custom_ids(grid)

        click = await discord_double.click_button(grid, ids[1], user="moderator")  # U2, by someone else
        upscaled = await result_message(discord_double, count=2)
        image, parameters = image_of(upscaled)
        assert image.size == (128, 128)
        assert "Denoising strength: 0.35" in (parameters or "")
        assert labels(upscaled) == [
            *("Upscale (2x)", "Vary (Strong)", "Vary (Subtle)", "🔄", "🗑️"),
            *("❤️", "Share", "Use this prompt"),
            *("Zoom Out 2x", "Zoom Out 1.5x", "Vary (Region)"),
            *("⬅️", "➡️", "⬆️", "⬇️"),
        ]
        assert "Upscale of #1 image 2" in upscaled.content
        assert click.response is not None

        await discord_double.click_button(grid, ids[5])  # V1
        varied = await result_message(discord_double, count=3)
        image, parameters = image_of(varied)
        assert image.size == (64, 64)
        assert "Denoising strength: 0.6" in (parameters or "")
        assert "Variation of #1 image 1" in varied.content

        await discord_double.click_button(grid, ids[4])  # 🔄
        rerolled = await result_message(discord_double, count=4)
        assert "Reroll of #1" in rerolled.content
        seeds = {f["name"]: f["value"] for f in rerolled.embeds[0]["fields"]}["Seeds"]
        assert seeds != "5, 6, 7, 8"


async def test_cancel_by_a_stranger_is_refused_and_by_the_owner_works(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        queued = await command.wait_for_original(lambda m: bool(custom_ids(m)))
        [cancel] = custom_ids(queued)
        assert cancel.startswith("nk:cancel:")

        stranger = discord_double.add_user("bob")
        refused = await discord_double.click_button(queued, cancel, user=stranger)
        response = await refused.wait_for_response()
        assert response.data["flags"] & 64 and "Only the person" in response.data["content"]
        assert bot.app.jobs.get(1).status == "queued"

        accepted = await discord_double.click_button(queued, cancel)
        await accepted.wait_for_followups()
        assert bot.app.jobs.get(1).status == "cancelled"


async def test_old_buttons_work_in_a_brand_new_process(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a red fox --n 2 --seed 9 {FAST}"}
        )
        await command.wait_for_response()
        grid = await result_message(discord_double)

    async with running_nanke(settings, discord_double):
        await discord_double.click_button(grid, custom_ids(grid)[0])  # U1 on a message from before
        upscaled = await result_message(discord_double, count=2)
        assert "Upscale of #1 image 1" in upscaled.content
        await discord_double.click_button(grid, custom_ids(grid)[3])  # V1 (2 images: U1 U2 🔄 V1 V2 🗑)
        varied = await result_message(discord_double, count=3)
        assert "Variation of #1 image 1" in varied.content


async def test_job_queued_at_shutdown_is_delivered_once_after_restart(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False):
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        await command.wait_for_original(lambda m: "job #1" in (m.content or ""))

    async with running_nanke(settings, discord_double) as bot:
        await result_message(discord_double)
        await bot.deliverer.deliver_due()
        await asyncio.sleep(0.5)
        results = [m for m in discord_double.messages() if has_image(m)]
        assert len(results) == 1
        assert bot.app.jobs.get(1).status == "done"


async def test_result_after_token_expiry_goes_to_the_channel_with_a_mention(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        await command.wait_for_original(lambda m: "job #1" in (m.content or ""))
        discord_double.clock.advance(16 * 60)
        bot.start_worker()
        result = await result_message(discord_double)
        alice = discord_double.user("alice")
        assert result.content.startswith(f"<@{alice.id}>")
        assert [str(user) for user in result.allowed_mentions["users"]] == [str(alice.id)]
        assert discord_double.requests("POST", "/channels/{channel_id}/messages")
        assert not discord_double.requests("POST", "/webhooks/{application_id}/{token}", status=200)


async def test_upload_over_the_limit_is_sent_in_a_smaller_format(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.upload_limit = 80_000
    async with running_nanke(settings, discord_double) as bot:
        bot.get_guild(discord_double.guild().id)
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --n 4 --steps 2 --size 128x128"}
        )
        await command.wait_for_response()
        result = await result_message(discord_double)
        attachment = result.attachments[0]
        assert len(attachment.data) <= 80_000
        assert not attachment.filename.endswith(".png")
        assert "Seed:" in (read_parameters(attachment.data) or "")


async def test_an_image_that_cannot_fit_is_reported_with_working_buttons(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.upload_limit = 2_000
    async with running_nanke(settings, discord_double) as bot:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --steps 2 --size 128x128"}
        )
        await command.wait_for_response()
        posted = await discord_double.wait_for(
            lambda: [m for m in discord_double.messages() if m.embeds] or None, timeout=TIMEOUT
        )
        assert "too large to attach" in posted[-1].content
        assert custom_ids(posted[-1]), "the buttons still work without the image"
        assert bot.app.jobs.get(1).status == "done"


async def test_a_server_error_is_retried_and_the_result_delivered_once(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.fail_next("POST", "/webhooks/{application_id}/{token}", status=500)
    async with running_nanke(settings, discord_double):
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        await command.wait_for_response()
        await result_message(discord_double)
        await asyncio.sleep(1.0)
        assert len([m for m in discord_double.messages() if has_image(m)]) == 1
        assert discord_double.requests("POST", "/webhooks/{application_id}/{token}", status=500)


async def test_a_413_is_answered_with_a_smaller_upload(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a fox --n 4 --steps 2 --size 128x128"}
        )
        await command.wait_for_original(lambda m: "job #1" in (m.content or ""))
        discord_double.upload_limit = 80_000  # lower than the interaction announced
        bot.start_worker()
        result = await result_message(discord_double)
        assert len(result.attachments[0].data) <= 80_000
        assert discord_double.requests(status=413), "the first, larger upload was refused"
        assert "Seed:" in (read_parameters(result.attachments[0].data) or "")


async def test_reproduce_an_a1111_png_from_its_parameters(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    from pipeline.domain.metadata import write_png
    from tests.discord_double.command_options import OptionFile

    infotext = (
        "a lighthouse at dusk, <lora:film_grain:0.8>\n"
        "Negative prompt: blurry\n"
        "Steps: 2, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 64x64, "
        "Model hash: 0123456789, Model: somebodys_model, Hires upscale: 2, Hires steps: 10, Version: v1.10.1"
    )
    png = write_png(Image.new("RGB", (64, 64), "gray"), infotext)
    async with running_nanke(settings, discord_double) as bot:
        command = await discord_double.send_slash_command(
            name="reproduce", options={"image": OptionFile("a1111.png", png, "image/png")}
        )
        result = await result_message(discord_double)
        _, parameters = image_of(result)
        assert parameters is not None
        assert (
            "Seed: 1234" in parameters
            and "Sampler: DPM++ 2M, Schedule type: Karras" in parameters
            and "CFG scale: 6.5" in parameters
            and "Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent" in parameters
        )
        job = bot.app.jobs.get(1)
        assert job.request.prompt == "a lighthouse at dusk" and job.request.negative_prompt == "blurry"
        assert (job.request.hires_scale, job.images[0].width) == (2.0, 128)
        [notes] = [m for m in await command.wait_for_followups(2) if "differs from the original" in m.content]
        assert notes.flags & 64
        assert "LoRA 'film_grain'" in notes.content and "hires" not in notes.content.lower()
        assert "somebodys_model" in notes.content

        plain = await discord_double.send_slash_command(
            name="reproduce",
            options={"image": OptionFile("photo.png", write_png(Image.new("RGB", (8, 8)), ""))},
        )
        await discord_double.wait_for(
            lambda: [m for m in plain.followups if "no generation parameters" in (m.content or "")] or None
        )
        assert job_count(bot) == 1


async def test_a_token_discord_rejects_falls_back_to_the_channel(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double, worker=False) as bot:
        bot.deliverer.now = lambda: datetime.now(timezone.utc)  # the bot believes the token still lives
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        await command.wait_for_original(lambda m: "job #1" in (m.content or ""))
        discord_double.clock.advance(16 * 60)  # ... but Discord has expired it
        bot.start_worker()
        result = await result_message(discord_double)
        assert result.content.startswith(f"<@{discord_double.user('alice').id}>")
        assert discord_double.requests("POST", "/webhooks/{application_id}/{token}", status=401)
        assert bot.app.jobs.get(1).status == "done"


async def test_a_job_that_finishes_before_its_queue_message_is_still_delivered_once(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        announce = bot.deliverer.announce_queued
        finished = asyncio.Event()
        deliver = bot.deliverer.deliver

        async def slow_announce(interaction: Any, job: Any) -> None:
            await finished.wait()  # the worker is done before the queue message goes out
            await announce(interaction, job)

        async def deliver_and_signal(job_id: int) -> bool:
            try:
                return await deliver(job_id)
            finally:
                finished.set()

        bot.deliverer.announce_queued = slow_announce  # type: ignore[method-assign]
        bot.deliverer.deliver = deliver_and_signal  # type: ignore[method-assign]
        command = await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox {FAST}"})
        result = await result_message(discord_double)
        await asyncio.sleep(0.5)
        assert len([m for m in discord_double.messages() if has_image(m)]) == 1
        assert custom_ids(result) and result.attachments, "the result was not overwritten by the queue text"
        assert command.original is None or command.original.id != result.id


async def test_loras_are_listed_offered_and_used_from_discord(
    settings: BotSettings, discord_double: DiscordDouble, tiny_model_dir: Path
) -> None:
    from dataclasses import replace

    from diffusers import StableDiffusionPipeline

    from pipeline.engine.testmodel import make_test_lora

    shared, discord_settings = settings
    lora_dir = shared.data_dir / "Lora"
    pipe = await asyncio.to_thread(StableDiffusionPipeline.from_pretrained, tiny_model_dir)
    await asyncio.to_thread(make_test_lora, lora_dir / "detail.safetensors", pipe)
    await asyncio.to_thread(make_test_lora, lora_dir / "neon-glow.safetensors", pipe, layout="peft")
    with_loras = (replace(shared, lora_dir=lora_dir), discord_settings)
    async with running_nanke(with_loras, discord_double) as bot:
        listed = await discord_double.send_slash_command(name="loras")
        [answer] = await listed.wait_for_followups(1)
        assert answer.flags & 64 and "`detail` — trigger words: tinytrigger, glowing" in answer.content
        assert "`neon-glow`" in answer.content

        typing = await discord_double.send_autocomplete(
            name="imagine", options={"prompt": "a fox", "lora": "neo"}, focused="lora"
        )
        assert (await typing.wait_for_response()).type == 8
        assert [choice["value"] for choice in typing.choices or []] == ["neon-glow"]

        await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a fox --seed 3 {FAST}", "lora": "detail", "lora_weight": 0.5}
        )
        result = await result_message(discord_double)
        _, parameters = image_of(result)
        assert parameters is not None and parameters.startswith("a fox <lora:detail:0.5>\n")
        assert 'Lora hashes: "detail: ' in parameters

        missing = await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a fox <lora:nowhere:1> {FAST}"}
        )
        refused = await missing.wait_for_original(lambda m: "nowhere" in (m.content or ""))
        assert "There is no LoRA called “nowhere” here" in refused.content
        assert job_count(bot) == 1  # the missing LoRA was refused before a job was written


def _preview_edits(double: DiscordDouble) -> list[Any]:
    return [
        r
        for r in double.requests("PATCH")
        if any(file.filename == "preview.jpg" for file in r.files) and r.status == 200
    ]


async def test_a_running_job_shows_previews_until_the_member_turns_them_off(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    discord_double.min_edit_interval = 0.3
    async with running_nanke(settings, discord_double) as bot:
        bot.deliverer.edit_interval = 0.3
        slow = "a fox --steps 150 --size 128x128 --sampler Euler"
        await discord_double.send_slash_command(name="imagine", options={"prompt": f"{slow} --n 4"})
        await result_message(discord_double)
        edits = _preview_edits(discord_double)
        assert edits, "a progress edit carries a preview image"
        preview = Image.open(io.BytesIO(edits[0].files[0].data))
        assert preview.size == (256, 256) and preview.format == "JPEG"  # the 2x2 grid, scaled
        assert "step" in edits[0].json["content"]
        assert not discord_double.violations, discord_double.violations  # edits kept Discord's pace

        setting = await discord_double.send_slash_command(
            name="settings", subcommand="previews", options={"enabled": False}
        )
        [said] = await setting.wait_for_followups(1)
        assert "without a preview" in said.content
        await discord_double.send_slash_command(name="imagine", options={"prompt": slow})
        await result_message(discord_double, count=2)
        assert len(_preview_edits(discord_double)) == len(edits)


async def test_remix_mode_opens_the_prompt_before_a_variation_or_reroll(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        setting = await discord_double.send_slash_command(
            name="settings", subcommand="remix", options={"enabled": True}
        )
        await setting.wait_for_followups(1)
        await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"a red fox --no blur --seed 4 {FAST}"}
        )
        result = await result_message(discord_double)
        reroll = next(i for i in custom_ids(result) if i.startswith("nk:reroll:"))
        click = await discord_double.click_button(result, reroll)
        assert (await click.wait_for_response()).type == 9  # a modal, nothing queued yet
        assert job_count(bot) == 1
        assert click.modal is not None
        await discord_double.submit_modal(click, {"prompt": "a blue fox", "negative": "blur, text"})
        child = await result_message(discord_double, count=2)
        _, parameters = image_of(child)
        assert parameters is not None and parameters.startswith("a blue fox\nNegative prompt: blur, text\n")
        job = bot.app.jobs.get(2)
        assert (job.kind, job.parent_id, job.request.prompt) == ("reroll", 1, "a blue fox")
        # An upscale keeps the image as it is: no form
        upscale = next(i for i in custom_ids(result) if i.startswith("nk:up:"))
        assert (await (await discord_double.click_button(result, upscale)).wait_for_response()).type == 5


async def test_an_image_prompt_starts_from_the_attached_image_and_reproduces(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    from pipeline.queue.reproduce import reproduce_job
    from tests.discord_double.command_options import OptionFile

    def png(colour: tuple[int, int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (96, 64), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    async with running_nanke(settings, discord_double) as bot:
        for count, (name, colour) in enumerate((("red", (200, 30, 30)), ("blue", (20, 40, 220))), start=1):
            await discord_double.send_slash_command(
                name="imagine",
                options={
                    "prompt": "a fox --seed 9 --steps 4 --iw 1.5",
                    "image": OptionFile(f"{name}.png", png(colour), "image/png"),
                },
            )
            await result_message(discord_double, count=count)
        red, blue = bot.app.jobs.get(1), bot.app.jobs.get(2)
        assert (red.kind, red.request.mode, red.request.strength) == ("imagine", "img2img", 0.4)
        assert (red.request.width, red.request.height) == (768, 512)  # the image's 3:2, short side 512
        assert red.request.init_image != blue.request.init_image
        made = [await asyncio.to_thread(bot.app.jobs.images.read, job.images[0]) for job in (red, blue)]
        assert made[0] != made[1], "the attached image changes the result"
        reproduction = await asyncio.to_thread(reproduce_job, bot.app.jobs, bot.app.engines, 1)
        assert reproduction.identical

        alone = await discord_double.send_slash_command(name="imagine", options={"prompt": "a fox --iw 1"})
        response = await alone.wait_for_response()
        assert response.data["flags"] & 64 and "--iw" in response.data["content"]


def _pixels(message: Any) -> np.ndarray:
    image, _ = image_of(message)
    return np.asarray(image.convert("RGB")).astype(np.int16)


async def test_zoom_out_pan_and_vary_region_keep_the_original_and_survive_a_restart(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double):
        await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a lighthouse --seed 2 --steps 3 --size 128x128"}
        )
        single = await result_message(discord_double)
        ids = custom_ids(single)
        assert {f"nk:canvas:1:{spec}" for spec in ("zoom-2", "zoom-1.5", "pan-left", "pan-up")} <= set(ids)
        assert "nk:canvas:1:square" not in ids and "nk:region:1" in ids  # square already
        original = _pixels(single)
    async with running_nanke(settings, discord_double) as bot:  # a brand-new process
        await discord_double.click_button(single, "nk:canvas:1:zoom-2")
        zoomed = _pixels(await result_message(discord_double, count=2))
        assert zoomed.shape == (256, 256, 3)
        core = slice(64 + 24, 192 - 24)  # the original, away from the seam
        assert np.abs(zoomed[core, core] - original[24:-24, 24:-24]).max() <= 2
        assert np.abs(zoomed[:32, :32] - original[:32, :32]).mean() > 5, "the border is painted"

        await discord_double.click_button(single, "nk:canvas:1:pan-right")
        panned = _pixels(await result_message(discord_double, count=3))
        assert panned.shape == (128, 192, 3)  # grown on the right
        assert np.abs(panned[:, : 128 - 24] - original[:, : 128 - 24]).max() <= 2

        region = await discord_double.click_button(single, "nk:region:1")
        [menu] = (
            await region.wait_for_followups(1) if region.followups else [await region.wait_for_original()]
        )
        chosen = await discord_double.select_values(menu, "nk:cells:1", ["4"])  # the centre cell
        assert (await chosen.wait_for_response()).type == 9
        await discord_double.submit_modal(chosen, {"prompt": "a lighthouse at night"})
        varied = _pixels(await result_message(discord_double, count=4))
        assert varied.shape == original.shape
        outside = np.ones(original.shape[:2], bool)
        outside[42 - 20 : 85 + 20, 42 - 20 : 85 + 20] = False  # the centre cell and its seam
        assert np.abs(varied[outside] - original[outside]).max() <= 2
        assert np.abs(varied[50:78, 50:78] - original[50:78, 50:78]).mean() > 5
        children = [bot.app.jobs.get(job_id) for job_id in (2, 3, 4)]
        assert [job.request.canvas for job in children] == ["zoom:2", "pan:right", "cells:4"]
        assert all(job.parent_id == 1 for job in children)
        assert children[2].request.prompt == "a lighthouse at night"


async def test_describe_suggests_four_prompts_whose_buttons_imagine_them_after_a_restart(
    settings: BotSettings, discord_double: DiscordDouble, tmp_path: Path
) -> None:
    from dataclasses import replace

    from pipeline.engine.testmodel import make_test_captioner
    from tests.discord_double.command_options import OptionFile

    shared, discord_settings = settings
    captioner = await asyncio.to_thread(make_test_captioner, tmp_path / "captioner")
    with_describe = (replace(shared, describe_model=str(captioner)), discord_settings)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (30, 160, 90)).save(buffer, format="PNG")
    async with running_nanke(with_describe, discord_double):
        asked = await discord_double.send_slash_command(
            name="describe", options={"image": OptionFile("green.png", buffer.getvalue(), "image/png")}
        )
        answer = await asked.wait_for_original(lambda m: "Four prompts" in (m.content or ""))
        lines = answer.content.splitlines()[1:]
        assert [line.split(" ", 1)[0] for line in lines] == ["1️⃣", "2️⃣", "3️⃣", "4️⃣"]
        prompts = [line.split(" ", 1)[1] for line in lines]
        assert len(set(prompts)) == 4 and all(prompt.endswith("--ar 3:2") for prompt in prompts)
        assert [c["custom_id"] for row in answer.components for c in row["components"]] == [
            f"nk:describe:{n}" for n in range(1, 5)
        ]
    async with running_nanke(with_describe, discord_double) as bot:  # the buttons after a restart
        await discord_double.click_button(answer, "nk:describe:2")
        await result_message(discord_double)
        job = bot.app.jobs.get(1)
        assert job.request.prompt == prompts[1].removesuffix(" --ar 3:2")
        assert (job.request.width, job.request.height) == (768, 512)
    async with running_nanke(settings, discord_double):  # not configured: one clear line
        off = await discord_double.send_slash_command(
            name="describe", options={"image": OptionFile("green.png", buffer.getvalue(), "image/png")}
        )
        response = await off.wait_for_response()
        assert "NANKE_DESCRIBE_MODEL" in response.data["content"] and response.data["flags"] & 64


async def test_an_image_link_at_the_start_of_the_prompt_is_an_image_prompt(
    settings: BotSettings, discord_double: DiscordDouble
) -> None:
    async with running_nanke(settings, discord_double) as bot:
        await discord_double.send_slash_command(name="imagine", options={"prompt": f"a fox --seed 1 {FAST}"})
        first = await result_message(discord_double)
        attachment = first.attachments[0]
        link = (
            f"{discord_double.base_url}/attachments/{first.channel_id}/{attachment.id}/{attachment.filename}"
        )
        await discord_double.send_slash_command(
            name="imagine", options={"prompt": f"{link} a fox in snow --seed 2 --steps 4"}
        )
        await result_message(discord_double, count=2)
        job = bot.app.jobs.get(2)
        assert (job.request.mode, job.request.prompt) == ("img2img", "a fox in snow")
        assert job.request.init_image is not None and (job.request.width, job.request.height) == (512, 512)

        for prompt, says in (
            (f"{link} {link} two images", "too many"),
            ("https://example.com/attachments/1/2/x.png a fox", "is not a flag"),  # not Discord's: plain text
        ):
            refused = await discord_double.send_slash_command(
                name="imagine", options={"prompt": prompt + " --x"}
            )
            response = await refused.wait_for_response()
            assert response.data["flags"] & 64 and says in response.data["content"], response.data["content"]
        assert job_count(bot) == 2
