"""Image prompts given as links, as Midjourney takes them: Discord attachment URLs at the start
of the prompt (``https://cdn.discordapp.com/attachments/…/fox.png a fox in snow``).

Only links to Discord's own attachment store are read (``cdn.discordapp.com``,
``media.discordapp.net``, or the Discord-compatible server the bot is pointed at), so a prompt
cannot make the bot fetch arbitrary addresses. A download is cut off past
:data:`~bot.cogs.imagine.MAX_IMAGE_BYTES`. One image prompt per job: a second link is refused.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp

from pipeline.domain.text import shorten
from pipeline.errors import InvalidRequest

log = logging.getLogger(__name__)

DISCORD_CDN_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
TIMEOUT_S = 20.0


def split_links(text: str, *, hosts: frozenset[str]) -> tuple[str | None, str]:
    """The attachment link at the start of ``text`` (or ``None``) and the prompt after it.

    Raises :class:`InvalidRequest` (field ``image``) for a second leading link.
    """
    words = text.split()
    links: list[str] = []
    while words and _is_attachment_link(words[0], hosts):
        links.append(words.pop(0))
    if len(links) > 1:
        raise InvalidRequest(
            "image", f"{len(links)} links", "one image link at the start of the prompt", reason="are too many"
        )
    return (links[0] if links else None), " ".join(words)


def _is_attachment_link(word: str, hosts: frozenset[str]) -> bool:
    try:
        parts = urlsplit(word)
    except ValueError:
        return False
    return (
        parts.scheme in ("https", "http")
        and (parts.hostname or "") in hosts
        and parts.path.startswith("/attachments/")
    )


async def download(url: str, *, max_bytes: int) -> bytes:
    """The bytes at ``url`` (an attachment link), at most ``max_bytes``; :class:`InvalidRequest`
    naming ``image`` when it cannot be read or is too large."""
    shown = shorten(url, 60)
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise InvalidRequest(
                    "image", shown, "a link to an image posted on Discord", reason="cannot be read"
                )
            if (response.content_length or 0) > max_bytes:
                raise InvalidRequest("image", shown, f"at most {max_bytes:,} bytes", reason="is too large")
            data = await response.content.read(max_bytes + 1)
    except (aiohttp.ClientError, TimeoutError) as error:
        log.info("image link %s could not be read: %s", shown, error)
        raise InvalidRequest(
            "image", shown, "a link to an image posted on Discord", reason="cannot be read"
        ) from None
    if len(data) > max_bytes:
        raise InvalidRequest("image", shown, f"at most {max_bytes:,} bytes", reason="is too large")
    return data


def _unreadable(shown: str) -> InvalidRequest:
    return InvalidRequest("image", shown, "a link to an image posted on Discord", reason="cannot be read")
