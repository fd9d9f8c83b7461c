"""HDF5 volume files in the DiffAE3D / UK Biobank layout.

Layout (one file, e.g. ``data.h5``):

- groups ``patientID/fieldID/instanceID`` (e.g. ``1234567/20208/2_0``), optional group
  attributes (``patientDICOMID``, ``studyDesc``, ...);
- inside each instance group, one **5-D** dataset per series, shaped
  ``(Channel, Time, Slice, X, Y)``, under a key ``primary``, ``primary_<tag>`` or
  ``auxiliary_<tag>``, optionally followed by a plane suffix (``_sagittal``, ``_coronal``,
  ``_transverse``) and a repeat suffix ``_0`` ... ``_n``; other keys (masks) are not samples;
- dataset attributes ``min_val`` and ``max_val`` (of the magnitude for complex data), required
  by the volumetric normalisation modes.

Normalisation modes: ``'minmax'`` ``(x - min) / (max - min + eps)`` and ``'divbymax'``
``x / (max + eps)`` with the sample's own extrema; ``'minmaxvol'`` and ``'divbymaxvol'`` the same
with the series' ``min_val``/``max_val`` attributes (a clear :class:`HDF5Error` when they are
absent); ``None`` leaves the data as stored. Complex data are read as magnitudes.

h5py handles do not pickle: :class:`HDF5VolumeDataset` opens the file per read (per worker).
"""

import os
import uuid
from pathlib import Path

import h5py
import numpy as np

from ._errors import HDF5Error

__all__ = [
    "list_hdf5_volumes",
    "read_hdf5_volume",
    "normalise_volume",
    "write_hdf5_volumes",
    "HDF5VolumeDataset",
    "NORMALISATION_MODES",
]

NORMALISATION_MODES = (None, "minmax", "divbymax", "minmaxvol", "divbymaxvol")
_EPS = 1e-8


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"HDF5 file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise HDF5Error(f"{path}: not a readable HDF5 file ({exc}).") from exc


def _is_sample_key(name):
    return name == "primary" or name.startswith("primary_") or name.startswith("auxiliary_")


def _selected(name, keys):
    if keys is None:
        return name == "primary" or name.startswith("primary_")
    for key in keys:
        if key in ("primary",) or key.startswith(("primary", "auxiliary_")):
            full = key
        else:
            full = "primary_" + key
        if name == full or (name.endswith("_0") and name[:-2] == full):
            return True
    return False


def list_hdf5_volumes(path, keys=None):
    """List the sample datasets of an HDF5 volume file.

    Parameters
    ----------
    path : str or path-like
    keys : list of str, default=None
        Series to select. ``None`` takes every primary series (``primary``, ``primary_*``).
        A name without prefix gets ``primary_`` (``"LAX_4Ch_transverse"`` selects
        ``primary_LAX_4Ch_transverse`` and ``primary_LAX_4Ch_transverse_0``); names starting
        with ``auxiliary_`` select auxiliary series.

    Returns
    -------
    items : list of str
        ``"patientID/fieldID/instanceID/dataset"`` paths, sorted.

    Raises
    ------
    FileNotFoundError, HDF5Error
        A missing file, an unreadable file, or a selected dataset that is not 5-D.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.hdf5 import write_hdf5_volumes, list_hdf5_volumes
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> write_hdf5_volumes(path, {"1/20208/2_0/primary": np.zeros((1, 2, 3, 4, 4))})
    >>> list_hdf5_volumes(path)
    ['1/20208/2_0/primary']
    """
    path = os.fspath(path)
    items = []
    with _open(path) as fh:
        try:
            for pid, pgroup in fh.items():
                if not isinstance(pgroup, h5py.Group):
                    continue
                for fid, fgroup in pgroup.items():
                    if not isinstance(fgroup, h5py.Group):
                        continue
                    for iid, igroup in fgroup.items():
                        if not isinstance(igroup, h5py.Group):
                            continue
                        for name, ds in igroup.items():
                            if not isinstance(ds, h5py.Dataset) or not _is_sample_key(name):
                                continue
                            if not _selected(name, keys):
                                continue
                            if ds.ndim != 5:
                                raise HDF5Error(f"{path}: dataset {pid}/{fid}/{iid}/{name} has shape {ds.shape}; "
                                                "expected 5-D (Channel, Time, Slice, X, Y).")
                            items.append(f"{pid}/{fid}/{iid}/{name}")
        except (OSError, KeyError, RuntimeError) as exc:
            raise HDF5Error(f"{path}: damaged HDF5 file ({exc}).") from exc
    return sorted(items)


def normalise_volume(x, mode, *, min_val=None, max_val=None, source="<array>"):
    """Intensity normalisation of one sample (see the module docstring for the formulas).

    Parameters
    ----------
    x : ndarray
        Real data (take magnitudes of complex data first).
    mode : {None, 'minmax', 'divbymax', 'minmaxvol', 'divbymaxvol'}
    min_val, max_val : float, default=None
        Series extrema; required by the ``*vol`` modes.
    source : str, default='<array>'
        Named in error messages.

    Returns
    -------
    normalised : ndarray of float32

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.io.hdf5 import normalise_volume
    >>> normalise_volume(np.array([2.0, 4.0]), "minmaxvol", min_val=0.0, max_val=4.0).tolist()
    [0.5, 1.0]
    """
    if mode not in NORMALISATION_MODES:
        raise ValueError(f"normalisation must be one of {NORMALISATION_MODES}, got {mode!r}.")
    x = np.asarray(x, dtype=np.float32)
    if mode is None:
        return x
    if mode.endswith("vol"):
        if min_val is None or max_val is None:
            raise HDF5Error(f"{source}: normalisation {mode!r} needs the dataset attributes min_val and max_val, "
                            "which are absent; use 'minmax'/'divbymax' or add the attributes.")
        lo, hi = float(min_val), float(max_val)
    else:
        lo, hi = float(x.min()), float(x.max())
    if mode.startswith("minmax"):
        return ((x - lo) / (hi - lo + _EPS)).astype(np.float32)
    return (x / (hi + _EPS)).astype(np.float32)


def read_hdf5_volume(path, key, *, normalisation=None):
    """Read one 5-D series (magnitude if complex), optionally normalised.

    Parameters
    ----------
    path : str or path-like
    key : str
        ``"patientID/fieldID/instanceID/dataset"``, as listed by :func:`list_hdf5_volumes`.
    normalisation : {None, 'minmax', 'divbymax', 'minmaxvol', 'divbymaxvol'}, default=None

    Returns
    -------
    volume : ndarray of shape (C, T, S, X, Y), float32

    Raises
    ------
    FileNotFoundError, HDF5Error

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.hdf5 import write_hdf5_volumes, read_hdf5_volume
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> write_hdf5_volumes(path, {"1/2/3/primary": np.full((1, 1, 2, 2, 2), 5.0)})
    >>> float(read_hdf5_volume(path, "1/2/3/primary", normalisation="divbymaxvol").max())
    1.0
    """
    path = os.fspath(path)
    with _open(path) as fh:
        try:
            ds = fh[key]
        except KeyError as exc:
            raise HDF5Error(f"{path}: no dataset {key!r}.") from exc
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 5:
            raise HDF5Error(f"{path}: {key!r} is not a 5-D dataset (Channel, Time, Slice, X, Y).")
        try:
            data = ds[()]
        except (OSError, RuntimeError) as exc:
            raise HDF5Error(f"{path}: cannot read dataset {key!r} ({exc}).") from exc
        attrs = dict(ds.attrs)
    if np.iscomplexobj(data):
        data = np.abs(data)
    return normalise_volume(data, normalisation, min_val=attrs.get("min_val"), max_val=attrs.get("max_val"),
                            source=f"{path}: {key}")


def write_hdf5_volumes(path, volumes, *, attrs=None, group_attrs=None):
    """Write 5-D series in the documented layout, with ``min_val``/``max_val`` set, atomically.

    Parameters
    ----------
    path : str or path-like
    volumes : mapping of str to ndarray
        ``"patientID/fieldID/instanceID/dataset"`` to a 5-D array ``(C, T, S, X, Y)``.
    attrs : mapping of str to dict, default=None
        Extra dataset attributes per key (``min_val``/``max_val`` are computed from the
        magnitude unless given).
    group_attrs : mapping of str to dict, default=None
        Attributes of instance groups, keyed ``"patientID/fieldID/instanceID"``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.hdf5 import write_hdf5_volumes
    >>> import h5py
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> write_hdf5_volumes(path, {"7/20208/2_0/primary_LAX": np.arange(8.0).reshape(1, 1, 2, 2, 2)})
    >>> with h5py.File(path) as fh:
    ...     float(fh["7/20208/2_0/primary_LAX"].attrs["max_val"])
    7.0
    """
    path = os.fspath(path)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    attrs = dict(attrs or {})
    try:
        with h5py.File(tmp, "w") as fh:
            for key, data in volumes.items():
                parts = key.strip("/").split("/")
                if len(parts) != 4 or not _is_sample_key(parts[3]):
                    raise ValueError(f"key {key!r} must be 'patientID/fieldID/instanceID/dataset' with a dataset name "
                                     "'primary', 'primary_<tag>' or 'auxiliary_<tag>'.")
                data = np.asarray(data)
                if data.ndim != 5:
                    raise ValueError(f"{key}: data must be 5-D (Channel, Time, Slice, X, Y), got {data.shape}.")
                ds = fh.create_dataset(key, data=data)
                mag = np.abs(data)
                extra = dict(attrs.get(key, {}))
                ds.attrs["min_val"] = extra.pop("min_val", float(mag.min()))
                ds.attrs["max_val"] = extra.pop("max_val", float(mag.max()))
                for name, value in extra.items():
                    ds.attrs[name] = value
            for gkey, gattrs in (group_attrs or {}).items():
                for name, value in gattrs.items():
                    fh[gkey].attrs[name] = value
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class HDF5VolumeDataset:
    """Lazy, indexable view of the series of an HDF5 volume file (one read per item).

    Parameters
    ----------
    path : str or path-like
    keys : list of str, default=None
        Series selection (see :func:`list_hdf5_volumes`).
    normalisation : {None, 'minmax', 'divbymax', 'minmaxvol', 'divbymaxvol'}, default='minmax'

    Attributes
    ----------
    items : list of str
        ``"patientID/fieldID/instanceID/dataset"`` of each item.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.hdf5 import write_hdf5_volumes, HDF5VolumeDataset
    >>> path = os.path.join(tempfile.mkdtemp(), "data.h5")
    >>> write_hdf5_volumes(path, {f"{p}/20208/2_0/primary": np.random.rand(1, 2, 3, 4, 4) for p in (1, 2)})
    >>> ds = HDF5VolumeDataset(path)
    >>> len(ds), ds[1].shape
    (2, (1, 2, 3, 4, 4))
    """

    def __init__(self, path, keys=None, normalisation="minmax"):
        if normalisation not in NORMALISATION_MODES:
            raise ValueError(f"normalisation must be one of {NORMALISATION_MODES}, got {normalisation!r}.")
        self.path = os.fspath(path)
        self.keys = keys
        self.normalisation = normalisation
        self.items = list_hdf5_volumes(self.path, keys)
        if not self.items:
            raise HDF5Error(f"{self.path}: no series matching {keys if keys is not None else 'primary*'} found.")

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return read_hdf5_volume(self.path, self.items[i], normalisation=self.normalisation)

    def __repr__(self):
        return f"HDF5VolumeDataset({self.path!r}, n={len(self)}, normalisation={self.normalisation!r})"
