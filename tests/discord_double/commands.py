"""Application commands the bot syncs: stored per scope (global or a guild), checked like Discord does."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .clock import Snowflakes

CHAT_INPUT = 1
SUB_COMMAND = 1
SUB_COMMAND_GROUP = 2

LOCALES = frozenset(
    (
        "id",
        "da",
        "de",
        "en-GB",
        "en-US",
        "es-ES",
        "es-419",
        "fr",
        "hr",
        "it",
        "lt",
        "hu",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "fi",
        "sv-SE",
        "vi",
        "tr",
        "cs",
        "el",
        "bg",
        "ru",
        "uk",
        "hi",
        "th",
        "zh-CN",
        "ja",
        "zh-TW",
        "ko",
    )
)
"""The locales Discord accepts as keys of ``name_localizations`` and ``description_localizations``."""
_NAME_SCRIPTS = ((0x0900, 0x097F), (0x0E00, 0x0E7F))  # Devanagari, Thai


def valid_name(name: str) -> bool:
    r"""Discord's rule for a chat command's (or option's) name, localised or not:
    ``^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$``, in lowercase where a letter has one."""
    return (
        1 <= len(name) <= 32
        and name == name.lower()
        and all(
            char in "-_"
            or unicodedata.category(char)[0] in "LN"
            or any(low <= ord(char) <= high for low, high in _NAME_SCRIPTS)
            for char in name
        )
    )


def _text(text: str) -> bool:
    return 1 <= len(text) <= 100


def command_problems(command: Mapping[str, Any]) -> list[str]:
    """What Discord would reject in a command (a subset of its checks: names, descriptions and
    their localizations, counts, required-before-optional, choices)."""
    name = str(command.get("name", ""))
    if command.get("type", CHAT_INPUT) != CHAT_INPUT:
        problems = [] if 1 <= len(name) <= 32 else [f"{name!r}: name must be 1-32 characters"]
        return problems + _localized(name, command, "name_localizations", lambda text: 1 <= len(text) <= 32)
    return _problems(name, command)


def _localized(path: str, item: Mapping[str, Any], key: str, fits: Callable[[str], bool]) -> list[str]:
    """Problems of ``item[key]``, a map of Discord locales to texts that must each ``fit``."""
    localizations = item.get(key)
    if localizations is None:
        return []
    if not isinstance(localizations, Mapping):
        return [f"{path}: {key} must be an object of locales to texts"]
    problems: list[str] = []
    for locale, text in localizations.items():
        if locale not in LOCALES:
            problems.append(f"{path}: {key} has {locale!r}, not a Discord locale")
        elif not isinstance(text, str) or not fits(text):
            problems.append(f"{path}: {key}[{locale!r}] {text!r} is not allowed")
    return problems


def _names_in(options: list[Mapping[str, Any]], locale: str) -> list[Any]:
    """The options' names as a member with ``locale`` sees them."""
    return [(o.get("name_localizations") or {}).get(locale, o.get("name")) for o in options]


def _problems(path: str, item: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    name = str(item.get("name", ""))
    if not valid_name(name):
        problems.append(f"{path}: name {name!r} must be 1-32 lowercase letters, digits, - or _")
    if not _text(str(item.get("description", ""))):
        problems.append(f"{path}: description must be 1-100 characters")
    problems += _localized(path, item, "name_localizations", valid_name)
    problems += _localized(path, item, "description_localizations", _text)
    options = list(item.get("options") or [])
    if len(options) > 25:
        problems.append(f"{path}: more than 25 options")
    locales = {locale for o in options for locale in (o.get("name_localizations") or {})}
    for locale in (None, *sorted(locales)):
        names = _names_in(options, locale) if locale else [o.get("name") for o in options]
        if len(set(names)) != len(names):
            problems.append(f"{path}: option names repeat{f' in {locale}' if locale else ''}")
    seen_optional = False
    for option in options:
        child = f"{path} {option.get('name')}"
        if option.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
            problems.extend(_problems(child, option))
            continue
        if not valid_name(str(option.get("name", ""))):
            problems.append(f"{child}: bad option name")
        if not _text(str(option.get("description", ""))):
            problems.append(f"{child}: description must be 1-100 characters")
        problems += _localized(child, option, "name_localizations", valid_name)
        problems += _localized(child, option, "description_localizations", _text)
        choices = list(option.get("choices") or [])
        if len(choices) > 25:
            problems.append(f"{child}: more than 25 choices")
        for choice in choices:
            if not _text(str(choice.get("name", ""))):
                problems.append(f"{child}: choice name {choice.get('name')!r} must be 1-100 characters")
            problems += _localized(
                f"{child} choice {choice.get('name')!r}", choice, "name_localizations", _text
            )
        if option.get("required"):
            if seen_optional:
                problems.append(f"{child}: required options must come before optional ones")
        else:
            seen_optional = True
    return problems


class CommandStore:
    """Commands per scope (``None`` = global, else a guild id); ids survive re-syncs by name."""

    def __init__(self, application_id: int, snowflakes: Snowflakes) -> None:
        self._application_id = application_id
        self._snowflakes = snowflakes
        self._scopes: dict[int | None, dict[int, dict[str, Any]]] = {}

    def list(self, guild_id: int | None) -> list[dict[str, Any]]:
        return list(self._scopes.get(guild_id, {}).values())

    def get(self, guild_id: int | None, command_id: int) -> dict[str, Any] | None:
        return self._scopes.get(guild_id, {}).get(command_id)

    def overwrite(self, guild_id: int | None, commands: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Bulk overwrite (``PUT``): the scope holds exactly ``commands`` afterwards."""
        old = self._scopes.get(guild_id, {})
        new: dict[int, dict[str, Any]] = {}
        for command in commands:
            existing = self._existing_id(old, command)
            stored = self._normalize(command, existing or self._snowflakes.next(), guild_id)
            new[int(stored["id"])] = stored
        self._scopes[guild_id] = new
        return list(new.values())

    def upsert(self, guild_id: int | None, command: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create, or replace the one with the same name and type (``POST``); True if created."""
        scope = self._scopes.setdefault(guild_id, {})
        existing = self._existing_id(scope, command)
        stored = self._normalize(command, existing or self._snowflakes.next(), guild_id)
        scope[int(stored["id"])] = stored
        return stored, existing is None

    def edit(
        self, guild_id: int | None, command_id: int, changes: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        current = self.get(guild_id, command_id)
        if current is None:
            return None
        stored = self._normalize({**current, **changes}, command_id, guild_id)
        self._scopes[guild_id][command_id] = stored
        return stored

    def delete(self, guild_id: int | None, command_id: int) -> bool:
        return self._scopes.get(guild_id, {}).pop(command_id, None) is not None

    def find(self, name: str, *, guild_id: int | None, type: int = CHAT_INPUT) -> dict[str, Any] | None:
        """The command a user in ``guild_id`` would pick: guild commands first, then global."""
        for scope in (guild_id, None) if guild_id is not None else (None,):
            for command in self._scopes.get(scope, {}).values():
                if command["name"] == name and command["type"] == type:
                    return command
        return None

    def all(self) -> list[dict[str, Any]]:
        return [c for scope in self._scopes.values() for c in scope.values()]

    @staticmethod
    def _existing_id(scope: Mapping[int, Mapping[str, Any]], command: Mapping[str, Any]) -> int | None:
        for command_id, stored in scope.items():
            if stored["name"] == command.get("name") and stored["type"] == command.get("type", CHAT_INPUT):
                return command_id
        return None

    def _normalize(self, command: Mapping[str, Any], command_id: int, guild_id: int | None) -> dict[str, Any]:
        type_ = command.get("type", CHAT_INPUT)
        stored: dict[str, Any] = {
            "id": str(command_id),
            "application_id": str(self._application_id),
            "version": str(self._snowflakes.next()),
            "type": type_,
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description", "") if type_ == CHAT_INPUT else "",
            "description_localizations": command.get("description_localizations"),
            "default_member_permissions": command.get("default_member_permissions"),
            "nsfw": command.get("nsfw", False),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
        }
        if type_ == CHAT_INPUT:
            stored["options"] = list(command.get("options") or [])
        if guild_id is None:
            stored["dm_permission"] = command.get("dm_permission", True)
        else:
            stored["guild_id"] = str(guild_id)
        return stored
