"""One cog per feature, each ending in ``async def setup(bot)``."""
