"""The content of a print job: what goes on paper, as strict msgspec Structs.

Two kinds, tagged by ``type``:

* ``document``: a structured receipt, a list of blocks (``text``, ``separator``, ``qr``,
  ``barcode``, ``image``, ``feed``, ``cut``, ``drawer``) that the agent renders to ESC/POS;
* ``raw``: ESC/POS bytes (base64 in JSON) passed to the printer unchanged.

Example::

    {"type": "document", "width": 48, "blocks": [
        {"type": "text", "text": "Trattoria Roma", "align": "center", "bold": true,
         "width": 2, "height": 2},
        {"type": "separator"},
        {"type": "text", "text": "1 x Margherita                         9.50"},
        {"type": "qr", "data": "https://example.com/r/1042", "size": 6},
        {"type": "cut", "mode": "partial"}]}

Unlike the envelope messages, content rejects unknown fields: a typo such as ``"algin"`` must be
a 422 naming the field, not a receipt printed differently from what was asked. Content evolves
by new block types and new fields with defaults; an older agent refuses content that uses them
(``INVALID_REQUEST``) instead of printing something else.

``copies`` is not content: how many times to print is an instruction of the print job, stored
and retried with the job. The print params carry it as a :data:`Copies` field next to the
content, and the agent passes it to ``render_content(content, copies=...)``.

Checks msgspec cannot express (barcode data per symbology, QR capacity, image format and pixel
size) run in ``__post_init__``, so they hold wherever content is decoded, also nested in other
messages. Every failure comes out as :class:`~protocol.DecodeError` whose message and ``path``
name the field, msgspec style: ``$.blocks[3].size``.
"""

from __future__ import annotations

import io
import re
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from ._errors import DecodeError, ErrorCode
from ._version import MAX_PAYLOAD_BYTES

#: Largest encoded content; the rest of an MQTT payload is left for the request envelope.
MAX_CONTENT_BYTES: Final = MAX_PAYLOAD_BYTES - 8 * 1024
#: Most blocks in one document.
MAX_BLOCKS: Final = 500
#: Most characters in one text block.
MAX_TEXT_CHARS: Final = 4096
#: Largest raw ESC/POS payload, decoded (base64 makes it a third larger on the wire).
MAX_RAW_BYTES: Final = 128 * 1024
#: Largest image file (PNG or JPEG), decoded.
MAX_IMAGE_BYTES: Final = 128 * 1024
#: Widest image: the printable width of an 80 mm printer at 203 dpi.
MAX_IMAGE_WIDTH: Final = 576
#: Tallest image, about 25 cm of paper.
MAX_IMAGE_HEIGHT: Final = 2000
#: Longest barcode data; longer codes do not fit on receipt paper anyway.
MAX_BARCODE_CHARS: Final = 80
#: Most copies of one print job.
MAX_COPIES: Final = 10

#: QR code capacity in bytes (version 40, byte mode) by error correction level.
QR_CAPACITY: Final[dict[str, int]] = {"L": 2953, "M": 2331, "Q": 1663, "H": 1273}

#: How many times a print job prints its content; a field of the print params, not of content.
Copies = Annotated[int, Meta(ge=1, le=MAX_COPIES)]

Align = Literal["left", "center", "right"]
Symbology = Literal["EAN13", "EAN8", "UPC-A", "CODE39", "CODE128", "ITF"]

# Control characters would let text smuggle ESC/POS commands to the printer; tab and newline are
# the only ones text may hold. Lone surrogates cannot be encoded for any printer.
_NO_CONTROLS = r"\A[^\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]*\Z"
_ONE_PRINTABLE = r"\A[^\x00-\x1f\x7f-\x9f\ud800-\udfff]\Z"


class _FieldError(ValueError):
    """A semantic check failed on one field of the Struct being decoded.

    msgspec turns a ``ValueError`` from ``__post_init__`` into a ValidationError located at the
    Struct; :func:`decode_error` appends ``field`` so the path names the field itself.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _TooLarge(ValueError):
    """The content, encoded, is over :data:`MAX_CONTENT_BYTES` (checked in ``__post_init__``)."""


class ContentTooLarge(DecodeError):
    """Content over :data:`MAX_CONTENT_BYTES`: no request carrying it fits in one MQTT message.
    A :class:`DecodeError` whose code is ``PAYLOAD_TOO_LARGE`` (HTTP 413, not 422)."""

    code = ErrorCode.PAYLOAD_TOO_LARGE


class _Strict(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Base of every content Struct."""


# --- blocks --------------------------------------------------------------------------------


class _Block(_Strict, kw_only=True, frozen=True, tag_field="type"):
    pass


class TextBlock(_Block, kw_only=True, frozen=True, tag="text"):
    """A line of text (or several, split by ``\\n``), ended by a line feed.

    ``width`` and ``height`` magnify each character (1-8); ``underline`` is 0 (off), 1 (thin)
    or 2 (thick); ``invert`` prints white on black.
    """

    text: Annotated[str, Meta(max_length=MAX_TEXT_CHARS, pattern=_NO_CONTROLS)]
    align: Align = "left"
    bold: bool = False
    underline: Annotated[int, Meta(ge=0, le=2)] = 0
    width: Annotated[int, Meta(ge=1, le=8)] = 1
    height: Annotated[int, Meta(ge=1, le=8)] = 1
    invert: bool = False


class SeparatorBlock(_Block, kw_only=True, frozen=True, tag="separator"):
    """A full line of ``char``, as wide as the document."""

    char: Annotated[str, Meta(pattern=_ONE_PRINTABLE)] = "-"


class QrBlock(_Block, kw_only=True, frozen=True, tag="qr"):
    """A QR code drawn by the printer itself; ``size`` is the module size in dots (1-16)."""

    data: Annotated[str, Meta(min_length=1, max_length=QR_CAPACITY["L"])]
    size: Annotated[int, Meta(ge=1, le=16)] = 6
    error_correction: Literal["L", "M", "Q", "H"] = "M"
    align: Align = "center"

    def __post_init__(self) -> None:
        try:
            size = len(self.data.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise _FieldError("data", "QR data must be valid Unicode text") from exc
        limit = QR_CAPACITY[self.error_correction]
        if size > limit:
            raise _FieldError(
                "data",
                f"QR data of {size} bytes exceeds the {limit} bytes a QR code holds "
                f"at error correction {self.error_correction}",
            )


class BarcodeBlock(_Block, kw_only=True, frozen=True, tag="barcode"):
    """A 1D barcode drawn by the printer.

    ``data`` is checked against the symbology: EAN13, EAN8 and UPC-A take all their digits
    (13, 8, 12) including a correct check digit; ITF an even number of digits; CODE39 digits,
    capitals and `` $%+-./``; CODE128 printable ASCII. ``height`` is in dots (1-255), ``width``
    is the module width in dots (2-6).
    """

    symbology: Symbology
    data: Annotated[str, Meta(min_length=1, max_length=MAX_BARCODE_CHARS)]
    height: Annotated[int, Meta(ge=1, le=255)] = 80
    width: Annotated[int, Meta(ge=2, le=6)] = 3
    text_position: Literal["none", "above", "below", "both"] = "below"
    align: Align = "center"

    def __post_init__(self) -> None:
        problem = _barcode_problem(self.symbology, self.data)
        if problem:
            raise _FieldError("data", problem)


class ImageBlock(_Block, kw_only=True, frozen=True, tag="image"):
    """A PNG or JPEG image (base64 in JSON), printed in black and white, dithered."""

    data: Annotated[bytes, Meta(min_length=1, max_length=MAX_IMAGE_BYTES)]
    align: Align = "center"

    def __post_init__(self) -> None:
        _check_image(self.data)


class FeedBlock(_Block, kw_only=True, frozen=True, tag="feed"):
    """Feed the paper by ``lines`` lines."""

    lines: Annotated[int, Meta(ge=1, le=255)] = 1


class CutBlock(_Block, kw_only=True, frozen=True, tag="cut"):
    """Feed past the cutter and cut: ``full`` or ``partial`` (leaves a hinge)."""

    mode: Literal["full", "partial"] = "full"


class DrawerBlock(_Block, kw_only=True, frozen=True, tag="drawer"):
    """Kick the cash drawer wired to connector pin 2 or 5."""

    pin: Literal[2, 5] = 2


Block = (
    TextBlock
    | SeparatorBlock
    | QrBlock
    | BarcodeBlock
    | ImageBlock
    | FeedBlock
    | CutBlock
    | DrawerBlock
)


# --- content -------------------------------------------------------------------------------


class _Content(_Strict, kw_only=True, frozen=True, tag_field="type"):
    def __post_init__(self) -> None:
        # The size limit lives in the Struct, like the image checks: it holds wherever content
        # is decoded, alone or nested in another message (a submitted job, a print request),
        # by the one decode that also checks everything else.
        _check_size(len(_encoder.encode(self)))


class Document(_Content, kw_only=True, frozen=True, tag="document"):
    """A structured receipt; ``width`` is characters per line (32 on 58 mm, 42 or 48 on 80 mm)."""

    blocks: Annotated[tuple[Block, ...], Meta(min_length=1, max_length=MAX_BLOCKS)]
    width: Annotated[int, Meta(ge=16, le=80)] = 48


class RawContent(_Content, kw_only=True, frozen=True, tag="raw"):
    """ESC/POS bytes sent to the printer as they are (base64 in JSON)."""

    data: Annotated[bytes, Meta(min_length=1, max_length=MAX_RAW_BYTES)]


Content = Document | RawContent

_decoder: msgspec.json.Decoder[Content] = msgspec.json.Decoder(Content)
_encoder = msgspec.json.Encoder()


def decode_content(data: bytes) -> Content:
    """Decode print-job content from JSON; raises :class:`DecodeError` naming the field
    (:class:`ContentTooLarge` over the size limit)."""
    if len(data) > MAX_CONTENT_BYTES:  # refused before any decoding: the cheap check first
        raise ContentTooLarge(
            f"invalid content: {len(data)} bytes exceeds the {MAX_CONTENT_BYTES} byte limit"
            " - at `$`",
            path="$",
        )
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise decode_error("invalid content", exc) from exc


def validate_content(obj: object) -> Content:
    """Validate print-job content given as Python objects, e.g. a parsed JSON body.

    Applies the same checks as :func:`decode_content`. Bytes fields may be given as base64
    strings or as ``bytes``. A content Struct built in Python is checked again in full.
    """
    if isinstance(obj, msgspec.Struct):
        obj = msgspec.to_builtins(obj)
    try:
        content: Content = msgspec.convert(obj, Content)
    except msgspec.ValidationError as exc:
        raise decode_error("invalid content", exc) from exc
    return content


_AT = re.compile(r" - at `(\$[^`]*)`\Z")


def decode_error(what: str, exc: Exception) -> DecodeError:
    """Translate a msgspec error into a :class:`DecodeError` whose ``path`` names the field.

    A failed semantic check is located by msgspec at its Struct; the field it names is
    appended, so ``$.blocks[3]`` becomes ``$.blocks[3].data``. Content over the size limit
    comes out as :class:`ContentTooLarge`.
    """
    message = str(exc)
    match = _AT.search(message)
    path = match.group(1) if match else "$"
    reason = message[: match.start()] if match else message
    cause = exc.__cause__
    if isinstance(exc, msgspec.ValidationError) and isinstance(cause, _FieldError):
        path = f"{path}.{cause.field}"
    kind = ContentTooLarge if isinstance(cause, _TooLarge) else DecodeError
    return kind(f"{what}: {reason} - at `{path}`", path=path)


def _check_size(size: int) -> None:
    if size > MAX_CONTENT_BYTES:
        raise _TooLarge(f"{size} bytes exceeds the {MAX_CONTENT_BYTES} byte limit")


# --- semantic checks -----------------------------------------------------------------------

_BARCODE_CHARSETS: Final[dict[str, tuple[re.Pattern[str], str]]] = {
    "EAN13": (re.compile(r"[0-9]{13}"), "13 digits"),
    "EAN8": (re.compile(r"[0-9]{8}"), "8 digits"),
    "UPC-A": (re.compile(r"[0-9]{12}"), "12 digits"),
    "ITF": (re.compile(r"(?:[0-9]{2})+"), "an even number of digits"),
    "CODE39": (re.compile(r"[0-9A-Z $%+\-./]+"), "digits, capitals, space and $%+-./"),
    "CODE128": (re.compile(r"[\x20-\x7e]+"), "printable ASCII"),
}


def _barcode_problem(symbology: str, data: str) -> str | None:
    pattern, expected = _BARCODE_CHARSETS[symbology]
    if not pattern.fullmatch(data):
        return f"{symbology} data must be {expected}"
    if symbology in ("EAN13", "EAN8", "UPC-A"):
        check = gtin_check_digit(data[:-1])
        if int(data[-1]) != check:
            return f"{symbology} check digit is {data[-1]}, expected {check}"
    return None


def gtin_check_digit(digits: str) -> int:
    """The check digit of an EAN-13, EAN-8 or UPC-A code, given all digits before it."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return -total % 10


def _check_image(data: bytes) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as image:
            width, height = image.size
            if width > MAX_IMAGE_WIDTH or height > MAX_IMAGE_HEIGHT:
                raise _FieldError(
                    "data",
                    f"image is {width}x{height} px; "
                    f"at most {MAX_IMAGE_WIDTH}x{MAX_IMAGE_HEIGHT} px fit",
                )
            # Decode every pixel and convert as the renderer will, so a truncated file or an
            # exotic pixel mode is refused here rather than failing at the printer.
            image.convert("RGBA")
    except _FieldError:
        raise
    except Exception as exc:  # Pillow raises many kinds on hostile input; all mean "unreadable"
        raise _FieldError("data", f"not a readable PNG or JPEG image ({exc})") from exc
