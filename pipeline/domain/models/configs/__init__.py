"""Diffusers configs of the base models, shipped so that single-file checkpoints load offline.

Each ``<architecture>.json`` maps the relative path of every config file of a diffusers folder
(``model_index.json``, ``unet/config.json``, ``tokenizer/tokenizer_config.json``, ...) to its
content. They are the public configs of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (``sd1``),
``stabilityai/stable-diffusion-2-1`` (``sd2``, the 768 v-prediction model) and
``stabilityai/stable-diffusion-xl-base-1.0`` (``sdxl``), without the safety checker. The
tokenizers' ``vocab.json``/``merges.txt`` are not here: see ``pipeline.domain.models.tokenizer``.
One file per architecture (rather than a folder tree) keeps them package data.
"""
