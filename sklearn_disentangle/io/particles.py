"""``ParticleStack``: lazy particle images with poses, CTF parameters and pixel size.

A :class:`ParticleStack` is what the cryo-EM readers return and what the cryo-EM
estimators take. It behaves like a read-only array of shape ``(n, D, D)`` for scikit-learn's
splitters (``len``, ``shape``, slicing, boolean and fancy indexing all return a
``ParticleStack``), so ``train_test_split`` and ``KFold`` work on it without loading images.

Images are read only when asked for (:meth:`ParticleStack.get_images`,
:meth:`ParticleStack.iter_batches`, ``numpy.asarray``), straight from the stack files with
positional reads into the output buffer: a stack larger than memory is never loaded whole
and reading does not grow the resident memory with the file's pages. Compressed stacks
are decompressed into memory once. Output images are always float32, shape ``(k, D, D)``.

Metadata conventions: ``rotations`` are RELION pose matrices ``(n, 3, 3)``, ``shifts`` are
RELION origins ``(n, 2)`` in Angstrom (``(x, y)``; see :mod:`sklearn_disentangle.cryoem`), ``ctf``
is the table of :func:`~sklearn_disentangle.io.parse_ctf`, and ``pixel_sizes`` follow the
precedence: explicit value, STAR optics ``rlnImagePixelSize``, ``rlnDetectorPixelSize x 1e4 /
rlnMagnification``, MRC header when positive.
"""

import os
import warnings
from numbers import Integral

import numpy as np
import pandas as pd

from ._errors import MRCError, ReaderError, ReaderWarning, StarError
from .mrc import _load_data, mrc_stack_writer, read_mrc_header
from .star import (
    parse_ctf, parse_image_names, parse_poses, read_star, resolve_stack_path, star_pixel_size, write_star,
)

__all__ = ["ParticleStack"]


class _Source:
    """One image source: an MRC stack on disk, or an in-memory array."""

    def __init__(self, path=None, array=None, pixel_size=None):
        self.path = None if path is None else os.fspath(path)
        self._array = None
        self._fd = None
        self._pid = None
        if array is not None:
            array = np.asarray(array)
            if array.ndim == 2:
                array = array[None]
            if array.ndim != 3:
                raise ValueError(f"images must have shape (n, D, D), got {array.shape}.")
            self._array = array
            self.info = None
            self.n, self.ny, self.nx = array.shape
            self.header_pixel_size = pixel_size
        else:
            info = read_mrc_header(self.path, kind="stack")
            self.info = info
            self.n, self.ny, self.nx = info.shape
            self.header_pixel_size = info.pixel_size
            # positional reads straight from the file when the layout (and the OS) allows; else a memory map
            self._direct = info.compressed is None and info.shape == info.file_shape and hasattr(os, "preadv")
            if not self._direct:
                self._array = _load_data(info, mmap=info.compressed is None)

    # pickling: file descriptors are per process
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_pid"] = None
        if self.path is not None and isinstance(self._array, np.memmap):
            state["_array"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.path is not None and self._array is None and self.info is not None and not self._direct:
            self._array = _load_data(self.info, mmap=self.info.compressed is None)

    def _fileno(self):
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def close(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def read(self, idx, out):
        """Read images ``idx`` (int array, any order) into ``out`` (float32, (k, ny, nx))."""
        if self._array is not None:
            out[...] = self._array[idx]
            return out
        info = self.info
        dtype = info.dtype
        frame = self.ny * self.nx * dtype.itemsize
        native_f4 = dtype == np.dtype(np.float32) and dtype.isnative
        fd = self._fileno()
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        breaks = np.flatnonzero(np.diff(sidx) != 1) + 1
        starts = np.concatenate([[0], breaks]).astype(np.int64)
        stops = np.concatenate([breaks, [len(sidx)]]).astype(np.int64)
        in_order = bool(np.all(order == np.arange(len(order))))
        direct = native_f4 and in_order
        for a, b in zip(starts, stops):
            first, count = int(sidx[a]), int(b - a)
            offset = info.data_offset + first * frame
            buf = out[a:b] if direct else np.empty((count, self.ny, self.nx), dtype=dtype)
            view = memoryview(buf.reshape(-1).view(np.uint8))
            got = 0
            while got < count * frame:
                n = os.preadv(fd, [view[got:]], offset + got)
                if n <= 0:
                    raise MRCError(f"{self.path}: unexpected end of file while reading image {first + 1}.")
                got += n
            if not direct:
                if in_order:
                    out[a:b] = buf
                else:
                    out[order[a:b]] = buf
        return out


def _as_index(key, n):
    """Normalise a key (int, slice, bool mask, int array, list, tuple with Ellipsis) to int64 positions."""
    if isinstance(key, tuple):
        rest = [k for k in key[1:] if k is not Ellipsis and not (isinstance(k, slice) and k == slice(None))]
        if rest:
            raise IndexError("ParticleStack supports indexing along the first axis only.")
        key = key[0]
    if isinstance(key, slice):
        return np.arange(n)[key]
    if isinstance(key, (Integral, np.integer)) and not isinstance(key, bool):
        k = int(key)
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of range for a ParticleStack of {n} particles.")
        return np.array([k % n])
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean index of shape {arr.shape} does not match {n} particles.")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise IndexError(f"ParticleStack indices must be integers, slices or boolean masks, got {arr.dtype}.")
    arr = arr.reshape(-1).astype(np.int64)
    if (arr >= n).any() or (arr < -n).any():
        raise IndexError(f"index {int(arr[(arr >= n) | (arr < -n)][0])} is out of range for {n} particles.")
    return arr % n


class ParticleStack:
    """Particle images (lazy) with poses, shifts, CTF parameters, pixel size and labels.

    Build one from files with :meth:`from_star`, :meth:`from_mrcs` or :meth:`from_cs`, or
    from an in-memory array with the constructor. Indexing with an integer, a slice, a
    boolean mask or an integer array returns a new ``ParticleStack`` sharing the same files.

    Parameters
    ----------
    images : array-like of shape (n, D, D)
        In-memory images.
    pixel_size : float, default=None
        Angstrom per pixel.
    rotations : array-like of shape (n, 3, 3), default=None
        RELION pose matrices.
    shifts : array-like of shape (n, 2), default=None
        RELION origins ``(x, y)`` in Angstrom.
    ctf : pandas.DataFrame, default=None
        CTF table with the columns of :func:`~sklearn_disentangle.io.parse_ctf`.
    labels : array-like of shape (n,), default=None
        Optional per-particle labels (e.g. ground-truth conformations or classes).
    metadata : pandas.DataFrame, default=None
        Extra per-particle columns (e.g. the original STAR rows), kept through indexing and
        written back by :meth:`to_star`.

    Attributes
    ----------
    rotations : ndarray of shape (n, 3, 3) or None
    shifts : ndarray of shape (n, 2) or None
    ctf : pandas.DataFrame or None
    labels : ndarray of shape (n,) or None
    metadata : pandas.DataFrame or None
    pixel_sizes : ndarray of shape (n,)
        Per-particle pixel size (NaN when unknown).
    box_size : int
    shape : tuple
        ``(n, D, D)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn_disentangle.io import ParticleStack
    >>> stack = ParticleStack(np.random.rand(10, 16, 16), pixel_size=2.0, labels=np.arange(10) % 2)
    >>> train, test = train_test_split(stack, test_size=0.3, random_state=0)
    >>> len(train), len(test), test.get_images().shape
    (7, 3, (3, 16, 16))
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, images, *, pixel_size=None, rotations=None, shifts=None, ctf=None, labels=None,
                 metadata=None):
        source = _Source(array=np.asarray(images, dtype=np.float32), pixel_size=pixel_size)
        n = source.n
        self._init(
            [source], np.zeros(n, np.int32), np.arange(n, dtype=np.int64),
            pixel_sizes=np.full(n, np.nan if pixel_size is None else float(pixel_size)),
            rotations=rotations, shifts=shifts, ctf=ctf, labels=labels, metadata=metadata,
        )

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def _from_parts(cls, sources, src, idx, **kw):
        self = cls.__new__(cls)
        self._init(sources, src, idx, **kw)
        return self

    def _init(self, sources, src, idx, *, pixel_sizes, rotations=None, shifts=None, ctf=None, labels=None,
              metadata=None):
        self._sources = list(sources)
        self._src = np.asarray(src, dtype=np.int32)
        self._idx = np.asarray(idx, dtype=np.int64)
        n = len(self._idx)
        boxes = {(s.ny, s.nx) for s in self._sources if s.n}
        if len(boxes) > 1:
            raise ReaderError(
                "stacks of different image sizes cannot form one ParticleStack: "
                + ", ".join(f"{s.path or '<array>'}: {s.ny}x{s.nx}" for s in self._sources)
            )
        ny, nx = boxes.pop() if boxes else (self._sources[0].ny, self._sources[0].nx)
        if ny != nx:
            raise ReaderError(f"{self._sources[0].path or '<array>'}: images are {ny}x{nx}; only square "
                              "particle images are supported.")
        self.box_size = int(ny)
        self.pixel_sizes = np.asarray(pixel_sizes, dtype=np.float64).reshape(n)

        def check(name, value, shape):
            if value is None:
                return None
            value = np.asarray(value, dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}.")
            return value

        self.rotations = check("rotations", rotations, (n, 3, 3))
        self.shifts = check("shifts", shifts, (n, 2))
        if ctf is not None:
            ctf = pd.DataFrame(ctf).reset_index(drop=True)
            if len(ctf) != n:
                raise ValueError(f"ctf must have {n} rows, got {len(ctf)}.")
        self.ctf = ctf
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape[:1] != (n,):
                raise ValueError(f"labels must have {n} rows, got shape {labels.shape}.")
        self.labels = labels
        if metadata is not None:
            metadata = pd.DataFrame(metadata).reset_index(drop=True)
            if len(metadata) != n:
                raise ValueError(f"metadata must have {n} rows, got {len(metadata)}.")
        self.metadata = metadata

    # ------------------------------------------------------------------ array-like protocol
    def __len__(self):
        return len(self._idx)

    @property
    def shape(self):
        """``(n_particles, box_size, box_size)``."""
        return (len(self), self.box_size, self.box_size)

    @property
    def pixel_size(self):
        """The common pixel size in Angstrom (``None`` if unknown).

        Raises ``ValueError`` if particles have different pixel sizes (several optics
        groups); use :attr:`pixel_sizes` then.
        """
        ps = self.pixel_sizes
        if len(ps) == 0 or np.isnan(ps).all():
            return None
        uniq = np.unique(ps[~np.isnan(ps)])
        if len(uniq) > 1 or np.isnan(ps).any():
            raise ValueError(f"particles have different pixel sizes ({', '.join(f'{u:g}' for u in uniq[:5])} A); "
                             "use ParticleStack.pixel_sizes.")
        return float(uniq[0])

    @property
    def sources(self):
        """Paths of the stack files (``None`` for in-memory images), in source order."""
        return [s.path for s in self._sources]

    def __getitem__(self, key):
        pos = _as_index(key, len(self))
        return self._from_parts(
            self._sources, self._src[pos], self._idx[pos], pixel_sizes=self.pixel_sizes[pos],
            rotations=None if self.rotations is None else self.rotations[pos],
            shifts=None if self.shifts is None else self.shifts[pos],
            ctf=None if self.ctf is None else self.ctf.iloc[pos],
            labels=None if self.labels is None else self.labels[pos],
            metadata=None if self.metadata is None else self.metadata.iloc[pos],
        )

    def get_images(self, indices=None):
        """Read images into memory as float32.

        Parameters
        ----------
        indices : int, slice, array-like of int or bool, default=None
            Which particles (all when ``None``).

        Returns
        -------
        images : ndarray of shape (k, D, D), float32

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle.io import ParticleStack
        >>> stack = ParticleStack(np.arange(32, dtype=np.float32).reshape(2, 4, 4))
        >>> float(stack.get_images([1])[0, 0, 0])
        16.0
        """
        pos = np.arange(len(self)) if indices is None else _as_index(indices, len(self))
        out = np.empty((len(pos), self.box_size, self.box_size), dtype=np.float32)
        src = self._src[pos]
        idx = self._idx[pos]
        for s in np.unique(src):
            where = np.flatnonzero(src == s)
            if len(where) == len(pos):
                self._sources[s].read(idx, out)
            else:
                part = np.empty((len(where), self.box_size, self.box_size), dtype=np.float32)
                self._sources[s].read(idx[where], part)
                out[where] = part
        return out

    def __array__(self, dtype=None, copy=None):
        images = self.get_images()
        return images if dtype is None else images.astype(dtype)

    def iter_batches(self, batch_size=256):
        """Yield consecutive batches of images (float32), reading only one batch at a time.

        Parameters
        ----------
        batch_size : int, default=256

        Yields
        ------
        images : ndarray of shape (<= batch_size, D, D)

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle.io import ParticleStack
        >>> stack = ParticleStack(np.zeros((5, 8, 8)))
        >>> [b.shape[0] for b in stack.iter_batches(2)]
        [2, 2, 1]
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        for start in range(0, len(self), batch_size):
            yield self.get_images(slice(start, start + batch_size))

    def __repr__(self):
        ps = self.pixel_sizes[~np.isnan(self.pixel_sizes)]
        ps_txt = "unknown" if len(ps) == 0 else (f"{ps[0]:g} A" if np.all(ps == ps[0]) else "varies")
        extras = [name for name in ("rotations", "shifts", "ctf", "labels") if getattr(self, name) is not None]
        return (f"ParticleStack(n={len(self)}, box_size={self.box_size}, pixel_size={ps_txt}, "
                f"stacks={len(self._sources)}, with={extras})")

    # ------------------------------------------------------------------ readers
    @classmethod
    def concatenate(cls, stacks):
        """Join several stacks into one (metadata kept when every stack has it).

        Parameters
        ----------
        stacks : sequence of ParticleStack

        Returns
        -------
        stack : ParticleStack

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_disentangle.io import ParticleStack
        >>> a, b = ParticleStack(np.zeros((2, 8, 8))), ParticleStack(np.ones((3, 8, 8)))
        >>> len(ParticleStack.concatenate([a, b]))
        5
        """
        stacks = list(stacks)
        if not stacks:
            raise ValueError("concatenate needs at least one ParticleStack.")
        sources, src = [], []
        for s in stacks:
            src.append(s._src + len(sources))
            sources.extend(s._sources)

        def cat(name):
            values = [getattr(s, name) for s in stacks]
            if any(v is None for v in values):
                return None
            if isinstance(values[0], pd.DataFrame):
                return pd.concat(values, ignore_index=True)
            return np.concatenate(values)

        return cls._from_parts(
            sources, np.concatenate(src), np.concatenate([s._idx for s in stacks]),
            pixel_sizes=np.concatenate([s.pixel_sizes for s in stacks]),
            rotations=cat("rotations"), shifts=cat("shifts"), ctf=cat("ctf"), labels=cat("labels"),
            metadata=cat("metadata"),
        )

    @classmethod
    def from_file(cls, path, *, datadir=None, pixel_size=None):
        """Particles from any supported file, chosen by extension.

        ``.star`` -> :meth:`from_star`, ``.cs`` -> :meth:`from_cs`, ``.mrcs``/``.mrc``/``.txt``
        (optionally ``.gz``/``.bz2``) -> :meth:`from_mrcs`.

        Parameters
        ----------
        path : str or path-like
        datadir : str or path-like, default=None
            Stack folder for ``.star`` and ``.cs`` files.
        pixel_size : float, default=None

        Returns
        -------
        stack : ParticleStack

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from sklearn_disentangle.io import ParticleStack, write_mrc
        >>> path = os.path.join(tempfile.mkdtemp(), "p.mrcs")
        >>> write_mrc(path, np.zeros((3, 8, 8)))
        >>> len(ParticleStack.from_file(path))
        3
        """
        name = os.fspath(path).lower()
        for comp in (".gz", ".bz2"):
            name = name[: -len(comp)] if name.endswith(comp) else name
        if name.endswith(".star"):
            return cls.from_star(path, datadir=datadir, pixel_size=pixel_size)
        if name.endswith(".cs"):
            return cls.from_cs(path, datadir=datadir, pixel_size=pixel_size)
        if name.endswith((".mrcs", ".mrc", ".txt", ".st", ".map")):
            return cls.from_mrcs(path, pixel_size=pixel_size)
        raise ReaderError(f"{os.fspath(path)}: unknown particle file type; expected .star, .cs, .mrcs, .mrc or .txt.")

    @classmethod
    def from_mrcs(cls, paths, *, pixel_size=None):
        """Particle stack(s) from ``.mrcs``/``.mrc`` files or a ``.txt`` list of them.

        Parameters
        ----------
        paths : str, path-like or list of them
            Stack files (each read as a stack whatever its extension), or a ``.txt`` file
            listing one stack per line (relative paths resolved beside the ``.txt``).
        pixel_size : float, default=None
            Explicit pixel size; otherwise each header's value when positive.

        Returns
        -------
        stack : ParticleStack

        Raises
        ------
        FileNotFoundError, MRCError

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from sklearn_disentangle.io import ParticleStack, write_mrc
        >>> path = os.path.join(tempfile.mkdtemp(), "p.mrcs")
        >>> write_mrc(path, np.zeros((4, 16, 16)), pixel_size=1.5)
        >>> ParticleStack.from_mrcs(path)
        ParticleStack(n=4, box_size=16, pixel_size=1.5 A, stacks=1, with=[])
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = []
        for p in paths:
            p = os.fspath(p)
            if p.lower().endswith(".txt"):
                if not os.path.exists(p):
                    raise FileNotFoundError(f"stack list not found: {p}")
                with open(p, encoding="utf-8", errors="replace") as fh:
                    lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
                if not lines:
                    raise ReaderError(f"{p}: the stack list is empty.")
                for ln in lines:
                    resolved, cands = resolve_stack_path(ln, os.path.dirname(os.path.abspath(p)))
                    if not os.path.exists(resolved):
                        raise FileNotFoundError(f"{p}: listed stack {ln!r} not found (looked at {', '.join(cands)}).")
                    files.append(resolved)
            elif p.lower().endswith(".star"):
                raise ReaderError(f"{p}: a STAR file; use ParticleStack.from_star.")
            else:
                files.append(p)
        sources = [_Source(path=f) for f in files]
        src = np.concatenate([np.full(s.n, i, np.int32) for i, s in enumerate(sources)])
        idx = np.concatenate([np.arange(s.n, dtype=np.int64) for s in sources])
        ps = np.concatenate([np.full(s.n, np.nan if (pixel_size is None and s.header_pixel_size is None)
                                     else float(pixel_size if pixel_size is not None else s.header_pixel_size))
                             for s in sources])
        return cls._from_parts(sources, src, idx, pixel_sizes=ps)

    @classmethod
    def _from_locations(cls, meta_path, indices, names, datadir, pixel_sizes, **kw):
        star_dir = os.path.dirname(os.path.abspath(meta_path))
        uniq, inverse = np.unique(names.astype(str), return_inverse=True)
        sources = []
        for name in uniq:
            resolved, cands = resolve_stack_path(name, star_dir, datadir)
            if not os.path.exists(resolved):
                raise FileNotFoundError(
                    f"{meta_path}: image stack {str(name)!r} not found (looked at {', '.join(cands)}); pass datadir= "
                    "if the stacks live elsewhere."
                )
            sources.append(_Source(path=resolved))
        for i, s in enumerate(sources):
            used = indices[inverse == i]
            if used.size and used.max() >= s.n:
                raise StarError(
                    f"{meta_path}: image index {int(used.max()) + 1} is past the end of stack {s.path} "
                    f"({s.n} images)."
                )
        header_ps = np.array([np.nan if s.header_pixel_size is None else s.header_pixel_size for s in sources])
        if pixel_sizes is None:
            pixel_sizes = header_ps[inverse]
        else:
            pixel_sizes = np.where(np.isnan(pixel_sizes), header_ps[inverse], pixel_sizes)
        return cls._from_parts(sources, inverse.astype(np.int32), indices, pixel_sizes=pixel_sizes, **kw)

    @classmethod
    def from_star(cls, path, *, datadir=None, pixel_size=None, label_column=None, ctf_defaults=None):
        """Particles of a RELION STAR file (3.0, 3.1+ or 5).

        Parameters
        ----------
        path : str or path-like
        datadir : str or path-like, default=None
            Folder holding the stacks when their paths in ``rlnImageName`` do not resolve
            beside the STAR file.
        pixel_size : float, default=None
            Explicit pixel size (overrides optics, detector/magnification and header).
        label_column : str, default=None
            Column to use as ``labels``; ``'rlnClassNumber'`` gives 0-based labels
            (``rlnClassNumber - 1``), other columns are taken as they are.
        ctf_defaults : dict, default=None
            Passed to :func:`~sklearn_disentangle.io.parse_ctf` for files lacking a CTF column.

        Returns
        -------
        stack : ParticleStack
            ``rotations``/``shifts`` when the file has angles, ``ctf`` when it has defocus and
            the other CTF columns, ``metadata`` = the particle table.

        Raises
        ------
        FileNotFoundError
            If the STAR file or a stack it names is missing.
        StarError
            See :func:`~sklearn_disentangle.io.read_star`; also for an image index past the end
            of its stack.

        Warns
        -----
        ReaderWarning
            When ``rlnImageSize`` disagrees with the stacks' box size (the stacks win).

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from sklearn_disentangle.io import ParticleStack
        >>> folder = tempfile.mkdtemp()
        >>> stack = ParticleStack(np.random.rand(3, 16, 16), pixel_size=2.0, rotations=np.tile(np.eye(3), (3, 1, 1)),
        ...                       shifts=np.zeros((3, 2)))
        >>> stack.to_star(os.path.join(folder, "p.star"))
        >>> back = ParticleStack.from_star(os.path.join(folder, "p.star"))
        >>> back.pixel_size, np.allclose(back.get_images(), stack.get_images())
        (2.0, True)
        """
        table = read_star(path)
        path = table.attrs["star_path"]
        indices, names = parse_image_names(table)
        ps = star_pixel_size(table, pixel_size)
        has_angles = any(c in table.columns for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
        rotations = shifts = None
        if has_angles:
            rotations, shifts = parse_poses(table, pixel_size=pixel_size)
        ctf = None
        if "rlnDefocusU" in table.columns:
            try:
                ctf = parse_ctf(table, pixel_size=pixel_size, defaults=ctf_defaults)
            except StarError as exc:
                warnings.warn(f"{path}: CTF parameters not loaded ({exc}).", ReaderWarning, stacklevel=2)
        labels = None
        if label_column is not None:
            if label_column not in table.columns:
                raise StarError(f"{path}: label column {label_column!r} not found.")
            labels = table[label_column].to_numpy()
            if label_column == "rlnClassNumber":
                labels = labels.astype(np.int64) - 1
        stack = cls._from_locations(path, indices, names, datadir, ps, rotations=rotations, shifts=shifts,
                                    ctf=ctf, labels=labels, metadata=table)
        if stack.ctf is not None:
            stack.ctf["pixel_size"] = stack.pixel_sizes
        if "rlnImageSize" in table.columns:
            sizes = pd.to_numeric(table["rlnImageSize"], errors="coerce").to_numpy()
            if np.any(sizes != stack.box_size):
                warnings.warn(
                    f"{path}: rlnImageSize says {int(np.nanmax(sizes))} but the stacks hold "
                    f"{stack.box_size}x{stack.box_size} images; using the stacks' size (check the pixel size "
                    "too: it may refer to the other box).", ReaderWarning, stacklevel=2,
                )
        return stack

    @classmethod
    def from_cs(cls, path, *, datadir=None, pixel_size=None):
        """Particles of a cryoSPARC ``.cs`` file.

        Parameters
        ----------
        path : str or path-like
        datadir : str or path-like, default=None
            Folder against which ``blob/path`` is resolved (cryoSPARC's project folder);
            defaults to the ``.cs`` file's folder (with a file-name fallback).
        pixel_size : float, default=None
            Explicit pixel size; otherwise ``blob/psize_A``.

        Returns
        -------
        stack : ParticleStack

        Raises
        ------
        FileNotFoundError, CryoSparcError, StarError

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from sklearn_disentangle.io import ParticleStack, write_mrc
        >>> folder = tempfile.mkdtemp()
        >>> write_mrc(os.path.join(folder, "s.mrcs"), np.ones((2, 8, 8)))
        >>> rec = np.array([(b"s.mrcs", 1, 1.2)], dtype=[("blob/path", "S8"), ("blob/idx", "<u4"),
        ...                                             ("blob/psize_A", "<f4")])
        >>> with open(os.path.join(folder, "p.cs"), "wb") as fh:
        ...     np.save(fh, rec)
        >>> len(ParticleStack.from_cs(os.path.join(folder, "p.cs")))
        1
        """
        from .cs import parse_cs_ctf, parse_cs_image_locations, parse_cs_poses, read_cs

        records = read_cs(path)
        path = os.fspath(path)
        indices, names = parse_cs_image_locations(records)
        ps = None
        if pixel_size is not None:
            ps = np.full(len(records), float(pixel_size))
        elif "blob/psize_A" in records.dtype.names:
            ps = records["blob/psize_A"].astype(np.float64)
        rotations = shifts = ctf = None
        if "alignments3D/pose" in records.dtype.names:
            rotations, shifts = parse_cs_poses(records, source=path)
        if "ctf/df1_A" in records.dtype.names:
            ctf = parse_cs_ctf(records, source=path)
            if ps is not None:
                ctf["pixel_size"] = ps
        meta = pd.DataFrame({"uid": records["uid"]}) if "uid" in records.dtype.names else None
        return cls._from_locations(path, indices, names, datadir, ps, rotations=rotations, shifts=shifts,
                                   ctf=ctf, metadata=meta)

    # ------------------------------------------------------------------ writer
    def to_star(self, path, *, stack_path=None, batch_size=1024):
        """Write the particles as a RELION 3.1 STAR file (and a stack when needed).

        Images that live in memory (or all images, when ``stack_path`` is given) are written
        to one ``.mrcs`` stack (default: ``path`` with the suffix ``.mrcs``); images already on
        disk are referred to where they are (paths relative to the STAR file). Poses become
        ``rlnAngleRot/Tilt/Psi`` and ``rlnOriginXAngst/YAngst``, the CTF table the usual RELION
        columns, labels ``rlnClassNumber = label + 1`` (integer labels), pixel size and box
        size go to ``data_optics``; other ``metadata`` columns are kept. Files are written
        atomically.

        Parameters
        ----------
        path : str or path-like
            Target STAR file.
        stack_path : str or path-like, default=None
            Where to write the images; forces writing all of them.
        batch_size : int, default=1024
            Images per write (bounds memory).

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> from sklearn_disentangle.io import ParticleStack, read_star
        >>> path = os.path.join(tempfile.mkdtemp(), "out.star")
        >>> ParticleStack(np.zeros((2, 8, 8)), pixel_size=3.0).to_star(path)
        >>> read_star(path)["rlnImageName"].tolist()
        ['000001@out.mrcs', '000002@out.mrcs']
        """
        from ..cryoem.rotations import matrix_to_euler

        path = os.fspath(path)
        star_dir = os.path.dirname(os.path.abspath(path))
        n = len(self)
        if stack_path is not None or any(self._sources[s].path is None for s in np.unique(self._src)):
            stack_path = os.fspath(stack_path) if stack_path is not None else os.path.splitext(path)[0] + ".mrcs"
            ps = self.pixel_sizes[~np.isnan(self.pixel_sizes)]
            with mrc_stack_writer(stack_path, n, self.box_size, pixel_size=float(ps[0]) if len(ps) else 1.0) as out:
                for start in range(0, n, batch_size):
                    out[start:start + batch_size] = self.get_images(slice(start, start + batch_size))
            rel = os.path.relpath(os.path.abspath(stack_path), star_dir)
            names = [f"{i + 1:06d}@{rel}" for i in range(n)]
        else:
            rels = [os.path.relpath(os.path.abspath(s.path), star_dir) for s in self._sources]
            names = [f"{i + 1:06d}@{rels[s]}" for s, i in zip(self._src, self._idx)]
        cols = {"rlnImageName": names}
        if self.rotations is not None:
            ang = matrix_to_euler(self.rotations).numpy()
            cols.update(rlnAngleRot=ang[:, 0], rlnAngleTilt=ang[:, 1], rlnAnglePsi=ang[:, 2])
        if self.shifts is not None:
            cols.update(rlnOriginXAngst=self.shifts[:, 0], rlnOriginYAngst=self.shifts[:, 1])
        if self.ctf is not None:
            c = self.ctf
            cols.update(rlnDefocusU=c["defocus_u"].to_numpy(), rlnDefocusV=c["defocus_v"].to_numpy(),
                        rlnDefocusAngle=c["defocus_angle"].to_numpy(), rlnVoltage=c["voltage"].to_numpy(),
                        rlnSphericalAberration=c["spherical_aberration"].to_numpy(),
                        rlnAmplitudeContrast=c["amplitude_contrast"].to_numpy(),
                        rlnPhaseShift=c["phase_shift"].to_numpy(), rlnCtfBfactor=c["bfactor"].to_numpy(),
                        rlnCtfScalefactor=c["scale"].to_numpy())
        if not np.isnan(self.pixel_sizes).any():
            cols["rlnImagePixelSize"] = self.pixel_sizes
        cols["rlnImageSize"] = np.full(n, self.box_size, dtype=np.int64)
        cols["rlnImageDimensionality"] = np.full(n, 2, dtype=np.int64)
        if self.labels is not None and np.issubdtype(np.asarray(self.labels).dtype, np.integer):
            cols["rlnClassNumber"] = np.asarray(self.labels, dtype=np.int64) + 1
        table = pd.DataFrame(cols)
        if self.metadata is not None:
            keep = [c for c in self.metadata.columns if c not in table.columns and c.startswith("rln")
                    and c not in ("rlnOriginX", "rlnOriginY", "rlnDetectorPixelSize", "rlnMagnification")]
            for c in keep:
                table[c] = self.metadata[c].to_numpy()
        if "rlnOpticsGroup" not in table.columns:
            key_cols = [c for c in ("rlnImagePixelSize", "rlnVoltage", "rlnSphericalAberration",
                                    "rlnAmplitudeContrast") if c in table.columns]
            if key_cols:
                table["rlnOpticsGroup"] = table.groupby(key_cols, sort=True).ngroup().to_numpy() + 1
            else:
                table["rlnOpticsGroup"] = 1
        write_star(path, table)
