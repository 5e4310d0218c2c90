"""The Discord bot and the application's configuration.

Importing ``bot`` does not import discord.py: ``bot.settings`` is also used by the command line.
"""
