"""Route templates such as ``/channels/{channel_id}/messages`` and matching paths against them."""

from __future__ import annotations


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def match_path(template: str, path: str) -> dict[str, str] | None:
    """Match ``path`` against ``template``; return the ``{name}`` captures, or ``None``.

    A ``{name}`` segment matches any one non-empty segment, so ``/channels/{id}/messages``
    matches ``/channels/123/messages`` whatever the placeholder is called. A template may
    also be a concrete path, which then only matches itself.
    """
    wanted = _segments(template)
    given = _segments(path)
    if len(wanted) != len(given):
        return None
    captures: dict[str, str] = {}
    for pattern, segment in zip(wanted, given, strict=True):
        if pattern.startswith("{") and pattern.endswith("}"):
            captures[pattern[1:-1]] = segment
        elif pattern != segment:
            return None
    return captures


def method_matches(wanted: str, method: str) -> bool:
    return wanted == "*" or wanted.upper() == method.upper()
