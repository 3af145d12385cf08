"""Files that hold keys: created readable by their owner only."""

from __future__ import annotations

import os
from typing import BinaryIO, Literal, TextIO, cast, overload

from .errors import ConfigurationError


@overload
def open_private(
    path: str | os.PathLike[str],
    what: str,
    *,
    binary: Literal[False] = False,
    private: bool = True,
) -> TextIO: ...


@overload
def open_private(
    path: str | os.PathLike[str], what: str, *, binary: Literal[True], private: bool = True
) -> BinaryIO: ...


def open_private(
    path: str | os.PathLike[str], what: str, *, binary: bool = False, private: bool = True
) -> TextIO | BinaryIO:
    """Open ``path`` for writing, created mode 0600 when ``private`` (and made 0600 if it
    already existed), for files that hold keys. A failure raises ``ConfigurationError``
    naming the file: ``keylog file /x/k: cannot be written (No such file or directory)``.
    """
    try:
        if private:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
            except BaseException:
                os.close(fd)
                raise
            if binary:
                return cast(BinaryIO, os.fdopen(fd, "wb"))
            return cast(TextIO, os.fdopen(fd, "w", encoding="utf-8"))
        return open(path, "wb") if binary else open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"{what} file {path}: cannot be written ({exc.strerror or exc})", field=what
        ) from None
