"""Disassemble the ESC/POS subset our renderer emits into one readable line per command.

Used to review golden files by eye and, in the tests, to prove a rendering is made only of
commands a printer knows (an unknown byte shows up as ``?? 0x..``).
"""

from __future__ import annotations

from collections.abc import Iterator

HT, LF = 0x09, 0x0A

# Commands of fixed length: prefix -> (number of parameter bytes, description).
_FIXED: dict[bytes, tuple[int, str]] = {
    b"\x1b@": (0, "ESC @ initialize"),
    b"\x1b!": (1, "ESC ! print mode"),
    b"\x1bE": (1, "ESC E bold"),
    b"\x1b-": (1, "ESC - underline"),
    b"\x1ba": (1, "ESC a align (0 left, 1 center, 2 right)"),
    b"\x1bt": (1, "ESC t code page"),
    b"\x1bd": (1, "ESC d print and feed lines"),
    b"\x1bp": (3, "ESC p drawer kick (pin, on, off)"),
    b"\x1d!": (1, "GS ! character size (high nibble width-1, low nibble height-1)"),
    b"\x1dB": (1, "GS B invert"),
    b"\x1dh": (1, "GS h barcode height"),
    b"\x1dw": (1, "GS w barcode module width"),
    b"\x1df": (1, "GS f barcode HRI font"),
    b"\x1dH": (1, "GS H barcode HRI position (0 none, 1 above, 2 below, 3 both)"),
}
_CUTS = {0: "full", 1: "partial", 48: "full", 49: "partial"}


def disassemble(data: bytes) -> Iterator[str]:
    """Yield one line per command or text run."""
    i = 0
    while i < len(data):
        two = data[i : i + 2]
        if two in _FIXED:
            n, what = _FIXED[two]
            yield f"{what}: {list(data[i + 2 : i + 2 + n])}"
            i += 2 + n
        elif two == b"\x1dV":
            yield f"GS V cut: {_CUTS.get(data[i + 2], data[i + 2])}"
            i += 3
        elif two == b"\x1dk":
            m = data[i + 2]
            if m <= 6:  # function A: NUL-terminated
                end = data.index(0, i + 3)
                yield f"GS k barcode A type {m}: {data[i + 3 : end]!r}"
                i = end + 1
            else:  # function B: length-prefixed
                n = data[i + 3]
                yield f"GS k barcode B type {m}: {data[i + 4 : i + 4 + n]!r}"
                i += 4 + n
        elif two == b"\x1d(" and data[i + 2 : i + 3] == b"k":
            n = data[i + 3] + 256 * data[i + 4]
            body = data[i + 5 : i + 5 + n]
            yield f"GS ( k 2D code: cn={body[:1]!r} fn={body[1:2]!r} {body[2:]!r}"
            i += 5 + n
        elif data[i : i + 3] == b"\x1dv0":
            width_bytes = data[i + 4] + 256 * data[i + 5]
            height = data[i + 6] + 256 * data[i + 7]
            yield f"GS v 0 raster image: mode {data[i + 3]}, {width_bytes * 8}x{height} dots"
            i += 8 + width_bytes * height
        elif data[i] in (LF, HT):
            yield "LF" if data[i] == LF else "HT"
            i += 1
        elif data[i] >= 0x20:
            j = i
            while j < len(data) and data[j] >= 0x20:
                j += 1
            yield f"text: {data[i:j]!r}"
            i = j
        else:
            yield f"?? {data[i]:#04x}"
            i += 1
