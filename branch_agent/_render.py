"""ESC/POS rendering with python-escpos (into memory; the backend sends the bytes).

Rendering is deterministic: the same content gives the same bytes, so a golden file can pin it.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import io
from typing import Final

from escpos.constants import QR_ECLEVEL_H, QR_ECLEVEL_L, QR_ECLEVEL_M, QR_ECLEVEL_Q
from escpos.printer import Dummy
from PIL import Image

from protocol import (
    MAX_COPIES,
    MAX_IMAGE_WIDTH,
    BarcodeBlock,
    Content,
    CutBlock,
    Document,
    DrawerBlock,
    FeedBlock,
    ImageBlock,
    QrBlock,
    RawContent,
    SeparatorBlock,
    TextBlock,
)

_QR_EC = {"L": QR_ECLEVEL_L, "M": QR_ECLEVEL_M, "Q": QR_ECLEVEL_Q, "H": QR_ECLEVEL_H}
_BARCODE_TEXT = {"none": "OFF", "above": "ABOVE", "below": "BELOW", "both": "BOTH"}
# ESC/POS function A codes are NUL-terminated, function B codes length-prefixed; CODE128 exists
# only in function B.
_BARCODE_FUNCTION = {"CODE128": "B"}


def render_content(content: Content, *, copies: int = 1) -> bytes:
    """ESC/POS bytes for print-job content, ``copies`` times over.

    A document starts each copy with ``ESC @`` (so no mode left by an earlier job leaks in) and
    is rendered block by block; raw content is passed through unchanged. ``content`` must come
    from :func:`protocol.decode_content` or :func:`protocol.validate_content`: the limits are
    checked there, not here.
    """
    if not 1 <= copies <= MAX_COPIES:
        raise ValueError(f"copies must be 1-{MAX_COPIES}, not {copies}")
    match content:
        case RawContent(data=data):
            one = data
        case Document():
            one = _render_document(content)
    return one * copies


def _render_document(document: Document) -> bytes:
    p = _canvas()
    p.hw("INIT")
    for block in document.blocks:
        match block:
            case TextBlock():
                # Every text block sets every style, so styles never leak from block to block.
                p.set(
                    align=block.align,
                    bold=block.bold,
                    underline=block.underline,
                    invert=block.invert,
                    custom_size=True,
                    width=block.width,
                    height=block.height,
                )
                p.textln(block.text)
            case SeparatorBlock(char=char):
                p.set(
                    align="left",
                    bold=False,
                    underline=0,
                    invert=False,
                    custom_size=True,
                    width=1,
                    height=1,
                )
                p.textln(char * document.width)
            case QrBlock():
                p.set(align=block.align)
                p.qr(block.data, ec=_QR_EC[block.error_correction], size=block.size, native=True)
            case BarcodeBlock():
                _barcode(p, block)
            case ImageBlock():
                p.set(align=block.align)
                with Image.open(io.BytesIO(block.data)) as image:
                    p.image(image, impl="bitImageRaster")
            case FeedBlock(lines=lines):
                p.print_and_feed(lines)
            case CutBlock(mode=mode):
                p.cut("PART" if mode == "partial" else "FULL")
            case DrawerBlock(pin=pin):
                p.cashdraw(pin)
    return bytes(p.output)


def _canvas() -> Dummy:
    """A Dummy printer whose profile knows the paper width.

    The default profile does not, and python-escpos then prints a notice to stdout for every
    image. The width goes into a private copy of the profile data: the profile class is shared.
    """
    p = Dummy()
    data = copy.deepcopy(p.profile.profile_data)
    data["media"]["width"]["pixels"] = MAX_IMAGE_WIDTH
    p.profile.profile_data = data
    return p


def _barcode(p: Dummy, block: BarcodeBlock) -> None:
    code = block.data
    if block.symbology == "CODE128":
        # Code set B; "{" starts a code-set escape in ESC/POS, so a literal one is doubled.
        code = "{B" + code.replace("{", "{{")
    p.set(align=block.align)
    # The hardware renderer directly: Escpos.barcode() would print a notice to stdout and may
    # fall back to a software-rendered image, which some other printer profile could trigger.
    p._hw_barcode(
        code,
        block.symbology,
        height=block.height,
        width=block.width,
        pos=_BARCODE_TEXT[block.text_position],
        font="A",
        align_ct=False,
        function_type=_BARCODE_FUNCTION.get(block.symbology, "A"),
    )


def render_test_page(
    *, branch_id: str, agent_id: str, printer: str, job_id: str, now: dt.datetime | None = None
) -> bytes:
    """The test page: branch, agent, printer, time, a QR code with the job id, and a cut.

    The QR code is sent as the printer's native command, so no image is rendered here. Only the
    job id and the time change from page to page: the page is rendered once per printer (and
    length of id and time) with placeholders, which each page then fills in.
    """
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M:%S %Z")
    template = _test_page_template(branch_id, agent_id, printer, len(job_id), len(stamp))
    if template is None:
        return _render_test_page(branch_id, agent_id, printer, job_id, stamp)
    return template.replace(_JOB_MARK * len(job_id), job_id.encode("ascii")).replace(
        _TIME_MARK * len(stamp), stamp.encode("ascii")
    )


# Characters no id and no time contains (ids are A-Z a-z 0-9 _ . -), ASCII in every code page.
_JOB_MARK: Final = b"~"
_TIME_MARK: Final = b"^"


@functools.lru_cache(maxsize=1024)
def _test_page_template(
    branch_id: str, agent_id: str, printer: str, id_len: int, stamp_len: int
) -> bytes | None:
    """The test page with placeholder job id and time, or None if they would not be unique."""
    page = _render_test_page(branch_id, agent_id, printer, "~" * id_len, "^" * stamp_len)
    # The id appears twice (text and QR code), the time once; anything else: render each page.
    if page.count(_JOB_MARK * id_len) != 2 or page.count(_TIME_MARK * stamp_len) != 1:
        return None
    if page.count(_JOB_MARK) != 2 * id_len or page.count(_TIME_MARK) != stamp_len:
        return None
    return page


def _render_test_page(
    branch_id: str, agent_id: str, printer: str, job_id: str, stamp: str
) -> bytes:
    p = Dummy()
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln("PrinterMaster")
    p.set(align="center", bold=False, normal_textsize=True)
    p.textln("Test page")
    p.textln("-" * 32)
    p.set(align="left", normal_textsize=True)
    p.textln(f"Branch:  {branch_id}")
    p.textln(f"Agent:   {agent_id}")
    p.textln(f"Printer: {printer}")
    p.textln(f"Time:    {stamp}")
    p.textln(f"Job:     {job_id}")
    p.set(align="center")
    p.qr(f"pm:test:{branch_id}:{printer}:{job_id}", native=True, size=6)
    p.textln("If you can read this, printing works.")
    p.cut()
    return bytes(p.output)
