"""Branding images: accept only a sane PNG, JPEG or WebP, then re-encode it small and without metadata.
Pillow decodes synchronously, so `process_image` runs in a worker thread, never on the event loop."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib

import msgspec
from PIL import Image, ImageOps

from libs.bus import BadRequest

__all__ = [
    "AVATAR_SIZE",
    "BANNER_BOX",
    "DECODE_ERRORS",
    "MAX_PIXELS",
    "OUTPUT_CONTENT_TYPE",
    "Processed",
    "process_image",
]

# Checked from the header before anything is decoded: 40 million pixels is 160 MB as RGBA.
MAX_PIXELS = 40_000_000
AVATAR_SIZE = (256, 256)
BANNER_BOX = (1200, 480)
OUTPUT_CONTENT_TYPE = "image/webp"
_FORMATS = ("PNG", "JPEG", "WEBP")

# Pillow's own guard as a second line: it warns above MAX_IMAGE_PIXELS and raises above twice that.
# We *need* the warning to be an error too, otherwise a bomb slipping past our check would only be logged.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# What Pillow's decoders raise on bytes that are cut short or corrupt.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class Processed(msgspec.Struct, frozen=True, kw_only=True):
    """A re-encoded image ready to store; `etag` is the SHA-256 (hex) of `data`."""

    data: bytes
    content_type: str
    width: int
    height: int
    etag: str


def _read_header(data: bytes, declared: str) -> str:
    """The format, from the header alone; the dimensions are checked before any pixel is decoded."""
    if not data:
        raise BadRequest("image body is empty", code="invalid_image")
    Image.init()
    prefix = data[:16]
    for fmt in _FORMATS:
        # Image.open would run Pillow's bomb check (whose message gives no dimensions) before ours,
        # so the header is parsed with the format's registered factory directly.
        factory, accept = Image.OPEN[fmt]
        looks_like = accept(prefix) if accept is not None else True
        if not looks_like or isinstance(looks_like, str):
            continue
        try:
            with factory(io.BytesIO(data), "") as header:
                width, height = header.size
        except DECODE_ERRORS:
            raise BadRequest("image is truncated or corrupt", code="corrupt_image") from None
        if width * height > MAX_PIXELS:
            raise BadRequest(
                f"image is {width}x{height} pixels; at most {MAX_PIXELS} pixels are accepted",
                code="image_too_large",
            )
        return fmt
    raise BadRequest(f'not a PNG, JPEG or WebP image (sent as "{declared}")', code="unsupported_image")


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=(fmt,))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequest(f"image is too large to decode: {exc}", code="image_too_large") from None
    except DECODE_ERRORS:
        raise BadRequest("image is truncated or corrupt", code="corrupt_image") from None


def _decode(img: Image.Image, box: tuple[int, int]) -> Image.Image:
    """Decode every pixel (a truncated file fails here), upright and in RGB or RGBA."""
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale for free when the output is small anyway.
        img.draft(None, box)
        img.load()
        upright = ImageOps.exif_transpose(img)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        return upright.convert("RGBA" if has_alpha else "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequest(f"image is too large to decode: {exc}", code="image_too_large") from None
    except DECODE_ERRORS:
        raise BadRequest("image is truncated or corrupt", code="corrupt_image") from None


def _resize(img: Image.Image, kind: str) -> Image.Image:
    if kind == "avatar":
        return ImageOps.fit(img, AVATAR_SIZE, Image.Resampling.LANCZOS)
    banner = img.copy()
    banner.thumbnail(BANNER_BOX, Image.Resampling.LANCZOS)
    return banner


def process_image(data: bytes, kind: str, declared: str = "") -> Processed:
    """Check and re-encode an upload: avatars center-cropped to 256x256, banners fit into 1200x480."""
    fmt = _read_header(data, declared)
    with _open(data, fmt) as img:
        box = AVATAR_SIZE if kind == "avatar" else BANNER_BOX
        out = _resize(_decode(img, box), kind)
    out.info = {}  # no EXIF, XMP, ICC or text chunks leave this function
    buf = io.BytesIO()
    out.save(buf, "WEBP", quality=85, method=4)
    encoded = buf.getvalue()
    return Processed(
        data=encoded,
        content_type=OUTPUT_CONTENT_TYPE,
        width=out.width,
        height=out.height,
        etag=hashlib.sha256(encoded).hexdigest(),
    )
