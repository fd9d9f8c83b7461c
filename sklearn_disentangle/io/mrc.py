"""Reading and writing MRC volumes and MRCS particle stacks.

Conventions (stated once here, relied on everywhere):

- **Permissive open.** Real files written by RELION, EMAN or cryoDRGN often carry an empty
  ``MAP`` id, a zero machine stamp or ``nversion`` 0; strict ``mrcfile`` refuses them. The
  header is read with ``permissive=True`` and every complaint is gathered into **one**
  :class:`~sklearn_disentangle.io._errors.ReaderWarning` that names the file.
- **Stack or volume** is decided by the file extension (``.mrcs`` = stack, anything else =
  volume, or a single image when the file holds one section) or by the explicit ``kind``
  argument, never by the space group: real particle stacks carry ``ispg`` 1 and real maps
  ``ispg`` 0.
- **Axis order.** Returned arrays are indexed ``[z, y, x]`` (volumes) or ``[image, y, x]``
  (stacks), whatever ``mapc/mapr/maps`` say in the file; a non-standard order is applied as a
  transposed view.
- **Pixel size** in the header is used only when it is positive; ``0`` means unknown
  (``None``). An explicit ``pixel_size`` argument always wins. Star-file optics values take
  precedence over the header in :class:`~sklearn_disentangle.io.ParticleStack`.
- **Memory.** Uncompressed files are memory-mapped (read-only ``numpy.memmap``) by default,
  so a stack larger than RAM is never loaded whole; ``.gz``/``.bz2`` files (detected from their
  content) are decompressed into memory.
- **Atomic writes.** Writers write to a temporary file beside the target and rename it with
  :func:`os.replace`, so an interrupted write never leaves a truncated file under the real name.
"""

import contextlib
import os
import struct
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.dtypes
import mrcfile.utils
import numpy as np

from ._errors import MRCError, ReaderWarning

__all__ = ["MRCInfo", "read_mrc", "write_mrc", "mrc_stack_writer", "read_mrc_header"]

_HEADER_BYTES = 1024
_STACK_EXTENSIONS = (".mrcs",)
# Exceptions that mrcfile/numpy raise on damaged bytes; converted to MRCError.
_DAMAGE_ERRORS = (ValueError, OSError, EOFError, struct.error, IndexError, TypeError, OverflowError)


@dataclass(frozen=True)
class MRCInfo:
    """Header facts of an MRC file, as read by :func:`read_mrc`.

    Attributes
    ----------
    path : str
        The file.
    kind : {'stack', 'volume', 'image'}
        How the data were interpreted.
    shape : tuple of int
        Shape of the returned array (``(n, ny, nx)``, ``(nz, ny, nx)`` or ``(ny, nx)``).
    dtype : numpy.dtype
        Data type as stored in the file (byte order included).
    pixel_size : float or None
        Pixel (voxel) size in Angstrom: the explicit value if one was given, else the header
        value when positive, else ``None``.
    origin : tuple of float
        Header origin ``(x, y, z)`` in Angstrom.
    nstart : tuple of int
        Header ``(nxstart, nystart, nzstart)``.
    axis_order : tuple of int
        Header ``(mapc, mapr, maps)``.
    data_offset : int
        Byte offset of the first data value (1024 + extended header size).
    file_shape : tuple of int
        Shape in file order ``(nsections, nrows, ncols)``.
    compressed : {None, 'gzip', 'bzip2'}
        Compression detected from the file content.
    header_warnings : tuple of str
        Messages collected while opening the file permissively.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import write_mrc, read_mrc
    >>> path = os.path.join(tempfile.mkdtemp(), "v.mrc")
    >>> write_mrc(path, np.zeros((4, 4, 4), np.float32), pixel_size=2.0)
    >>> read_mrc(path)[1].pixel_size
    2.0
    """

    path: str
    kind: str
    shape: tuple
    dtype: np.dtype
    pixel_size: object
    origin: tuple
    nstart: tuple
    axis_order: tuple
    data_offset: int
    file_shape: tuple
    compressed: object
    header_warnings: tuple


def _compression_of(path):
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def _stem_suffix(path):
    name = Path(path).name.lower()
    for comp in (".gz", ".bz2"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return os.path.splitext(name)[1]


def _resolve_kind(path, kind, nz):
    if kind not in ("auto", "stack", "volume", "image"):
        raise ValueError(f"kind must be 'auto', 'stack', 'volume' or 'image', got {kind!r}.")
    if kind != "auto":
        if kind == "image" and nz != 1:
            raise MRCError(f"{path}: kind='image' asked for, but the file holds {nz} sections.")
        return kind
    if _stem_suffix(path) in _STACK_EXTENSIONS:
        return "stack"
    return "image" if nz == 1 else "volume"


_VALID_MODES = (0, 1, 2, 3, 4, 6, 12, 101)


def _precheck_header(path):
    """Cheap sanity check of an uncompressed header before mrcfile sees it.

    Rejects files whose header promises more data (or a larger extended header) than the
    file holds; mrcfile would otherwise try to allocate or read absurd sizes from random bytes.
    """
    size = os.path.getsize(path)
    if size < _HEADER_BYTES:
        raise MRCError(f"{path}: {size} bytes, shorter than the 1024-byte MRC header; not an MRC file.")
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER_BYTES)
    best = None
    for order in ("<", ">"):
        h = np.frombuffer(raw, dtype=mrcfile.dtypes.HEADER_DTYPE.newbyteorder(order))[0]
        nx, ny, nz, mode, nsymbt = (int(h["nx"]), int(h["ny"]), int(h["nz"]), int(h["mode"]), int(h["nsymbt"]))
        if mode in _VALID_MODES and nx > 0 and ny > 0 and nz > 0 and nsymbt >= 0:
            best = (nx, ny, nz, mode, nsymbt)
            stamp = bytes(raw[212:214])
            if (order == "<" and stamp[:1] == b"\x44") or (order == ">" and stamp[:1] == b"\x11"):
                break
    if best is None:
        raise MRCError(f"{path}: damaged MRC header (no valid mode and positive dimensions in either byte order).")
    nx, ny, nz, mode, nsymbt = best
    itemsize = 0.5 if mode == 101 else {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}[mode]
    needed = _HEADER_BYTES + nsymbt + int(nx * ny * nz * itemsize)
    if needed > size:
        raise MRCError(
            f"{path}: truncated or damaged MRC file: the header promises {nz} x {ny} x {nx} values (mode {mode}) "
            f"and a {nsymbt}-byte extended header ({needed} bytes in all) but the file has {size} bytes."
        )


def _open_header(path):
    """Open ``path`` permissively; return (mrcfile object, list of warning messages)."""
    compressed = _compression_of(path)
    if compressed is None:
        _precheck_header(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if compressed:
                mrc = mrcfile.open(path, mode="r", permissive=True)
            else:
                mrc = mrcfile.open(path, mode="r", permissive=True, header_only=True)
        except _DAMAGE_ERRORS as exc:
            raise MRCError(f"{path}: not a readable MRC file ({exc}).") from exc
    messages = [str(w.message) for w in caught]
    return mrc, compressed, messages


def read_mrc_header(path, *, kind="auto", pixel_size=None):
    """Read and validate the header of an MRC file without touching its data.

    Parameters
    ----------
    path : str or path-like
        The ``.mrc``/``.mrcs``/``.map`` file (optionally ``.gz``/``.bz2`` compressed).
    kind : {'auto', 'stack', 'volume', 'image'}, default='auto'
        How to interpret the sections; ``'auto'`` uses the extension (``.mrcs`` = stack).
    pixel_size : float, default=None
        Explicit pixel size in Angstrom; overrides the header.

    Returns
    -------
    info : MRCInfo
        The header facts.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    MRCError
        If the header is damaged or the file is shorter than its header says.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import write_mrc
    >>> from sklearn_disentangle.io.mrc import read_mrc_header
    >>> path = os.path.join(tempfile.mkdtemp(), "s.mrcs")
    >>> write_mrc(path, np.zeros((3, 8, 8), np.float32), pixel_size=1.5)
    >>> info = read_mrc_header(path)
    >>> info.kind, info.shape
    ('stack', (3, 8, 8))
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"MRC file not found: {path}")
    if os.path.isdir(path):
        raise MRCError(f"{path}: is a folder, not an MRC file.")
    mrc, compressed, messages = _open_header(path)
    try:
        header = mrc.header
        try:
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode_dtype = mrcfile.utils.data_dtype_from_header(header)
            nsymbt = int(header.nsymbt)
            axis_order = (int(header.mapc), int(header.mapr), int(header.maps))
            voxel = float(mrc.voxel_size.x)
            origin = tuple(float(v) for v in (header.origin.x, header.origin.y, header.origin.z))
            nstart = (int(header.nxstart), int(header.nystart), int(header.nzstart))
        except _DAMAGE_ERRORS as exc:
            raise MRCError(f"{path}: damaged MRC header ({exc}).") from exc
        if nx <= 0 or ny <= 0 or nz <= 0:
            raise MRCError(f"{path}: damaged MRC header (dimensions nx={nx}, ny={ny}, nz={nz}).")
        if nsymbt < 0:
            raise MRCError(f"{path}: damaged MRC header (negative extended header size {nsymbt}).")
        if sorted(axis_order) != [1, 2, 3]:
            messages.append(f"mapc/mapr/maps = {axis_order} is not a permutation of 1, 2, 3; assuming 1, 2, 3")
            axis_order = (1, 2, 3)
        data_offset = _HEADER_BYTES + nsymbt
        nbytes = nx * ny * nz * mode_dtype.itemsize
        if compressed:
            data = mrc.data
            if data is None or data.size != nx * ny * nz:
                raise MRCError(f"{path}: compressed MRC file is truncated (expected {nx * ny * nz} values).")
        else:
            size = os.path.getsize(path)
            if size < data_offset + nbytes:
                raise MRCError(
                    f"{path}: truncated MRC file: the header promises {nz} x {ny} x {nx} values of "
                    f"{mode_dtype} ({data_offset + nbytes} bytes in all) but the file has {size} bytes."
                )
    finally:
        mrc.close()
    if not np.isfinite(voxel):
        voxel = 0.0
    kind = _resolve_kind(path, kind, nz)
    file_shape = (nz, ny, nx)
    out_shape = _output_shape(file_shape, axis_order, kind)
    if pixel_size is not None:
        pixel_size = float(pixel_size)
        if not pixel_size > 0:
            raise ValueError(f"pixel_size must be positive, got {pixel_size}.")
    elif voxel > 0:
        pixel_size = voxel
    if messages:
        warnings.warn(
            f"{path}: MRC header problems, file read in permissive mode: " + "; ".join(dict.fromkeys(messages)),
            ReaderWarning,
            stacklevel=3,
        )
    return MRCInfo(
        path=path, kind=kind, shape=out_shape, dtype=mode_dtype, pixel_size=pixel_size, origin=origin,
        nstart=nstart, axis_order=axis_order, data_offset=data_offset, file_shape=file_shape,
        compressed=compressed, header_warnings=tuple(messages),
    )


def _axes_permutation(axis_order, kind):
    """Permutation taking file-order axes (sections, rows, cols) to (z, y, x)."""
    mapc, mapr, maps = axis_order
    file_dims = (maps, mapr, mapc)  # dimension (1=x, 2=y, 3=z) held by each file axis
    if kind in ("stack", "image"):
        # sections are images: keep them first; the image axis of the lower dimension is x
        return (0, 2, 1) if mapc > mapr else (0, 1, 2)
    return tuple(file_dims.index(d) for d in (3, 2, 1))


def _output_shape(file_shape, axis_order, kind):
    perm = _axes_permutation(axis_order, kind)
    shape = tuple(file_shape[p] for p in perm)
    return shape[1:] if kind == "image" else shape


def _arrange(data, info):
    perm = _axes_permutation(info.axis_order, info.kind)
    if perm != (0, 1, 2):
        data = data.transpose(perm)
    if info.kind == "image":
        data = data[0]
    return data


def read_mrc(path, *, kind="auto", mmap=True, pixel_size=None):
    """Read an MRC volume, image or MRCS particle stack.

    Parameters
    ----------
    path : str or path-like
        The file; ``.gz``/``.bz2`` compression is detected from the content.
    kind : {'auto', 'stack', 'volume', 'image'}, default='auto'
        ``'auto'``: ``.mrcs`` is a stack, other files a volume (or an image when they hold a
        single section). The header's space group is never used to decide.
    mmap : bool, default=True
        Return a read-only memory map (uncompressed files only) instead of loading the data.
    pixel_size : float, default=None
        Explicit pixel size in Angstrom; overrides the header.

    Returns
    -------
    data : ndarray or numpy.memmap
        Shape ``(n, ny, nx)`` (stack), ``(nz, ny, nx)`` (volume) or ``(ny, nx)`` (image), in the
        file's data type, axes ordered ``[z, y, x]`` whatever ``mapc/mapr/maps`` say.
    info : MRCInfo
        Header facts: pixel size (``None`` when unknown), origin, axis order, kind, etc.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    MRCError
        If the file is damaged, truncated, or not an MRC file.

    Warns
    -----
    ReaderWarning
        Once per file, listing all header irregularities found in permissive mode.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import write_mrc, read_mrc
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.mrcs")
    >>> write_mrc(path, np.ones((5, 16, 16), np.float32), pixel_size=1.31)
    >>> data, info = read_mrc(path)
    >>> data.shape, info.kind, round(info.pixel_size, 2)
    ((5, 16, 16), 'stack', 1.31)
    """
    info = read_mrc_header(path, kind=kind, pixel_size=pixel_size)
    return _load_data(info, mmap=mmap), info


def _load_data(info, mmap=True):
    path = info.path
    if info.compressed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with mrcfile.open(path, mode="r", permissive=True) as mrc:
                    data = np.asarray(mrc.data).reshape(info.file_shape).copy()
            except _DAMAGE_ERRORS as exc:
                raise MRCError(f"{path}: damaged compressed MRC file ({exc}).") from exc
    elif mmap:
        data = np.memmap(path, dtype=info.dtype, mode="r", offset=info.data_offset, shape=info.file_shape)
    else:
        data = np.fromfile(path, dtype=info.dtype, count=int(np.prod(info.file_shape)), offset=info.data_offset)
        data = data.reshape(info.file_shape)
    return _arrange(data, info)


def _prepare_data(data):
    data = np.asarray(data)
    if data.dtype == np.float64 or not (
        data.dtype in (np.float32, np.int8, np.int16, np.uint16, np.float16, np.complex64)
    ):
        if np.iscomplexobj(data):
            data = data.astype(np.complex64)
        else:
            data = data.astype(np.float32)
    if data.ndim not in (2, 3):
        raise ValueError(f"MRC data must be 2-D (image) or 3-D (volume or stack), got shape {data.shape}.")
    return np.ascontiguousarray(data)


def _tmp_name(path):
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _set_header(mrc, kind, pixel_size, origin):
    if kind == "stack":
        mrc.set_image_stack()
    elif kind == "volume":
        mrc.set_volume()
    mrc.voxel_size = float(pixel_size)
    if origin is not None:
        ox, oy, oz = (tuple(origin) + (0.0, 0.0, 0.0))[:3]
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
    mrc.update_header_stats()


def write_mrc(path, data, pixel_size=1.0, *, origin=None, kind="auto", overwrite=True):
    """Write a volume, image or particle stack to an MRC file, atomically.

    Parameters
    ----------
    path : str or path-like
        Target file. A ``.gz`` or ``.bz2`` suffix writes a compressed file.
    data : array-like of shape (ny, nx), (nz, ny, nx) or (n, ny, nx)
        float64 data are written as float32 (MRC mode 2); float32, float16, int8, int16,
        uint16 and complex64 are kept.
    pixel_size : float, default=1.0
        Pixel size in Angstrom, written to the header.
    origin : tuple of float, default=None
        Header origin ``(x, y, z)`` in Angstrom (zero when ``None``).
    kind : {'auto', 'stack', 'volume', 'image'}, default='auto'
        ``'auto'``: ``.mrcs`` files are written as image stacks (``ispg`` 0), other 3-D data as
        volumes (``ispg`` 1).
    overwrite : bool, default=True
        If False and ``path`` exists, raise ``FileExistsError``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io import write_mrc, read_mrc
    >>> path = os.path.join(tempfile.mkdtemp(), "vol.mrc")
    >>> write_mrc(path, np.random.rand(8, 8, 8), pixel_size=4.0)
    >>> data, info = read_mrc(path)
    >>> str(data.dtype), info.kind, info.pixel_size
    ('float32', 'volume', 4.0)
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False.")
    if not pixel_size or not float(pixel_size) > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}.")
    data = _prepare_data(data)
    kind = "image" if data.ndim == 2 else _resolve_kind(path, kind if kind != "image" else "auto", data.shape[0])
    if kind == "image" and data.ndim == 3:
        kind = "volume"
    name = Path(path).name.lower()
    compression = "gzip" if name.endswith(".gz") else "bzip2" if name.endswith(".bz2") else None
    tmp = _tmp_name(path)
    try:
        with mrcfile.new(tmp, overwrite=True, compression=compression) as mrc:
            mrc.set_data(data)
            _set_header(mrc, kind if data.ndim == 3 else "image", pixel_size, origin)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def mrc_stack_writer(path, n_images, box_size, pixel_size=1.0, *, dtype=np.float32):
    """Write a large particle stack in pieces, atomically, without holding it in memory.

    A context manager yielding a writable memory map of shape ``(n_images, box_size,
    box_size)`` backed by a temporary file beside ``path``. On a normal exit the header is
    completed and the file renamed to ``path``; on an exception the temporary file is removed.

    Parameters
    ----------
    path : str or path-like
        Target ``.mrcs`` file (uncompressed).
    n_images : int
        Number of images.
    box_size : int or tuple of int
        Box size ``D`` (square images) or ``(ny, nx)``.
    pixel_size : float, default=1.0
        Pixel size in Angstrom.
    dtype : numpy dtype, default=numpy.float32
        Stored data type (float32, float16, int8, int16 or uint16).

    Yields
    ------
    data : numpy.memmap of shape (n_images, ny, nx)

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.mrc import mrc_stack_writer
    >>> from sklearn_disentangle.io import read_mrc
    >>> path = os.path.join(tempfile.mkdtemp(), "big.mrcs")
    >>> with mrc_stack_writer(path, 10, 8, pixel_size=2.0) as out:
    ...     out[:5] = 1.0
    ...     out[5:] = 2.0
    >>> float(read_mrc(path)[0][7, 0, 0])
    2.0
    """
    path = os.fspath(path)
    ny, nx = (box_size, box_size) if np.isscalar(box_size) else tuple(box_size)
    tmp = _tmp_name(path)
    mode = mrcfile.utils.mode_from_dtype(np.dtype(dtype))
    try:
        mrc = mrcfile.new_mmap(tmp, shape=(int(n_images), int(ny), int(nx)), mrc_mode=int(mode), overwrite=True)
        try:
            yield mrc.data
            mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size)
            mrc.header.dmin, mrc.header.dmax, mrc.header.dmean, mrc.header.rms = 0, -1, -2, -1
            mrc.flush()
        finally:
            mrc.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
