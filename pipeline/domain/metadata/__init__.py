"""AUTOMATIC1111 ``parameters`` metadata: the infotext, and carrying it inside image files.

``infotext`` writes and reads the text, ``importing`` maps a read text to a nanke request (with
notes on what nanke cannot honour), ``imagefile`` embeds and extracts it in PNG, WebP and JPEG.
"""

from __future__ import annotations

from pipeline.domain.metadata.imagefile import (
    EncodedImage,
    UploadTooLarge,
    encode_for_upload,
    read_parameters,
    write_png,
)
from pipeline.domain.metadata.importing import strip_network_tags
from pipeline.domain.metadata.infotext import ParsedInfotext, format_infotext, parse_infotext

__all__ = [
    "EncodedImage",
    "ParsedInfotext",
    "UploadTooLarge",
    "encode_for_upload",
    "format_infotext",
    "parse_infotext",
    "read_parameters",
    "strip_network_tags",
    "write_png",
]
