"""Run the double standalone: ``python -m tests.discord_double --port 8765``.

Then point the bot at it, e.g. ``DISCORD_API_BASE=http://127.0.0.1:8765/api/v10`` and
``DISCORD_GATEWAY_URL=ws://127.0.0.1:8765/gateway``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from .server import DiscordDouble

log = logging.getLogger("tests.discord_double")


async def serve(port: int, token: str | None) -> None:
    async with DiscordDouble(port=port, bot_token=token) as double:
        log.info("REST API base: %s", double.api_base)
        log.info("Gateway URL:   %s", double.gateway_url)
        log.info(
            "Guild %s, channels %s, users %s",
            double.guild().name,
            [c.name for c in double.guild().channels.values()],
            [u.username for u in double.world.users.values()],
        )
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback double of Discord's REST API and gateway.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=None, help="bot token to require (default: accept any)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.token))


if __name__ == "__main__":
    main()
