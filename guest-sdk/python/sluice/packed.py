"""The `packed` value format (see host/packed): fields concatenated in schema order.

`bool` 1 byte; `i32` 4 and `i64` 8 bytes little-endian; `f64` 8 bytes IEEE 754;
`str` and `bytes` a 4-byte little-endian length, then the bytes.
"""

import struct
from typing import Optional

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")


class PackedError(ValueError):
    """A packed value that is shorter than its fields, or a str that is not UTF-8."""


class PackedReader:
    """Reads the fields of one packed value in order: `value`, or the bytes
    `value[start:end]` of a larger buffer (the SDK passes the batch's value column, so
    reading a field copies nothing but the field)."""

    __slots__ = ("_buf", "_pos", "_start", "_end")

    def __init__(self, value: bytes, start: int = 0, end: Optional[int] = None):
        self._buf = value
        self._pos = self._start = start
        self._end = len(value) if end is None else end

    def _short(self, what: str) -> PackedError:
        return PackedError(
            f"packed value too short: {what} at byte {self._pos - self._start} "
            f"of {self._end - self._start}"
        )

    def _take(self, s: struct.Struct, what: str):
        pos = self._pos
        end = pos + s.size
        if end > self._end:
            raise self._short(what)
        self._pos = end
        return s.unpack_from(self._buf, pos)[0]

    def bool(self) -> bool:
        if self._pos >= self._end:
            raise self._short("bool")
        v = self._buf[self._pos]
        self._pos += 1
        return v != 0

    def i32(self) -> int:
        return self._take(_I32, "i32")

    def i64(self) -> int:
        return self._take(_I64, "i64")

    def f64(self) -> float:
        return self._take(_F64, "f64")

    def bytes(self) -> bytes:
        n = self._take(_U32, "length")
        end = self._pos + n
        if end > self._end:
            raise self._short(f"{n} bytes")
        v = self._buf[self._pos:end]
        self._pos = end
        return bytes(v)

    def str(self) -> str:
        at = self._pos - self._start
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise PackedError(f"str at byte {at} is not UTF-8: {e}") from None


class PackedWriter:
    """Appends fields to a `bytearray`; `value()` is the packed value."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = bytearray()

    def bool(self, v: bool) -> "PackedWriter":
        self.buf.append(1 if v else 0)
        return self

    def i32(self, v: int) -> "PackedWriter":
        try:
            self.buf += _I32.pack(v)
        except struct.error:
            raise PackedError(f"{v} does not fit in an i32") from None
        return self

    def i64(self, v: int) -> "PackedWriter":
        try:
            self.buf += _I64.pack(v)
        except struct.error:
            raise PackedError(f"{v} does not fit in an i64") from None
        return self

    def f64(self, v: float) -> "PackedWriter":
        self.buf += _F64.pack(v)
        return self

    def bytes(self, v: bytes) -> "PackedWriter":
        self.buf += _U32.pack(len(v))
        self.buf += v
        return self

    def str(self, v: str) -> "PackedWriter":
        return self.bytes(v.encode("utf-8"))

    def value(self) -> bytes:
        return bytes(self.buf)
