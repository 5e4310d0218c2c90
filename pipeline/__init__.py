"""Generation and the job queue, in three layers; it knows nothing about Discord.

- ``pipeline.domain``: what is asked for (the request, prompt parsing, samplers, PNG metadata,
  the model catalog and loading): plain values and their rules.
- ``pipeline.engine``: running requests on a GPU with diffusers (the engine, its guards, the
  pool of loaded models, devices).
- ``pipeline.queue``: jobs (the job interface, the only door to ``storage``), the fair
  scheduler, the executor seam, the worker, child jobs and reproduction.

Arrows point one way: queue → engine → domain. ``pipeline.settings`` and ``pipeline.app`` (the
composition root) sit above the layers and are shared by the command line and the bot.
``pipeline.errors`` is the package's exception hierarchy.
"""
