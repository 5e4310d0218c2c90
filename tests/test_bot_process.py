"""``python main.py run`` as a separate process, pointed at the Discord double by its settings.

This is how an admin (or a reviewer with their own double) runs nanke: only the environment
says where Discord is. The process is killed and restarted, and the old buttons still work.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.discord_double import DiscordDouble
from tests.helpers_process import TIMEOUT, delivered, start_process, stop_process, until
from tests.helpers_services import has_image

pytest_plugins = ["tests.discord_double.fixtures"]


def results(double: DiscordDouble) -> list:
    return [m for m in double.messages() if has_image(m)]


def buttons(message) -> list[str]:
    return [
        c["custom_id"] for row in message.components for c in row.get("components", []) if "custom_id" in c
    ]


@pytest.mark.slow
async def test_main_run_serves_imagine_and_old_buttons_survive_a_kill(
    discord_double: DiscordDouble, tmp_path: Path, tiny_model_dir: Path
) -> None:
    data_dir = tmp_path / "data"
    process = await start_process(discord_double, data_dir, tiny_model_dir)
    try:
        command = await discord_double.send_slash_command(
            name="imagine", options={"prompt": "a red fox --n 4 --steps 2 --seed 5 --size 64x64"}
        )
        assert (await command.wait_for_response()).type == 5
        grid = (await discord_double.wait_for(lambda: results(discord_double) or None, timeout=TIMEOUT))[-1]
        assert [c.get("label") for row in grid.components for c in row["components"]][:4] == [
            "U1",
            "U2",
            "U3",
            "U4",
        ]
        await until(lambda: delivered(data_dir, 1))
    finally:
        await stop_process(process, signal.SIGKILL)  # no clean shutdown: a crash

    process = await start_process(discord_double, data_dir, tiny_model_dir)
    try:
        await discord_double.click_button(grid, buttons(grid)[2])  # U3, posted by the killed process
        await discord_double.wait_for(lambda: len(results(discord_double)) >= 2 or None, timeout=TIMEOUT)
        assert "Upscale of #1 image 3" in results(discord_double)[-1].content
        assert len(results(discord_double)) == 2, "nothing was delivered twice"
    finally:
        await stop_process(process)
    assert process.returncode == 0, "SIGTERM is a clean stop"
