"""cryoSPARC ``.cs`` particle files (NumPy structured arrays).

Conventions (checked against the poses cryoDRGN parses from the same files):

- A ``.cs`` file is a ``.npy`` array of records; it is read with ``allow_pickle=False``.
- ``blob/path`` is the stack (a leading ``>`` , cryoSPARC's "relative to the project" mark,
  is dropped), ``blob/idx`` the **0-based** image index, ``blob/psize_A`` the pixel size.
- Poses: ``alignments3D/pose`` is a rotation vector (axis x angle, radians) of the rotation
  *from* the image frame; the RELION-convention matrix ``A`` is its **transpose**
  ``expmap(pose).T``. ``alignments3D/shift`` is in pixels, with the same sign as RELION's
  ``rlnOriginX/Y``; shifts are returned in Angstrom (pixels x ``blob/psize_A``, or
  ``alignments3D/psize_A`` when present). Files with only 2-D alignments have no 3-D poses.
- CTF: ``ctf/df1_A`` and ``df2_A`` are defocus U and V (A), ``ctf/df_angle_rad`` and
  ``ctf/phase_shift_rad`` are converted to degrees, ``ctf/accel_kv``, ``ctf/cs_mm``,
  ``ctf/amp_contrast`` and ``ctf/bfactor`` (when present) map one to one.
"""

import os

import numpy as np
import pandas as pd

from ._errors import CryoSparcError

__all__ = ["read_cs", "parse_cs_poses", "parse_cs_ctf", "parse_cs_image_locations"]


def read_cs(path):
    """Read a cryoSPARC ``.cs`` file (never unpickles).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    records : numpy structured ndarray of shape (n,)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    CryoSparcError
        If it is not a ``.npy``-format structured array with ``blob/path`` and ``blob/idx``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.io.cs import read_cs
    >>> rec = np.zeros(2, dtype=[("blob/path", "S8"), ("blob/idx", "<u4"), ("blob/psize_A", "<f4")])
    >>> path = os.path.join(tempfile.mkdtemp(), "p.cs")
    >>> with open(path, "wb") as fh:
    ...     np.save(fh, rec)
    >>> read_cs(path).shape
    (2,)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"cryoSPARC file not found: {path}")
    try:
        with open(path, "rb") as fh:
            records = np.load(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CryoSparcError(f"{path}: not a cryoSPARC .cs file (a NumPy structured array): {exc}") from exc
    if not isinstance(records, np.ndarray) or records.dtype.names is None or records.ndim != 1:
        raise CryoSparcError(f"{path}: not a cryoSPARC .cs file (expected a 1-D structured array).")
    for field in ("blob/path", "blob/idx"):
        if field not in records.dtype.names:
            raise CryoSparcError(f"{path}: field {field!r} missing; this .cs file does not describe particles.")
    return records


def _pixel_size(records, prefix=None):
    if prefix and f"{prefix}/psize_A" in records.dtype.names:
        return records[f"{prefix}/psize_A"].astype(np.float64)
    if "blob/psize_A" in records.dtype.names:
        return records["blob/psize_A"].astype(np.float64)
    return None


def parse_cs_poses(records, *, source="<records>"):
    """Pose matrices (RELION convention) and shifts in Angstrom from cryoSPARC records.

    Parameters
    ----------
    records : numpy structured ndarray
        From :func:`read_cs`.
    source : str, default='<records>'
        File name used in error messages.

    Returns
    -------
    rotations : ndarray of shape (n, 3, 3), float64
    shifts : ndarray of shape (n, 2), float64
        In Angstrom, RELION origin sign.

    Raises
    ------
    CryoSparcError
        If there are no ``alignments3D/pose`` and ``alignments3D/shift`` fields.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.io.cs import parse_cs_poses
    >>> rec = np.zeros(1, dtype=[("alignments3D/pose", "<f4", 3), ("alignments3D/shift", "<f4", 2),
    ...                          ("blob/psize_A", "<f4")])
    >>> rec["alignments3D/shift"] = [2, 0]; rec["blob/psize_A"] = 1.5
    >>> rot, shifts = parse_cs_poses(rec)
    >>> rot[0].round(6).tolist() == np.eye(3).tolist(), shifts.tolist()
    (True, [[3.0, 0.0]])
    """
    from ..cryoem.rotations import axis_angle_to_matrix

    names = records.dtype.names or ()
    if "alignments3D/pose" not in names or "alignments3D/shift" not in names:
        raise CryoSparcError(f"{source}: no 3-D alignments (alignments3D/pose, alignments3D/shift) in this file.")
    rot = axis_angle_to_matrix(records["alignments3D/pose"].astype(np.float64)).numpy()
    rot = np.ascontiguousarray(rot.transpose(0, 2, 1))
    apix = _pixel_size(records, "alignments3D")
    if apix is None:
        raise CryoSparcError(f"{source}: no pixel size (blob/psize_A) to convert shifts to Angstrom.")
    shifts = records["alignments3D/shift"].astype(np.float64) * apix[:, None]
    return rot, shifts


def parse_cs_ctf(records, *, source="<records>"):
    """CTF table (same columns and units as :func:`~sklearn_disentangle.io.parse_ctf`).

    Parameters
    ----------
    records : numpy structured ndarray
    source : str, default='<records>'

    Returns
    -------
    ctf : pandas.DataFrame of shape (n, 10)

    Raises
    ------
    CryoSparcError
        If the ``ctf/*`` fields are missing.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.io.cs import parse_cs_ctf
    >>> f = ["ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast"]
    >>> rec = np.ones(1, dtype=[(k, "<f4") for k in f] + [("blob/psize_A", "<f4")])
    >>> round(float(parse_cs_ctf(rec)["defocus_angle"][0]), 3)
    57.296
    """
    names = records.dtype.names or ()
    needed = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")
    missing = [f for f in needed if f not in names]
    if missing:
        raise CryoSparcError(f"{source}: CTF fields missing: {', '.join(missing)}.")
    n = len(records)

    def opt(field, default):
        return records[field].astype(np.float64) if field in names else np.full(n, default)

    apix = _pixel_size(records)
    return pd.DataFrame({
        "defocus_u": records["ctf/df1_A"].astype(np.float64),
        "defocus_v": records["ctf/df2_A"].astype(np.float64),
        "defocus_angle": np.rad2deg(records["ctf/df_angle_rad"].astype(np.float64)),
        "voltage": records["ctf/accel_kv"].astype(np.float64),
        "spherical_aberration": records["ctf/cs_mm"].astype(np.float64),
        "amplitude_contrast": records["ctf/amp_contrast"].astype(np.float64),
        "phase_shift": np.rad2deg(opt("ctf/phase_shift_rad", 0.0)),
        "bfactor": opt("ctf/bfactor", 0.0),
        "scale": opt("ctf/scale", 1.0),
        "pixel_size": apix if apix is not None else np.full(n, np.nan),
    })


def parse_cs_image_locations(records):
    """Stack paths (as written, leading ``>`` removed) and 0-based indices of each particle.

    Parameters
    ----------
    records : numpy structured ndarray

    Returns
    -------
    indices : ndarray of shape (n,), int64
    paths : ndarray of shape (n,), object

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.io.cs import parse_cs_image_locations
    >>> rec = np.array([(b">J1/a.mrc", 3)], dtype=[("blob/path", "S16"), ("blob/idx", "<u4")])
    >>> idx, paths = parse_cs_image_locations(rec)
    >>> idx.tolist(), paths.tolist()
    ([3], ['J1/a.mrc'])
    """
    raw = records["blob/path"]
    paths = np.array([(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p)).lstrip(">")
                      for p in raw], dtype=object)
    return records["blob/idx"].astype(np.int64), paths
