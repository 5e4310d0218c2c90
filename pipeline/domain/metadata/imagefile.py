"""The ``parameters`` text inside image files: PNG text chunks, JPEG/WebP EXIF UserComment.

PNG carries it as a ``parameters`` text chunk: ``tEXt`` when the text is Latin-1, ``iTXt``
(UTF-8) otherwise, as A1111 does. JPEG and WebP carry it in EXIF UserComment (tag 0x9286) as the
EXIF standard and piexif's helper write it: ``b"UNICODE\\0"`` and the text in UTF-16 big-endian.
The EXIF block is built here because Pillow types a ``bytes`` value as BYTE, which piexif (and so
A1111) reads back as a tuple of numbers; the standard type for UserComment is UNDEFINED.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import ExifTags, Image, PngImagePlugin

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"
WEBP_QUALITIES: tuple[int, ...] = (95, 90, 85, 80, 75, 70)
JPEG_QUALITIES: tuple[int, ...] = (95, 90, 85, 80, 75, 70, 60)

_UNICODE = b"UNICODE\x00"
_ASCII = b"ASCII\x00\x00\x00"
_JIS = b"JIS\x00\x00\x00\x00\x00"
_UNDEFINED_CHARSET = b"\x00" * 8
_TIFF_LONG, _TIFF_UNDEFINED = 4, 7
_BYTE_ORDER_EVIDENCE = 8

ImageFormat = Literal["png", "webp", "jpeg"]
LossyFormat = Literal["webp", "jpeg"]


class UploadTooLarge(PipelineError):
    """The image does not fit the upload limit even as the smallest JPEG nanke will make."""

    def __init__(self, smallest: int, max_bytes: int) -> None:
        self.smallest = smallest
        self.max_bytes = max_bytes
        super().__init__(
            f"the image is still {smallest:,} bytes as a quality-{JPEG_QUALITIES[-1]} JPEG, "
            f"over the upload limit of {max_bytes:,} bytes"
        )


@dataclass(frozen=True)
class EncodedImage:
    """An encoded image file and how to name it."""

    data: bytes
    format: ImageFormat
    suffix: str
    quality: int | None = None


# -- writing ------------------------------------------------------------------------------------

PNG_COMPRESS_LEVEL = 3
"""zlib's level for stored PNGs: about twice as fast as Pillow's default 6, files a few per cent
larger, pixels the same (PNG is lossless)."""


def write_png(image: Image.Image, parameters: str) -> bytes:
    """``image`` as PNG with ``parameters`` in a ``tEXt`` chunk, or ``iTXt`` when not Latin-1."""
    info = PngImagePlugin.PngInfo()
    try:
        parameters.encode("latin-1")
    except UnicodeEncodeError:
        info.add_itxt(PARAMETERS_KEY, parameters)
    else:
        info.add_text(PARAMETERS_KEY, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def write_lossy(image: Image.Image, parameters: str, *, kind: LossyFormat, quality: int) -> bytes:
    """``image`` as WebP or JPEG at ``quality`` with ``parameters`` in EXIF UserComment."""
    if kind == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=kind.upper(), quality=quality, exif=exif_with_user_comment(parameters))
    return buffer.getvalue()


def encode_for_upload(image: Image.Image, parameters: str, *, max_bytes: int) -> EncodedImage:
    """The best file of ``image`` no larger than ``max_bytes``, carrying ``parameters``.

    PNG when it fits; else WebP from quality 95 down; else JPEG from quality 95 down (JPEG also
    covers images wider or taller than WebP's 16383 pixels). Raises :class:`UploadTooLarge`.
    """
    data = write_png(image, parameters)
    if len(data) <= max_bytes:
        return EncodedImage(data, "png", ".png")
    log.info("PNG is %d bytes, over %d: trying WebP and JPEG", len(data), max_bytes)
    ladder: tuple[tuple[LossyFormat, int], ...] = (
        *(("webp", quality) for quality in WEBP_QUALITIES),
        *(("jpeg", quality) for quality in JPEG_QUALITIES),
    )
    smallest = len(data)
    for kind, quality in ladder:
        try:
            data = write_lossy(image, parameters, kind=kind, quality=quality)
        except (OSError, ValueError) as error:
            log.info("cannot encode %dx%d as %s: %s", image.width, image.height, kind, error)
            continue
        if len(data) <= max_bytes:
            log.info("encoded as %s quality %d: %d bytes", kind, quality, len(data))
            return EncodedImage(data, kind, ".jpg" if kind == "jpeg" else ".webp", quality)
        smallest = min(smallest, len(data))
    raise UploadTooLarge(smallest, max_bytes)


def exif_with_user_comment(text: str) -> bytes:
    """A big-endian EXIF block (with its ``Exif\\0\\0`` header) holding only UserComment = ``text``."""
    comment = _UNICODE + text.encode("utf-16-be")
    exif_ifd_offset = 8 + 2 + 12 + 4  # TIFF header, then IFD0: count, one entry, next-IFD offset
    data_offset = exif_ifd_offset + 2 + 12 + 4
    return b"".join(
        (
            b"Exif\x00\x00MM\x00\x2a",
            struct.pack(">I", 8),
            struct.pack(">HHHII", 1, ExifTags.IFD.Exif, _TIFF_LONG, 1, exif_ifd_offset),
            struct.pack(">I", 0),
            struct.pack(">HHHII", 1, ExifTags.Base.UserComment, _TIFF_UNDEFINED, len(comment), data_offset),
            struct.pack(">I", 0),
            comment,
        )
    )


# -- reading ------------------------------------------------------------------------------------


def read_parameters(data: bytes) -> str | None:
    """The A1111 ``parameters`` text of a PNG, JPEG or WebP file, or ``None`` when it has none.

    Looks at the PNG ``parameters`` text chunk, then EXIF UserComment, then a JPEG comment that
    looks like infotext (has ``Steps:``). Never raises: a file that is not an image, is cut short
    or has a corrupt part has no readable parameters there (each place is read on its own, so a
    corrupt EXIF block does not hide a good PNG text chunk). Pillow's readers can fail on hostile
    files with nearly any exception (``SyntaxError`` from the TIFF reader inside EXIF, ``struct``
    and index errors), so every exception counts as "nothing readable".
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            for reader in (_png_text, _exif_comment, _file_comment):
                text = _read_quietly(reader, image)
                if text:
                    return text
    except Exception as error:
        log.debug("no parameters: cannot read the image: %s: %s", type(error).__name__, error)
    return None


def _read_quietly(reader: Callable[[Image.Image], str | None], image: Image.Image) -> str | None:
    try:
        return reader(image)
    except Exception as error:
        log.debug("no parameters from %s: %s: %s", reader.__name__, type(error).__name__, error)
        return None


def _png_text(image: Image.Image) -> str | None:
    if not isinstance(image, PngImagePlugin.PngImageFile):
        return None
    text = image.text.get(PARAMETERS_KEY)
    return str(text) if text else None


def _exif_comment(image: Image.Image) -> str | None:
    exif = image.getexif()
    comment = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.UserComment)
    if not comment:
        return None
    raw = comment if isinstance(comment, bytes) else str(comment).encode()
    return decode_user_comment(raw, little_endian=exif.endian == "<")


def _file_comment(image: Image.Image) -> str | None:
    comment = image.info.get("comment")
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", errors="replace")
    return comment.strip() if isinstance(comment, str) and "Steps:" in comment else None


def decode_user_comment(value: bytes, *, little_endian: bool = False) -> str | None:
    """The text of an EXIF UserComment: UNICODE (UTF-16, either byte order), ASCII, JIS or none.

    ``little_endian`` says the EXIF block is little-endian (``II``), the byte order the standard
    gives UNICODE comments there; A1111 writes big-endian blocks.
    """
    prefix, body = value[:8], value[8:]
    if prefix == _UNICODE:
        text = body.decode(_utf16_codec(body, little_endian=little_endian), errors="replace")
    elif prefix == _JIS:
        text = body.decode("shift_jis", errors="replace")
    elif prefix in (_ASCII, _UNDEFINED_CHARSET):
        text = body.decode("utf-8", errors="replace")
    else:
        text = value.decode("utf-8", errors="replace")
    text = text.lstrip("\ufeff").strip("\x00").strip()
    return text or None


def _utf16_codec(body: bytes, *, little_endian: bool) -> str:
    """``utf-16`` with a byte-order mark; else the block's byte order unless the text says otherwise.

    Some tools ignore the block's byte order. Infotext is mostly ASCII, whose UTF-16 code units
    have one zero byte: first in big-endian, second in little-endian. Clear evidence for the other
    order (at least :data:`_BYTE_ORDER_EVIDENCE` such units, and twice as many) switches to it.
    """
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return "utf-16"
    pairs = list(zip(body[0::2], body[1::2], strict=False))  # an odd last byte has no pair
    big = sum(1 for high, low in pairs if high == 0 and low != 0)
    little = sum(1 for low, high in pairs if high == 0 and low != 0)
    usual, other = (little, big) if little_endian else (big, little)
    if other >= _BYTE_ORDER_EVIDENCE and other > 2 * usual:
        little_endian = not little_endian
    return "utf-16-le" if little_endian else "utf-16-be"
