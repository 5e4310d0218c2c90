"""The domain: what people ask for and the rules it follows, independent of how it runs.

``request`` (the validated, canonical :class:`~pipeline.domain.request.GenerationRequest` and
its batch rule), ``prompt`` (flags, emphasis, weighted embeddings), ``samplers``, ``metadata``
(AUTOMATIC1111's infotext in image files), ``models`` (the catalog, loading, hashes),
``text`` (what text from outside may contain, bounded numbers, shortened echoes in messages) and
``grid``. It imports nothing else of ``pipeline`` but its errors.
"""
