"""Output files written whole or not at all, at a path that says what was written.

A write that fails half-way (a full disk, a file-size limit, an interrupt) must neither leave a
truncated file at the destination nor destroy a good file already there. So every file the
command line writes goes through :func:`atomic_path`: the writer fills a temporary file in the
destination's own directory (same file system, same extension, so writers that infer the format
from the name still do), the data are flushed to disk, and :func:`os.replace` renames it over the
destination, which POSIX makes atomic. On any failure the temporary file is removed and the
destination is untouched.

:func:`output_path` and :func:`image_path` decide beforehand which path that is: the extension
numpy (``.npz``) or matplotlib (``.png``, for a name without one) would append is appended here,
so the path reported is the path written; a destination that exists but is not a regular file (a
directory, ``/dev/full``) is refused instead of replaced, and so is an image format the writer
does not know.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "image_path", "output_path", "raster_formats"]

_KINDS = {stat.S_ISCHR: "a character device",
          stat.S_ISBLK: "a block device", stat.S_ISFIFO: "a named pipe",
          stat.S_ISSOCK: "a socket"}


def _os_error(code: int, path: str) -> OSError:
    """The error ``open(path, "w")`` would raise (``FileNotFoundError``, ``IsADirectoryError``,
    ...), raised here before any work: a file-system state is an ``OSError``, as numpy's and
    Python's writers say (a new user's trial: ``load_layer`` raised ``FileNotFoundError`` for
    the path that ``save_layer`` refused with a ``ValueError``)."""
    return OSError(code, os.strerror(code), path)  # (OSError picks the subclass of the code)


def _refuse_non_regular(path: str) -> None:
    try:
        mode = os.stat(path).st_mode  # follows symbolic links: a link to a file is a file
    except OSError:
        return  # absent (or unreachable: the write will say why)
    if stat.S_ISDIR(mode):
        raise _os_error(errno.EISDIR, path)
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")
        raise ValueError(f"{path} is {kind}; expected the name of a file to write")


def output_path(path: str, suffix: str) -> str:
    """The file to write for ``path``: ``path`` itself, with ``suffix`` appended if it lacks it.

    Raises
    ------
    ValueError
        ``path`` empty or ending in a separator, or ``path`` or the result an existing
        device, pipe or socket.
    OSError
        ``path`` or the result an existing directory (``IsADirectoryError``), or in a
        directory that does not exist (``FileNotFoundError``, ``NotADirectoryError``).

    Every check runs before any work, so that a long computation is not lost at its last
    step.
    """
    if not os.path.basename(path):
        raise ValueError(f"expected a file name, got {path!r}")
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise _os_error(errno.ENOTDIR if os.path.exists(directory) else errno.ENOENT, path)
    _refuse_non_regular(path)
    if not path.lower().endswith(suffix.lower()):
        path += suffix
        _refuse_non_regular(path)
    return path


def _image_formats(raw: bool) -> list[str]:
    """The extensions matplotlib writes: any for a figure; for a raw raster (``imsave``), the
    vector formats it draws itself and the raster ones Pillow can save."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if raw:
        import PIL.Image

        PIL.Image.init()
        formats = [f for f in formats if f in ("pdf", "ps", "eps", "svg", "svgz", "jpg")
                   or f.upper() in PIL.Image.SAVE]
    return formats


def raster_formats() -> tuple[str, ...]:
    """The formats :func:`sparseconv.plot.save_raster` writes (``imsave``; an svgz as its svg,
    gzipped): not ``tif`` (Pillow knows ``tiff``), ``raw``, ``rgba`` or ``pgf``, which
    ``imsave`` fails on with a ``KeyError``."""
    return tuple(_image_formats(raw=True))


def image_path(path: str, raw: bool = False) -> str:
    """:func:`output_path` for a matplotlib figure (``raw``: an ``imsave`` raster).

    Raises
    ------
    ValueError
        As :func:`output_path`, or an extension matplotlib cannot write.
    """
    extension = os.path.splitext(os.path.basename(path))[1]
    formats = _image_formats(raw)
    if extension and extension[1:].lower() not in formats:
        kind = "a raw raster" if raw else "a figure"
        raise ValueError(f"cannot write {kind} in format {extension[1:]!r} of {path}; use one "
                         f"of {', '.join(formats)}")
    return output_path(path, extension or ".png")


def _new_file_mode(path: str) -> int:
    """The replaced file's permissions, or those ``open`` would give a new file."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path for the writer; renamed onto ``path`` only if the block succeeds.

    Raises
    ------
    OSError
        The directory or the write failed: ``cannot write <path>: <reason>``, naming ``path``
        and not the temporary file.
    """
    target = os.path.realpath(path)  # replace the file a symbolic link points to, not the link
    directory, name = os.path.split(target)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=os.path.splitext(name)[1],
                                         dir=directory)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        yield temporary
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)  # a full disk can report itself only now
        finally:
            os.close(fd)
        os.chmod(temporary, _new_file_mode(target))
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
