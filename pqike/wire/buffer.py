"""A cursor over bytes for the codec: big-endian pulls that fail as ``ProtocolError``.

Every read is bounds-checked, so a short or lying message raises ``TruncatedMessage``
naming the absolute offset, never ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

import struct

from ..errors import TruncatedMessage


class Buffer:
    """Read side: ``pull_*`` from ``data[start:end]``; ``base`` makes offsets absolute."""

    __slots__ = ("_data", "_end", "_pos", "base")

    def __init__(self, data: bytes, *, start: int = 0, end: int | None = None, base: int = 0):
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self.base = base

    @property
    def position(self) -> int:
        """Offset of the next byte to read, relative to the start of the outer message."""
        return self.base + self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def eof(self) -> bool:
        return self._pos >= self._end

    def _need(self, n: int, what: str) -> int:
        if n < 0 or self._pos + n > self._end:
            raise TruncatedMessage(
                f"{what} needs {n} bytes but only {max(self._end - self._pos, 0)} remain",
                offset=self.position,
            )
        pos = self._pos
        self._pos = pos + n
        return pos

    def pull_uint8(self, what: str = "field") -> int:
        pos = self._need(1, what)
        return self._data[pos]

    def pull_uint16(self, what: str = "field") -> int:
        pos = self._need(2, what)
        return int.from_bytes(self._data[pos : pos + 2], "big")

    def pull_uint32(self, what: str = "field") -> int:
        pos = self._need(4, what)
        return int.from_bytes(self._data[pos : pos + 4], "big")

    def pull_bytes(self, n: int, what: str = "field") -> bytes:
        pos = self._need(n, what)
        return bytes(self._data[pos : pos + n])

    def pull_struct(self, fmt: struct.Struct, what: str = "field") -> tuple:
        """Unpack a fixed-size header with one bounds check (cheaper than several pulls)."""
        # The bounds check of _need, inlined: this is the codec's hottest call.
        pos = self._pos
        end = pos + fmt.size
        if end > self._end:
            self._need(fmt.size, what)  # raises with the one-sentence message
        self._pos = end
        return fmt.unpack_from(self._data, pos)

    def peek_rest(self) -> bytes:
        """The bytes up to the end, without consuming them."""
        return bytes(self._data[self._pos : self._end])

    def skip_rest(self) -> None:
        self._pos = self._end

    def pull_rest(self) -> bytes:
        pos = self._pos
        self._pos = self._end
        return bytes(self._data[pos : self._end])

    def sub(self, n: int, what: str = "field") -> Buffer:
        """A buffer over the next ``n`` bytes (consumed from this one), offsets kept absolute."""
        pos = self._pos
        end = pos + n
        if n < 0 or end > self._end:
            self._need(n, what)  # raises with the one-sentence message
        self._pos = end
        return Buffer(self._data, start=pos, end=end, base=self.base)


class Writer:
    """Write side: ``push_*`` into a growing bytearray, with length back-fill."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def push_uint8(self, v: int) -> None:
        self._data.append(v & 0xFF)

    def push_uint16(self, v: int) -> None:
        self._data += (v & 0xFFFF).to_bytes(2, "big")

    def push_uint32(self, v: int) -> None:
        self._data += (v & 0xFFFFFFFF).to_bytes(4, "big")

    def push_bytes(self, b: bytes) -> None:
        self._data += b

    def reserve_uint16(self) -> int:
        """Push a placeholder and return its position for ``fill_uint16``."""
        pos = len(self._data)
        self._data += b"\x00\x00"
        return pos

    def fill_uint16(self, pos: int, v: int) -> None:
        self._data[pos : pos + 2] = v.to_bytes(2, "big")

    def fill_uint32(self, pos: int, v: int) -> None:
        self._data[pos : pos + 4] = v.to_bytes(4, "big")

    def getvalue(self) -> bytes:
        return bytes(self._data)
