"""``parameters`` inside PNG, WebP and JPEG files, and the upload encoder's fallbacks."""

from __future__ import annotations

import io
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, PngImagePlugin

from pipeline.domain.metadata import UploadTooLarge, encode_for_upload, read_parameters, write_png
from pipeline.domain.metadata.imagefile import decode_user_comment, exif_with_user_comment, write_lossy

LATIN = "a cat, best quality\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7"
UNICODE = "一只猫, ünïcode 🐱\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 64x64"


def _image(size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, (200, 30, 30))


def _noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))


def _jpeg_with_exif(exif: Image.Exif | bytes, **extra: object) -> bytes:
    buffer = io.BytesIO()
    _image().save(buffer, format="JPEG", exif=exif, **extra)
    return buffer.getvalue()


# -- PNG ----------------------------------------------------------------------------------------


def test_png_latin1_uses_text_chunk() -> None:
    data = write_png(_image(), LATIN)
    assert b"tEXtparameters\x00" in data and b"iTXt" not in data
    assert Image.open(io.BytesIO(data)).info["parameters"] == LATIN
    assert read_parameters(data) == LATIN


def test_png_non_latin1_uses_itxt_chunk() -> None:
    data = write_png(_image(), UNICODE)
    assert b"iTXtparameters\x00" in data and b"tEXt" not in data
    assert Image.open(io.BytesIO(data)).info["parameters"] == UNICODE
    assert read_parameters(data) == UNICODE


def test_png_keeps_pixels_and_alpha() -> None:
    image = Image.new("RGBA", (8, 8), (1, 2, 3, 4))
    assert Image.open(io.BytesIO(write_png(image, LATIN))).getpixel((0, 0)) == (1, 2, 3, 4)


# -- EXIF UserComment ---------------------------------------------------------------------------


def test_exif_block_is_a1111_user_comment() -> None:
    block = exif_with_user_comment(UNICODE)
    comment = b"UNICODE\x00" + UNICODE.encode("utf-16-be")
    assert block.startswith(b"Exif\x00\x00MM\x00\x2a")
    assert struct.pack(">HHI", ExifTags.Base.UserComment, 7, len(comment)) in block  # type UNDEFINED
    assert block.endswith(comment)
    exif = Image.Exif()
    exif.load(block[6:])
    assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] == comment


@pytest.mark.parametrize("kind", ["webp", "jpeg"])
@pytest.mark.parametrize("text", [LATIN, UNICODE])
def test_lossy_round_trip(kind: str, text: str) -> None:
    data = write_lossy(_image(), text, kind=kind, quality=90)  # type: ignore[arg-type]
    assert Image.open(io.BytesIO(data)).format == kind.upper()
    assert read_parameters(data) == text


def test_jpeg_from_rgba_is_flattened() -> None:
    data = write_lossy(Image.new("RGBA", (8, 8)), LATIN, kind="jpeg", quality=90)
    assert read_parameters(data) == LATIN


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"UNICODE\x00" + "héllo 猫".encode("utf-16-be"), "héllo 猫"),
        (b"UNICODE\x00" + "héllo, Steps: 20".encode("utf-16-le"), "héllo, Steps: 20"),
        (b"UNICODE\x00" + "Ā".encode("utf-16-be"), "Ā"),
        (b"UNICODE\x00" + "bom".encode("utf-16"), "bom"),
        (b"ASCII\x00\x00\x00Steps: 20\x00", "Steps: 20"),
        (b"\x00" * 8 + "utf8 ü".encode(), "utf8 ü"),
        (b"JIS\x00\x00\x00\x00\x00" + "猫".encode("shift_jis"), "猫"),
        (b"plain text without prefix", "plain text without prefix"),
        (b"ASCII\x00\x00\x00        ", None),
    ],
)
def test_decode_user_comment(raw: bytes, text: str | None) -> None:
    assert decode_user_comment(raw) == text


def test_little_endian_block_means_little_endian_comment() -> None:
    assert decode_user_comment(b"UNICODE\x00" + "Ā".encode("utf-16-le"), little_endian=True) == "Ā"
    assert decode_user_comment(b"UNICODE\x00" + LATIN.encode("utf-16-be"), little_endian=True) == LATIN


def test_reads_little_endian_comment_written_as_bytes_by_another_tool() -> None:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\x00" + LATIN.encode("utf-16-le")
    assert read_parameters(_jpeg_with_exif(exif)) == LATIN


def test_reads_jpeg_comment_only_when_it_looks_like_infotext() -> None:
    assert read_parameters(_jpeg_with_exif(b"", comment=LATIN.encode())) == LATIN
    assert read_parameters(_jpeg_with_exif(b"", comment=b"Created with GIMP")) is None


def test_nothing_to_read() -> None:
    buffer = io.BytesIO()
    _image().save(buffer, format="PNG")
    assert read_parameters(buffer.getvalue()) is None
    assert read_parameters(b"not an image at all") is None


# -- broken files: no readable parameters, never a crash -----------------------------------------

CORRUPT_EXIF = b"Exif\x00\x00XXXX not a TIFF header"  # Pillow's EXIF reader raises SyntaxError on it


def _saved(kind: str, **extra: object) -> bytes:
    buffer = io.BytesIO()
    _image((8, 8)).save(buffer, format=kind, **extra)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["WEBP", "PNG", "JPEG"])
def test_corrupt_exif_means_no_parameters(kind: str) -> None:
    assert read_parameters(_saved(kind, exif=CORRUPT_EXIF)) is None


def test_corrupt_exif_does_not_hide_the_other_places() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", LATIN)
    assert read_parameters(_saved("PNG", exif=CORRUPT_EXIF, pnginfo=info)) == LATIN
    assert read_parameters(_saved("JPEG", exif=CORRUPT_EXIF, comment=LATIN.encode())) == LATIN


@pytest.mark.parametrize("kind", ["png", "webp", "jpeg"])
def test_truncated_files_give_the_text_or_nothing(kind: str) -> None:
    image = _image((16, 16))
    data = write_png(image, LATIN) if kind == "png" else write_lossy(image, LATIN, kind=kind, quality=80)  # type: ignore[arg-type]
    for length in range(0, len(data), 3):
        assert read_parameters(data[:length]) in (None, LATIN), length


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL.TiffImagePlugin")
@pytest.mark.parametrize(
    "head",
    [
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\x00\x01\x00\x00WEBPVP8X",
        b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM",
        b"II*\x00",
    ],
)
def test_garbage_after_a_real_header_means_no_parameters(head: bytes) -> None:
    for seed in range(20):
        garbage = bytes((seed * 7919 + i * 104729) % 251 for i in range(300))
        assert read_parameters(head + garbage) is None


@settings(max_examples=40, deadline=None)
# A leading U+FEFF would read as a UTF-16 byte-order mark; NUL cannot be in a PNG text chunk.
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff"), max_size=300))
def test_any_text_round_trips(text: str) -> None:
    text = text.strip()
    if not text:
        return
    image = _image((8, 8))
    assert read_parameters(write_png(image, text)) == text
    assert read_parameters(write_lossy(image, text, kind="jpeg", quality=80)) == text
    assert read_parameters(write_lossy(image, text, kind="webp", quality=80)) == text


# -- encode_for_upload --------------------------------------------------------------------------


def test_upload_is_png_when_it_fits() -> None:
    encoded = encode_for_upload(_image(), LATIN, max_bytes=10_000_000)
    assert (encoded.format, encoded.suffix, encoded.quality) == ("png", ".png", None)
    assert read_parameters(encoded.data) == LATIN


def test_upload_falls_back_to_webp() -> None:
    image = _noise((512, 512))
    limit = len(write_png(image, UNICODE)) - 1
    encoded = encode_for_upload(image, UNICODE, max_bytes=limit)
    assert (encoded.format, encoded.suffix, encoded.quality) == ("webp", ".webp", 95)
    assert len(encoded.data) <= limit
    assert Image.open(io.BytesIO(encoded.data)).size == (512, 512)
    assert read_parameters(encoded.data) == UNICODE


def test_upload_lowers_webp_quality_until_it_fits() -> None:
    image = _noise((512, 512))
    at_95 = len(write_lossy(image, LATIN, kind="webp", quality=95))
    encoded = encode_for_upload(image, LATIN, max_bytes=at_95 - 1)
    assert encoded.format == "webp" and encoded.quality is not None and encoded.quality < 95


def test_upload_falls_back_to_jpeg_past_webp_size_limit() -> None:
    image = _noise((16400, 16))  # wider than WebP's 16383-pixel limit
    encoded = encode_for_upload(image, LATIN, max_bytes=len(write_png(image, LATIN)) - 1)
    assert (encoded.format, encoded.suffix) == ("jpeg", ".jpg")
    assert Image.open(io.BytesIO(encoded.data)).format == "JPEG"
    assert read_parameters(encoded.data) == LATIN


def test_upload_too_large_even_as_smallest_jpeg() -> None:
    with pytest.raises(UploadTooLarge, match="over the upload limit of 1,000 bytes") as caught:
        encode_for_upload(_noise((512, 512)), LATIN, max_bytes=1000)
    assert caught.value.max_bytes == 1000 and caught.value.smallest > 1000
