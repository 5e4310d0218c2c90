"""English and 简体中文: the catalogs agree, every key is used, the language follows the member's
Discord, pipeline errors are said from their keys, and the slash commands' translations are ones
Discord accepts."""

from __future__ import annotations

import ast
import string
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord.ext import commands

from bot import render
from bot.client import FEATURES
from bot.cogs.actions import result_view
from bot.cogs.community import RemixModal
from bot.cogs.listings import LISTINGS, PERIODS
from bot.errors import BotError, JobGone, user_message
from bot.i18n import ENGLISH, TEXTS, Texts, for_guild, language_of, texts_for
from bot.i18n.catalog import load_catalog, placeholders
from bot.i18n.commands import CommandTranslator, load_command_catalogs
from bot.i18n.errors import invalid_text, pipeline_text
from bot.posting import _is_result
from pipeline.domain.models.resources import Resources
from pipeline.domain.prompt.flags import parse_prompt
from pipeline.domain.prompt.styles import StyleFile
from pipeline.domain.request import GenerationRequest
from pipeline.errors import InvalidRequest, JobBusy, JobNotFound, ModelNotFound, PipelineError
from pipeline.queue.jobs import JOB_KINDS, Destination, Viewer
from storage.models import JOB_STATUSES
from tests.discord_double.commands import command_problems
from tests.helpers_services import LOCAL, Services, member, run_job, small_request
from tests.test_bot_render import job

pytest_plugins = ("tests.fixtures_services",)

ROOT = Path(__file__).resolve().parents[1]
CATALOGS = ROOT / "bot" / "i18n"
ZH = TEXTS["zh-CN"]


# -- the catalogs ---------------------------------------------------------------------------------


def catalogs() -> dict[str, dict[str, str]]:
    return {path.name: load_catalog(path) for path in sorted(CATALOGS.glob("messages.*.json"))}


def test_every_catalog_has_every_key_with_the_same_placeholders() -> None:
    english = load_catalog(CATALOGS / "messages.en.json")
    assert set(TEXTS) == {"en", "zh-CN"}
    for name, catalog in catalogs().items():
        assert set(catalog) == set(english), f"{name}: keys differ from English"
        for key, template in catalog.items():
            assert placeholders(template) == placeholders(english[key]), f"{name}: {key}"


def test_placeholders_are_plain_names() -> None:
    for name, catalog in catalogs().items():
        for key, template in catalog.items():
            for _, field, spec, conversion in string.Formatter().parse(template):
                if field is not None:
                    assert field.isidentifier() and not spec and not conversion, f"{name}: {key}: {field!r}"


def _code_strings(package: Path) -> tuple[set[str], set[str]]:
    """The string constants of a package's code, and the constant heads of its f-strings."""
    constants: set[str] = set()
    heads: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                heads.add(str(node.values[0].value))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
    return constants, heads


def _raised_keys() -> Iterator[tuple[str, str]]:
    """``(namespace, key)`` of every ``key=`` given to a pipeline error in ``pipeline/``: the
    catalog key is ``pipeline.<key>``, or ``pipeline.invalid.<key>`` for an ``InvalidRequest``;
    an f-string key is given by its constant head (``not_cancellable.``)."""
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            namespace = "pipeline.invalid." if called == "InvalidRequest" else "pipeline."
            for keyword in node.keywords:
                value = keyword.value
                if keyword.arg != "key":
                    continue
                if isinstance(value, ast.Constant):
                    yield namespace, str(value.value)
                elif isinstance(value, ast.JoinedStr) and isinstance(value.values[0], ast.Constant):
                    yield namespace, f"{value.values[0].value}"


def test_every_key_is_used_and_every_used_key_exists() -> None:
    english = load_catalog(CATALOGS / "messages.en.json")
    constants, heads = _code_strings(ROOT / "bot")
    sections = {key.split(".")[0] for key in english}
    # Keys the bot names in its code, literally or as the head of an f-string
    for constant in constants:
        if constant.split(".")[0] in sections and "." in constant and " " not in constant:
            assert constant in english or constant.endswith("."), f"{constant!r} is not in the catalog"
    dynamic = {head for head in heads if head.endswith(".") and head.split(".")[0] in sections}
    assert dynamic == {
        "headline.kind.",
        "listing.",
        "listing.period.",
        "status.",
        "info.kind.",
        "pipeline.",
        "pipeline.invalid.",
        "pipeline.field.",
    }
    families = {
        "headline.kind.": render.CHILD_KINDS,
        "listing.period.": PERIODS,
        "status.": JOB_STATUSES,
        "info.kind.": JOB_KINDS,
    }
    for head, members in families.items():
        assert {key for key in english if key.startswith(head)} == {head + m for m in members}, head
    for listing in LISTINGS:
        assert f"listing.{listing}" in english
    # Keys of pipeline errors: exactly those raised in pipeline/
    raised = {namespace + key for namespace, key in _raised_keys()}
    statuses = ("done", "failed", "cancelled")
    raised = {k for k in raised if not k.endswith(".")} | {
        k + s for k in raised if k.endswith(".") for s in statuses
    }
    frames = {"pipeline.invalid", "pipeline.invalid.reason", "pipeline.invalid.plain"}
    in_catalog = {k for k in english if k.startswith("pipeline.") and not k.startswith("pipeline.field.")}
    assert in_catalog - frames == raised
    unused = [
        key for key in english if key not in constants and not any(key.startswith(head) for head in dynamic)
    ]
    assert not unused, f"keys no code uses: {unused}"


# -- choosing the language ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "language"),
    [
        (discord.Locale.chinese, "zh-CN"),
        ("zh-CN", "zh-CN"),
        (discord.Locale.american_english, "en"),
        (discord.Locale.british_english, "en"),
        (discord.Locale.taiwan_chinese, "en"),  # Traditional Chinese readers get English, not Simplified
        (discord.Locale.french, "en"),
        ("xx", "en"),
        (None, "en"),
    ],
)
def test_the_language_follows_the_locale_with_english_as_the_fallback(locale: Any, language: str) -> None:
    assert language_of(locale) == language
    assert texts_for(locale).language == language


def test_a_message_without_an_interaction_uses_the_servers_language() -> None:
    assert for_guild(SimpleNamespace(preferred_locale=discord.Locale.chinese)) is ZH  # type: ignore[arg-type]
    assert for_guild(SimpleNamespace(preferred_locale=discord.Locale.german)) is ENGLISH  # type: ignore[arg-type]
    assert for_guild(None) is ENGLISH


def test_a_missing_or_broken_translation_falls_back_to_english() -> None:
    english = {"a": "Job #{job_id}", "b": "Hello"}
    broken = Texts("xx", {"a": "任务 #{job}"}, english)
    assert broken("a", job_id=3) == "Job #3"  # a mistyped placeholder
    assert broken("b") == "Hello"  # no text for the key
    assert broken.optional("c") is None
    with pytest.raises(KeyError):
        broken("c")
    assert Texts("en", english, english)("a", job_id=3) == "Job #3"


# -- what members see -----------------------------------------------------------------------------


def test_job_messages_in_chinese() -> None:
    snapshot = job(count=1, kind="upscale", parent_id=7, parent_image_index=1)
    assert render.headline(snapshot, ZH) == "**a red fox @everyone** — 放大自 #7 第 2 张"
    assert render.queued_text(snapshot, 3, ZH).endswith("⏳ 等待开始（队列第 3 位） · 任务 #12")
    assert "第 1/2 步" in render.progress_text(snapshot, 1, 2, 3.0, ZH)
    embed = render.result_embed(job(), ZH)
    names = [field.name for field in embed.fields]
    assert names == ["反向提示词", "种子", "步数", "采样器", "提示词相关性（CFG）", "尺寸", "模型"]
    assert embed.footer.text == "任务 #12 · 作者 alice"
    labels = [item.item.label or str(item.item.emoji) for item in result_view(12, 1, texts=ZH).children]
    assert labels == ["放大（2 倍）", "强烈变体", "细微变体", "🔄", "🗑️", "❤️", "分享", "使用此提示词"]
    grid = [item.item.label for item in result_view(12, 4, texts=ZH).children][:4]
    assert grid == ["放大 1", "放大 2", "放大 3", "放大 4"]


def test_a_restarted_bot_finds_a_failure_text_in_any_language() -> None:
    failed = job(count=1, status="failed", error="out of memory", images=())
    for texts in TEXTS.values():
        message = SimpleNamespace(components=[], content=render.failure_text(failed, texts=texts))
        assert _is_result(message, failed)  # type: ignore[arg-type]


def test_chinese_texts_fit_discords_limits() -> None:
    for key, template in load_catalog(CATALOGS / "messages.zh-CN.json").items():
        if key.startswith("button."):
            assert len(template.format(number=4, job_id=10**18 - 1)) <= 80, key
    modal = RemixModal(None, job(id=10**18 - 1), ZH)  # type: ignore[arg-type]
    assert len(modal.title) <= 45 and modal.title.startswith("重混 #")
    assert len(ZH("remix.prompt")) <= 45


def test_bot_errors_are_said_in_the_members_language() -> None:
    assert user_message(JobGone("error.job_gone", job_id=4), ZH) == "⚠️ 找不到任务 #4。"
    assert user_message(JobGone("error.job_gone", job_id=4)) == "⚠️ Job #4 was not found."
    assert str(BotError("share.already", job_id=2)) == "Job #2 is already in the showcase."
    assert user_message(JobBusy("locked"), ZH) == "⚠️ 这个任务正在处理中，请等它完成后再试。"
    assert user_message(discord.app_commands.CheckFailure(), ZH) == "⛔ 你不能在这里使用这个命令。"
    # An error without a key keeps its English words
    assert user_message(ModelNotFound("no model called x"), ZH) == "⚠️ no model called x"
    assert user_message(JobNotFound(9), ZH) == "⚠️ 找不到任务 9（它从未存在，或已被删除）。"


# -- pipeline errors ------------------------------------------------------------------------------

BAD_PROMPTS = (
    "a fox --steps 999",
    "a fox --steps -3",
    "a fox --steps many",
    "a fox --cfg 99",
    "a fox --cfg lots",
    "a fox --ar 3x2",
    "a fox --ar 100:1",
    "a fox --size big",
    "a fox --bogus",
    "a fox --seed 1 --seed 2",
    "a fox --no",  # no key: its reason stays English
)
BAD_REQUESTS = (
    {"prompt": "  "},
    {"steps": 999},
    {"steps": 2.5},
    {"cfg_scale": 99.0},
    {"cfg_scale": "x"},
    {"sampler": "Euler z"},
    {"width": 2048, "height": 2048},
    {"width": 65},  # no key
)


def invalid_requests() -> list[InvalidRequest]:
    errors: list[InvalidRequest] = []
    for prompt in BAD_PROMPTS:
        with pytest.raises(InvalidRequest) as caught:
            parse_prompt(prompt).request.validate()
        errors.append(caught.value)
    for changes in BAD_REQUESTS:
        with pytest.raises(InvalidRequest) as caught:
            small_request(**changes).validate(max_pixels=512 * 512)
        errors.append(caught.value)
    return errors


def test_the_english_catalog_says_what_the_pipeline_says() -> None:
    errors = invalid_requests()
    assert sum(error.key is not None for error in errors) >= 14
    for error in errors:
        assert invalid_text(error, ENGLISH) == str(error)
        assert pipeline_text(error, ENGLISH) == str(error)
    assert ENGLISH("pipeline.job_not_found", **JobNotFound(3).params) == str(JobNotFound(3))


def test_an_invalid_request_is_said_in_chinese_by_its_field_and_key() -> None:
    [steps] = [e for e in invalid_requests() if e.field == "--steps" and e.value == "999"]
    assert user_message(steps, ZH) == "⚠️ --steps（步数）：'999' 超出范围（允许 1 到 150 的整数）"
    assert user_message(steps) == f"⚠️ {steps}"
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest(prompt="a fox", sampler="Euler z").validate()
    assert pipeline_text(caught.value, ZH).startswith(
        "采样器：'Euler z' 不是 nanke 支持的采样器（可用：Euler"
    )
    with pytest.raises(InvalidRequest) as caught:
        parse_prompt("a fox --no").request.validate()
    # No key: the field and the frame are Chinese, the reason and what is allowed stay English
    assert (
        pipeline_text(caught.value, ZH)
        == "--no（反向提示词）：'' has no value（允许：--no followed by some words）"
    )


def test_job_service_errors_are_said_from_their_keys(services: Services) -> None:
    def caught(call: Any) -> PipelineError:
        with pytest.raises(PipelineError) as error:
            call()
        return error.value

    guild = Destination(channel_id=5, guild_id=9)
    services.jobs.moderation.ban(guild_id=9, discord_id=2, reason="spam", banned_by=1)
    queued = [services.jobs.submit(small_request(), requester=member(1)) for _ in range(3)]
    done = run_job(services, small_request())
    errors = [
        caught(lambda: services.jobs.submit(small_request(), requester=member(2), destination=guild)),
        caught(lambda: services.jobs.submit(small_request(), requester=member(1))),
        caught(lambda: services.jobs.submit_child(queued[0].id, action="upscale", requester=LOCAL)),
        caught(lambda: services.jobs.cancel(done.id)),
        caught(lambda: services.jobs.cancel(queued[0].id, viewer=Viewer(discord_id=3, guild_id=None))),
    ]
    services.jobs.cancel(queued[1].id)
    errors.append(caught(lambda: services.jobs.cancel(queued[1].id)))
    said = [pipeline_text(error, ZH) for error in errors]
    assert said == [
        "本服务器的管理员已禁止你在这里使用 nanke：spam",
        "你已有 3 个任务在排队或生成中（上限为 3 个）；请等其中一个完成，或用 ❌ 取消一个。",
        f"任务 {queued[0].id} 没有第 1 张图可以使用。",
        f"任务 {done.id} 已经完成了。",
        "只有发起这个任务的人（或版主）才能这样做。",
        f"任务 {queued[1].id} 已经被取消了。",
    ]
    for error in errors:
        assert error.key is not None
        assert ENGLISH(f"pipeline.{error.key}", **error.params) == str(error)


# -- slash commands -------------------------------------------------------------------------------


async def command_payloads(translator: discord.app_commands.Translator) -> list[dict[str, Any]]:
    """Every command as the bot syncs it, built offline from the features' own setup."""
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    bot.jobs = bot.deliverer = bot.submitter = None  # type: ignore[attr-defined]
    bot.settings = SimpleNamespace(discord_api_base="https://discord.com/api/v10")  # type: ignore[attr-defined]
    bot.app = SimpleNamespace(  # type: ignore[attr-defined]
        catalog=None,
        resources=Resources.none(),
        styles=StyleFile(None),
        engines=None,
        settings=SimpleNamespace(describe_model=None),
    )
    for feature in FEATURES:
        await feature.setup(bot)  # type: ignore[arg-type]
    return [await command.get_translated_payload(bot.tree, translator) for command in bot.tree.get_commands()]


def _walk(item: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "names", item
    for option in item.get("options") or []:
        yield from _walk(option)
    for choice in item.get("choices") or []:
        yield "choices", choice


async def test_every_command_text_has_a_chinese_translation_that_discord_accepts() -> None:
    [catalog] = load_command_catalogs().values()
    payloads = await command_payloads(CommandTranslator())
    used: dict[str, set[str]] = {"names": set(), "descriptions": set(), "choices": set()}
    for payload in payloads:
        assert command_problems(payload) == [], payload["name"]
        for section, item in _walk(payload):
            used[section].add(item["name"])
            localized = item.get("name_localizations") or {}
            if section == "names":
                used["descriptions"].add(item["description"])
                assert localized.get("zh-CN"), f"no Chinese name for {item['name']!r}"
                assert (item.get("description_localizations") or {}).get("zh-CN"), item["description"]
                assert set(localized) == {"zh-CN"}
            elif item["name"] not in catalog["choices"]:
                assert item["name"] == item["value"], f"the choice {item['name']!r} is not translated"
    for section, translations in catalog.items():
        unused = set(translations) - used[section]
        assert not unused, f"{section} that no command has: {sorted(unused)}"
    imagine = next(p for p in payloads if p["name"] == "imagine")
    assert imagine["name_localizations"] == {"zh-CN": "画图"}
    steps = next(o for o in imagine["options"] if o["name"] == "steps")
    assert steps["name_localizations"] == {"zh-CN": "步数"}


async def test_a_translation_discord_would_refuse_is_left_out() -> None:
    catalog = {"names": {"imagine": "Draw Now", "prompt": "x" * 33}, "descriptions": {}, "choices": {}}
    payloads = await command_payloads(CommandTranslator({"zh-CN": catalog}))
    imagine = next(p for p in payloads if p["name"] == "imagine")
    assert imagine["name_localizations"] == {}
    assert all(command_problems(payload) == [] for payload in payloads)


def test_the_double_checks_localizations_as_discord_does() -> None:
    def command(**changes: Any) -> dict[str, Any]:
        option = {
            "type": 3,
            "name": "prompt",
            "description": "What",
            "choices": [{"name": "a", "value": "a"}],
        }
        base = {"name": "imagine", "description": "Draw", "options": [option, {**option, "name": "other"}]}
        for path, value in changes.items():
            target: Any = base
            *parents, last = path.split(".")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            target[last] = value
        return base

    assert command_problems(command(name_localizations={"zh-CN": "画图", "hi": "चित्र"})) == []
    refused = [
        command(name_localizations={"zh-CN": "Draw"}),
        command(name_localizations={"zh-CN": "画 图"}),
        command(name_localizations={"zh-CN": "画" * 33}),
        command(name_localizations={"zh": "画图"}),
        command(description_localizations={"zh-CN": ""}),
        command(description_localizations={"zh-CN": "长" * 101}),
        command(
            **{
                "options.0.name_localizations": {"zh-CN": "同名"},
                "options.1.name_localizations": {"zh-CN": "同名"},
            }
        ),
        command(**{"options.0.name_localizations": {"zh-CN": "other"}}),
        command(**{"options.0.description_localizations": {"en-US": "x" * 101}}),
        command(**{"options.0.choices.0.name_localizations": {"zh-CN": "x" * 101}}),
        command(**{"options.0.choices.0.name": ""}),
    ]
    for payload in refused:
        assert command_problems(payload), payload
