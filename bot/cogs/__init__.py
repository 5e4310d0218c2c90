"""One vertical slice per feature: its slash commands, its buttons and their handlers, in one file.

Each module ends in ``async def setup(bot)``, which gives the feature's cog its dependencies
and registers the feature's buttons (``BUTTONS``) as dynamic items; the bot's ``setup_hook``
calls them (see ``bot.client``).
"""
