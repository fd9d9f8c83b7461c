"""DiffAE3D data in and latents out: HDF5 series to model input, latents to ``emb.h5`` and a TSV.

Input: the 5-D ``(Channel, Time, Slice, X, Y)`` series of :mod:`sklearn_disentangle.io.hdf5`
(read through :class:`~sklearn_disentangle.io.HDF5VolumeReader`), arranged as the model wants
them: ``"time_as_depth"`` (the paper's cardiac set-up: the cine frames become the depth of a
volume, one slice), ``"slice_as_depth"`` (a static 3-D scan, one time point) or ``"image"``
(2-D, one frame and one slice), optionally cropped/padded, and mapped from ``[0, 1]`` to
``[-1, 1]`` (the paper's ``zscore`` normalisation with mean = std = 0.5).

Output (the paper's convention): ``emb.h5`` with the input's ``patientID/fieldID/instanceID``
group tree and one dataset per series, named like the input series, holding the latent as
``(1, 1, 1, z_dim)``; and a tab-separated table ``FID IID Z0 ... Z{L-1}`` (PLINK phenotype
layout) keyed by patient ID. Both are written atomically (temporary file, then rename).
"""

import os
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import rankdata

from ..io import HDF5VolumeReader
from ..io._errors import HDF5Error

__all__ = ["DiffAEVolumeReader", "crop_or_pad", "write_latents", "read_latents", "inverse_normal_transform"]

LAYOUTS = ("time_as_depth", "slice_as_depth", "image")


def crop_or_pad(x, shape, fill=0.0):
    """Symmetric pad (extra value at the far end) then centre crop the trailing axes to ``shape``.

    Parameters
    ----------
    x : ndarray
    shape : tuple of int
        Target size of the last ``len(shape)`` axes.
    fill : float, default=0.0

    Returns
    -------
    out : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.diffae import crop_or_pad
    >>> crop_or_pad(np.ones((1, 3, 6)), (4, 4)).shape
    (1, 4, 4)
    """
    x = np.asarray(x)
    shape = tuple(int(s) for s in shape)
    if len(shape) > x.ndim or any(s < 1 for s in shape):
        raise ValueError(f"shape {shape} must have at most {x.ndim} positive entries for an array of shape {x.shape}.")
    lead = x.ndim - len(shape)
    pads = [(0, 0)] * lead
    for size, want in zip(x.shape[lead:], shape):
        extra = max(want - size, 0)
        pads.append((extra // 2, extra - extra // 2))
    if any(p != (0, 0) for p in pads):
        x = np.pad(x, pads, constant_values=fill)
    slices = [slice(None)] * lead
    for size, want in zip(x.shape[lead:], shape):
        start = (size - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


class DiffAEVolumeReader(HDF5VolumeReader):
    """HDF5 series (DiffAE3D layout) to DiffAE3D input: arranged, cropped/padded, in ``[-1, 1]``.

    A stateless transformer: ``transform(paths)`` reads every selected series with
    :class:`~sklearn_disentangle.io.HDF5VolumeReader` and returns an array ready for
    :class:`~sklearn_disentangle.DiffAE3D`; :meth:`list_items` / :meth:`subject_ids` give the
    row order (sorted ``patientID/fieldID/instanceID/dataset`` keys).

    Parameters
    ----------
    keys : list of str, default=None
        Series selection (e.g. ``["LAX_4Ch_transverse"]``; None: every primary series).
    normalisation : {'minmaxvol', 'minmax', 'divbymax', 'divbymaxvol'}, default='minmaxvol'
        To ``[0, 1]`` first (``*vol`` modes use the series' ``min_val``/``max_val``
        attributes).
    layout : {"time_as_depth", "slice_as_depth", "image"}, default="time_as_depth"
        ``"time_as_depth"``: needs one slice, gives ``(n, C, Time, X, Y)``;
        ``"slice_as_depth"``: needs one time point, gives ``(n, C, Slice, X, Y)``;
        ``"image"``: needs one of each, gives ``(n, C, X, Y)``.
    shape : tuple of int or None, default=None
        Crop/pad the spatial axes to this shape (the paper: ``(50, 128, 128)``); padding uses
        the lower end of ``output_range`` (background).
    output_range : tuple of two floats or None, default=(-1.0, 1.0)
        Linear map of ``[0, 1]`` to this range; None keeps ``[0, 1]``.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_disentangle.datasets import make_cardiac_volumes
    >>> from sklearn_disentangle.diffae import DiffAEVolumeReader
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> _ = make_cardiac_volumes(3, n_frames=8, n_slices=1, size=16, path=path, random_state=0)
    >>> reader = DiffAEVolumeReader()
    >>> X = reader.fit_transform(path)
    >>> X.shape, float(X.min()) >= -1, reader.subject_ids(path)
    ((3, 1, 8, 16, 16), True, ['1000001', '1000002', '1000003'])
    """

    def __init__(self, keys=None, normalisation="minmaxvol", layout="time_as_depth", shape=None,
                 output_range=(-1.0, 1.0)):
        self.keys = keys
        self.normalisation = normalisation
        self.layout = layout
        self.shape = shape
        self.output_range = output_range

    def subject_ids(self, X):
        """Patient ID (first group of the key) of every row :meth:`transform` returns.

        Parameters
        ----------
        X : str, path-like or sequence of them

        Returns
        -------
        ids : list of str
        """
        return [key.split("/")[0] for _, key in self.list_items(X)]

    def transform(self, X):
        """Read, arrange, crop/pad and scale every selected series.

        Parameters
        ----------
        X : str, path-like or sequence of them

        Returns
        -------
        volumes : ndarray of shape (n_series, C, D, H, W) or (n_series, C, H, W), float32
        """
        if self.normalisation not in ("minmax", "divbymax", "minmaxvol", "divbymaxvol"):
            raise ValueError(f"normalisation must be one of 'minmaxvol', 'minmax', 'divbymax', 'divbymaxvol' (DiffAE3D "
                             f"needs data in [0, 1] before scaling), got {self.normalisation!r}.")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}.")
        if self.output_range is not None:
            lo_hi = tuple(self.output_range)
            if len(lo_hi) != 2 or not all(np.isfinite(lo_hi)) or lo_hi[0] >= lo_hi[1]:
                raise ValueError(f"output_range must be (low, high) with low < high, or None; got {self.output_range!r}.")
        vols = super().transform(X)  # (n, C, T, S, X, Y)
        n, c, t, s = vols.shape[:4]
        if self.layout == "time_as_depth":
            if s != 1:
                raise ValueError(f"layout='time_as_depth' needs series with one slice, got {s} slices; select a "
                                 "single-slice series (e.g. a long-axis cine) or use layout='slice_as_depth'.")
            out = vols[:, :, :, 0]
        elif self.layout == "slice_as_depth":
            if t != 1:
                raise ValueError(f"layout='slice_as_depth' needs series with one time point, got {t}; use "
                                 "layout='time_as_depth' for cines with one slice.")
            out = vols[:, :, 0]
        else:
            if t != 1 or s != 1:
                raise ValueError(f"layout='image' needs one time point and one slice, got Time={t}, Slice={s}.")
            out = vols[:, :, 0, 0]
        if self.output_range is not None:
            lo, hi = (float(v) for v in self.output_range)
            out = lo + (hi - lo) * out
            fill = lo
        else:
            fill = 0.0
        if self.shape is not None:
            want = tuple(int(v) for v in self.shape)
            if len(want) != out.ndim - 2:
                raise ValueError(f"shape must have {out.ndim - 2} entries for layout={self.layout!r}, got {want}.")
            out = crop_or_pad(out, want, fill=fill)
        return np.ascontiguousarray(out, dtype=np.float32)


def _split_key(key):
    parts = str(key).strip("/").split("/")
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"key {key!r} must be 'patientID/fieldID/instanceID/dataset' (as DiffAEVolumeReader."
                         "list_items gives).")
    return parts


def inverse_normal_transform(Z):
    """Rank-based inverse-normal transform of every column (Blom offsets; ties get mean ranks).

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_columns)

    Returns
    -------
    Zn : ndarray of float64

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.diffae import inverse_normal_transform
    >>> inverse_normal_transform(np.array([[1.0], [5.0], [100.0]])).round(3).ravel().tolist()
    [-0.869, 0.0, 0.869]
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_samples, n_columns), got shape {Z.shape}.")
    n = len(Z)
    ranks = rankdata(Z, axis=0)
    return ndtri((ranks - 0.375) / (n + 0.25))


def _atomic(path, write):
    target = Path(os.fspath(path))
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_latents(Z, keys, *, h5_path=None, tsv_path=None, inverse_normal=False):
    """Write latents as ``emb.h5`` (input group tree) and/or a ``FID IID Z0..`` TSV, atomically.

    Parameters
    ----------
    Z : array-like of shape (n_series, z_dim)
    keys : sequence of str
        ``"patientID/fieldID/instanceID/dataset"`` of every row (unique), e.g.
        ``[k for _, k in DiffAEVolumeReader().list_items(path)]``.
    h5_path : str, path-like or None, default=None
        ``emb.h5``: dataset ``patientID/fieldID/instanceID/dataset`` of shape
        ``(1, 1, 1, z_dim)``, float32.
    tsv_path : str, path-like or None, default=None
        One row per patient: ``FID`` and ``IID`` (both the patient ID), then ``Z0`` ...
        ``Z{z_dim-1}``. A patient with several series is an error: pass the rows of one
        visit only.
    inverse_normal : bool, default=False
        Rank-based inverse-normal transform of every TSV column (as the paper before GWAS);
        ``emb.h5`` always holds the raw latents.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from sklearn_disentangle.diffae import write_latents, read_latents
    >>> d = tempfile.mkdtemp()
    >>> keys = ["11/20208/2_0/primary", "12/20208/2_0/primary"]
    >>> write_latents(np.ones((2, 3)), keys, h5_path=os.path.join(d, "emb.h5"), tsv_path=os.path.join(d, "z.tsv"))
    >>> Z, back = read_latents(os.path.join(d, "emb.h5"))
    >>> back == keys, Z.shape
    (True, (2, 3))
    >>> open(os.path.join(d, "z.tsv")).readline().split()
    ['FID', 'IID', 'Z0', 'Z1', 'Z2']
    """
    if h5_path is None and tsv_path is None:
        raise ValueError("Give h5_path and/or tsv_path: there is nothing to write.")
    if hasattr(Z, "to_numpy"):
        Z = Z.to_numpy()
    Z = np.asarray(Z, dtype=np.float32)
    keys = [str(k) for k in keys]
    if Z.ndim != 2:
        raise ValueError(f"Z must be 2-D (n_series, z_dim), got shape {Z.shape}.")
    if len(keys) != len(Z):
        raise ValueError(f"keys has {len(keys)} entries but Z has {len(Z)} rows; pass one key per row.")
    if not np.isfinite(Z).all():
        raise ValueError("Z contains NaN or infinity.")
    parts = [_split_key(k) for k in keys]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})[:3]
        raise ValueError(f"keys must be unique, got duplicates {dup}.")
    if tsv_path is not None:
        ids = [p[0] for p in parts]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise ValueError(f"the TSV has one row per patient, but patients {dup} have several series; select "
                             "one series per patient (e.g. the first imaging visit) before writing the TSV.")
    if h5_path is not None:
        def write_h5(tmp):
            with h5py.File(tmp, "w") as fh:
                for (pid, fid, iid, name), z in zip(parts, Z):
                    fh.create_dataset(f"{pid}/{fid}/{iid}/{name}", data=z.reshape(1, 1, 1, -1))
        _atomic(h5_path, write_h5)
    if tsv_path is not None:
        values = inverse_normal_transform(Z) if inverse_normal else Z
        frame = pd.DataFrame(values, columns=[f"Z{i}" for i in range(Z.shape[1])])
        frame.insert(0, "IID", [p[0] for p in parts])
        frame.insert(0, "FID", [p[0] for p in parts])
        _atomic(tsv_path, lambda tmp: frame.to_csv(tmp, sep="\t", index=False, float_format="%.8g"))


def read_latents(path):
    """Read an ``emb.h5`` written by :func:`write_latents` (or the paper's pipeline).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Z : ndarray of shape (n_series, z_dim), float32
        One row per dataset; datasets with several ``(i, j, k)`` entries give one row each.
    keys : list of str
        ``"patientID/fieldID/instanceID/dataset"`` of every row, sorted.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from sklearn_disentangle.diffae import write_latents, read_latents
    >>> p = os.path.join(tempfile.mkdtemp(), "emb.h5")
    >>> write_latents(np.zeros((1, 4)), ["1/2/3/primary"], h5_path=p)
    >>> read_latents(p)[1]
    ['1/2/3/primary']
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    rows, keys = [], []
    try:
        with h5py.File(path, "r") as fh:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    if len(name.split("/")) != 4:
                        raise HDF5Error(f"{path}: dataset {name!r} is not at patientID/fieldID/instanceID/dataset.")
                    arr = np.asarray(obj[()], dtype=np.float32)
                    arr = arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)
                    for r in arr:
                        rows.append(r)
                        keys.append(name)
            fh.visititems(visit)
    except OSError as exc:
        raise HDF5Error(f"{path}: not a readable HDF5 file ({exc}).") from exc
    if not rows:
        raise HDF5Error(f"{path}: no latent datasets found.")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise HDF5Error(f"{path}: latents of different widths {sorted(widths)}.")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    return np.stack([rows[i] for i in order]), [keys[i] for i in order]
