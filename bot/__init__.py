"""The Discord front door: the bot, its features (``bot.cogs``), delivery and rendering.

It reaches the rest of nanke only through the job interface (``pipeline.queue.jobs``) and the
composition root (``pipeline.app``); nothing outside ``bot`` imports it.
"""
