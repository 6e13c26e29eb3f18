"""PNG/JPEG/GIF/TIFF images re-encoded from their pixels alone, so no metadata leaves with them.

A PNG's tEXt/iTXt/zTXt chunks, a JPEG's EXIF/XMP/COM segments, a TIFF's tags can all carry a
name or an ID. The pixels are decoded and written into a new image of the same format that has
no metadata of any kind (no text chunks, no EXIF, no ICC profile, no comments). JPEG is
re-encoded lossily (quality 95, no chroma subsampling): the only way to drop the segments
without parsing and trusting them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from medlake.errors import DatasetError
from medlake.vocab import MediaType

RASTER_FORMATS = {
    MediaType.PNG.value: "PNG",
    MediaType.JPEG.value: "JPEG",
    MediaType.GIF.value: "GIF",
    MediaType.TIFF.value: "TIFF",
}


class UnreadableImageError(DatasetError):
    """The image's pixels cannot be decoded, so it cannot be re-encoded clean."""


def reencode(source: Path, destination: Path, media_type: str) -> None:
    """Write the pixels of ``source`` as a fresh ``media_type`` image at ``destination`` (atomically)."""
    from PIL import Image, UnidentifiedImageError

    image_format = RASTER_FORMATS[media_type]
    try:
        with Image.open(source) as original:
            original.load()
            mode = original.mode
            if mode == "P" or (image_format == "JPEG" and mode not in ("L", "RGB", "CMYK")):
                mode = "RGB" if image_format == "JPEG" else "RGBA"
            pixels = original.convert(mode) if mode != original.mode else original
            fresh = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())  # info = {}: no metadata
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UnreadableImageError(f"{source.name}: the pixels cannot be decoded ({exc})") from exc
    options = {"quality": 95, "subsampling": 0} if image_format == "JPEG" else {}
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=destination.parent)
    os.close(fd)
    try:
        fresh.save(tmp_name, format=image_format, **options)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
