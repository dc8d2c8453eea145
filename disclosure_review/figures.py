"""Figure re-encoding for release (rule 8): keep the pixels, drop everything else.

A PNG/JPEG can carry text chunks, EXIF, ICC profiles, or bytes appended after the image
end; decoding to pixels and encoding a fresh file removes all of them.
"""

from __future__ import annotations

from pathlib import Path

from disclosure_review.errors import UnreadableOutputError


def reencode_image(source: Path, target: Path) -> None:
    """Write ``source``'s pixels to ``target`` as a fresh PNG or JPEG without metadata.

    The format follows ``target``'s suffix (``.png``, ``.jpg``/``.jpeg``).

    Raises
    ------
    UnreadableOutputError
        ``source`` is not a readable image, or ``target`` has another suffix.
    """
    from PIL import Image, UnidentifiedImageError

    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(target.suffix.lower())
    if fmt is None:
        raise UnreadableOutputError(f"{target}: re-encode to .png or .jpg only")
    try:
        with Image.open(source) as image:
            mode = "RGB" if fmt == "JPEG" else ("RGBA" if "A" in image.getbands() else "RGB")
            pixels = image.convert(mode)
    except (UnidentifiedImageError, OSError) as exc:
        raise UnreadableOutputError(f"{source}: not a readable image") from exc
    # A new image from raw pixel data carries no info dict, EXIF or ICC profile.
    clean = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    clean.save(target, format=fmt)
