"""Result files that are never half-written: one atomic writer and one fallback for every file the toolkit saves.

* :func:`atomic_write` writes to a temporary file in the target's folder, ``fsync``s it and renames it over the
  target (``os.replace``, atomic on POSIX and Windows): a reader, a crash or a full disk leaves either the old file or
  the new one, never a truncated mix, and no temporary file is left behind on failure.
* :func:`write_with_fallback` runs a save function on the requested path and, when that fails with an ``OSError``
  (read-only folder, disk full, folder removed mid-run), saves the same result into one temporary folder per process
  instead, returning where it went and why: a computed result is not lost because its folder went bad.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Optional, Union

__all__ = ["atomic_write", "rescue_dir", "write_with_fallback"]

Content = Union[bytes, str, Callable[[BinaryIO], object]]
_RESCUE: list[Path] = []  # the one fallback folder of this process, created on first use


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Union[str, os.PathLike], content: Content) -> Path:
    """Write ``content`` to ``path`` atomically (temp file in the same folder + fsync + ``os.replace``).

    Args:
        path: the target file; missing parent folders are created.
        content: ``bytes``, ``str`` (written as UTF-8) or a function that writes to a binary file handle (e.g.
            ``lambda fh: fig.savefig(fh, format="png")``).

    Returns the path written. On any error the target is untouched, the temporary file is removed and the error is
    re-raised. A new file gets the usual permissions (0o666 minus the umask); an existing one keeps its mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        try:
            mode = path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows opening a folder
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def rescue_dir() -> Path:
    """The fallback folder of this process (``<tmp>/nsde_coin_rescued_*``), created on first use."""
    if not _RESCUE:
        _RESCUE.append(Path(tempfile.mkdtemp(prefix="nsde_coin_rescued_")))
    return _RESCUE[0]


def write_with_fallback(path: Union[str, os.PathLike], save: Callable[[Path], object]
                        ) -> tuple[Path, Optional[str]]:
    """``save(path)``; if that raises ``OSError``, ``save(rescue_dir() / path.name)`` instead.

    Returns ``(where the result is, None)`` on success at ``path``, or ``(fallback path, reason)`` when it had to go
    to the fallback folder; the reason names the error at ``path``. If the fallback fails too, raises ``OSError``
    naming both places.
    """
    path = Path(path)
    try:
        save(path)
        return path, None
    except OSError as exc:
        reason = f"{type(exc).__name__}: {exc.strerror or exc}"
        alt = rescue_dir() / path.name
        try:
            save(alt)
        except OSError as exc2:
            raise OSError(f"could not write {path} ({reason}) nor the fallback {alt} "
                          f"({type(exc2).__name__}: {exc2.strerror or exc2})") from exc2
        return alt, reason
