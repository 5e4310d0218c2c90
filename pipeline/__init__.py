"""Image generation: requests, prompt parsing, samplers, the diffusers engine and PNG metadata.

This package knows nothing about Discord; ``storage`` knows nothing about it.
"""
