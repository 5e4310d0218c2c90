"""GPU workers on other machines: the bot's scheduler hands batches to them through Celery.

With ``NANKE_BROKER_URL`` set (a Redis URL), the bot keeps the one scheduler and the database,
and :class:`~pipeline.queue.remote.dispatch.Dispatcher` sends each fair batch to a free worker
(``python main.py worker`` on a GPU box) as a Celery task on that worker's own queue. Workers
announce themselves in Redis (:mod:`pipeline.queue.remote.fleet`); their images come back as
PNG bytes in the task's result (:mod:`pipeline.queue.remote.wire`) and the bot stores and
delivers them as usual. Unset, the embedded worker runs batches in the bot's process.
"""
