"""The engine side: running batches of requests on a GPU (or the CPU) with diffusers.

- :mod:`~pipeline.engine.core`: :class:`Engine`, one loaded pipeline that turns a batch of
  compatible requests into images, with progress, cancellation and the NaN and out-of-memory
  guards of :mod:`~pipeline.engine.guards`;
- :mod:`~pipeline.engine.results`: its typed options, progress and results;
- :mod:`~pipeline.engine.pool`: the loaded engines, one per model, and the dedicated upscaler
  (:mod:`~pipeline.engine.upscaler`);
- :mod:`~pipeline.engine.devices`: which device and dtype to run on (its vocabulary, without
  torch, is :mod:`~pipeline.engine.device_names`);
- :mod:`~pipeline.engine.testmodel`: tiny random-weight pipelines for tests and demos.

It depends on the domain (``pipeline.domain``) only and knows nothing of jobs or storage.
Import from the modules: this package imports nothing, so reading the device vocabulary does
not load torch.
"""
