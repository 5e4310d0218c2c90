"""The queue side: requests become stored jobs, and stored jobs are run fairly in GPU batches.

- ``jobs``: the job interface, the one door to ``storage`` (frozen snapshots in and out);
- ``scheduler``: which queued jobs run next and which share a batch;
- ``executor``: the seam "run this batch" between the worker and the engines;
- ``worker``: the job runner and the embedded GPU worker thread;
- ``derive``: the requests of child jobs (reroll, upscale, variation);
- ``reproduce``: regenerating a stored job and comparing pixel for pixel.

It uses the engine side (``pipeline.engine``) and the domain (``pipeline.domain``).
"""
