"""RELION STAR files: particles with optics merged, poses, CTF parameters, image names; writing.

Layouts read (detected from the block names, not from a version comment):

- **RELION 3.0**: one loop block (``data_``, ``data_images`` or any single block) holding
  everything; pixel size from ``rlnDetectorPixelSize x 1e4 / rlnMagnification``; offsets
  ``rlnOriginX/Y`` in pixels.
- **RELION 3.1 and later (including 5)**: ``data_optics`` and ``data_particles`` in either
  order; every optics column is merged into each particle row through ``rlnOpticsGroup``
  (several groups supported); pixel size ``rlnImagePixelSize``; offsets
  ``rlnOriginXAngst/YAngst`` in Angstrom. Extra RELION 5 optics columns are kept.

Rules stated once:

- **Optics merging.** Optics values fill every particle row of their group. Where a particle
  block repeats an optics column (some converters write ``rlnVoltage`` in both) and the
  values differ, the optics value is kept (RELION's behaviour) and a warning names the
  column.
- **Offsets.** Shifts are returned in Angstrom. If ``rlnOriginXAngst/YAngst`` are present
  they are used; ``rlnOriginX/Y`` (pixels) are used only when the Angstrom columns are
  absent, converted with the row's pixel size. When both exist and disagree by more than
  1e-3 A a :class:`ReaderWarning` says so (the Angstrom columns still win).
- **Image names** ``index@path``: the index is 1-based (zero padded or not); a relative
  path is looked up under ``datadir`` (as written, then by file name), then beside the STAR
  file (as written, then by file name).
- **Never unpickles**: a pickle (or any binary file) given as a STAR file raises
  :class:`StarError`.
"""

import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from ._errors import StarError, ReaderWarning

__all__ = [
    "read_star",
    "parse_poses",
    "parse_ctf",
    "parse_image_names",
    "resolve_stack_path",
    "star_pixel_size",
    "write_star",
    "OPTICS_COLUMNS",
    "CTF_COLUMNS",
]

OPTICS_COLUMNS = (
    "rlnOpticsGroupName", "rlnAmplitudeContrast", "rlnSphericalAberration", "rlnVoltage", "rlnImagePixelSize",
    "rlnMicrographOriginalPixelSize", "rlnMicrographPixelSize", "rlnImageSize", "rlnImageDimensionality",
    "rlnCtfDataAreCtfPremultiplied", "rlnBeamTiltX", "rlnBeamTiltY", "rlnOddZernike", "rlnEvenZernike",
    "rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11",
)
"""Columns that belong to the ``data_optics`` block in RELION 3.1+."""

CTF_COLUMNS = (
    "defocus_u", "defocus_v", "defocus_angle", "voltage", "spherical_aberration", "amplitude_contrast",
    "phase_shift", "bfactor", "scale", "pixel_size",
)
"""Columns of the CTF table returned by :func:`parse_ctf` (units in its docstring)."""

_PARTICLE_BLOCK_NAMES = ("particles", "images", "")
_NON_PARTICLE_HINTS = {
    "model_general": "a RELION model STAR file",
    "general": "a RELION post-processing STAR file",
    "pipeline_general": "a RELION pipeline STAR file",
    "fsc": "a RELION post-processing STAR file",
}


def _check_text_file(path):
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[:1] == b"\x80" or head[:2] in (b"\x80\x02", b"\x80\x04", b"\x80\x05"):
        raise StarError(
            f"{path}: this is a Python pickle, not a STAR file. STAR files are text; pickled "
            "poses/CTF (cryoDRGN .pkl) are never unpickled by this library."
        )
    if b"\x00" in head:
        raise StarError(f"{path}: binary content, not a STAR text file.")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 4096 or exc.start < len(head) - 4:
            raise StarError(f"{path}: not a UTF-8 text file, so not a STAR file.") from exc
    if b"data_" not in head and os.path.getsize(path) <= 4096:
        raise StarError(f"{path}: no 'data_' block found; not a STAR file.")


def _read_blocks(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(path, always_dict=True)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError,
            pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise StarError(f"{path}: malformed STAR file ({type(exc).__name__}: {exc}).") from exc
    if not isinstance(blocks, dict) or not blocks:
        raise StarError(f"{path}: no data blocks found; not a STAR file.")
    return blocks


def _pick_particle_block(path, blocks):
    loops = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    names = list(blocks)
    for name in _PARTICLE_BLOCK_NAMES:
        if name in loops and name != "optics":
            return name
    with_images = [k for k, v in loops.items() if "rlnImageName" in v.columns and k != "optics"]
    if len(with_images) == 1:
        return with_images[0]
    non_optics = [k for k in loops if k != "optics"]
    if len(non_optics) == 1 and not any(k in _NON_PARTICLE_HINTS for k in names):
        return non_optics[0]
    hint = next((_NON_PARTICLE_HINTS[k] for k in names if k in _NON_PARTICLE_HINTS), None)
    what = f" It looks like {hint}." if hint else ""
    raise StarError(
        f"{path}: no particle block found (blocks: {', '.join(repr('data_' + n) for n in names)}); expected "
        f"'data_particles' (RELION 3.1+) or a single particle loop (RELION 3.0).{what}"
    )


def _merge_optics(path, particles, optics):
    if "rlnOpticsGroup" not in optics.columns:
        raise StarError(f"{path}: the data_optics block has no rlnOpticsGroup column.")
    optics = optics.copy()
    groups = pd.to_numeric(optics["rlnOpticsGroup"], errors="coerce")
    if groups.isna().any() or groups.duplicated().any():
        raise StarError(f"{path}: rlnOpticsGroup in data_optics must be unique integers.")
    optics["rlnOpticsGroup"] = groups.astype(np.int64)
    if "rlnOpticsGroup" not in particles.columns:
        if len(optics) != 1:
            raise StarError(
                f"{path}: {len(optics)} optics groups but the particles have no rlnOpticsGroup column."
            )
        particles = particles.assign(rlnOpticsGroup=int(optics["rlnOpticsGroup"].iloc[0]))
    pgroups = pd.to_numeric(particles["rlnOpticsGroup"], errors="coerce")
    missing = sorted(set(pgroups.dropna().astype(np.int64)) - set(optics["rlnOpticsGroup"]))
    if pgroups.isna().any() or missing:
        raise StarError(f"{path}: particles refer to optics groups {missing or 'that are not integers'} "
                        "absent from data_optics.")
    particles = particles.assign(rlnOpticsGroup=pgroups.astype(np.int64).to_numpy())
    lookup = optics.set_index("rlnOpticsGroup")
    merged = particles.copy()
    for col in lookup.columns:
        values = lookup[col].reindex(merged["rlnOpticsGroup"].to_numpy()).to_numpy()
        if col in merged.columns:
            old = merged[col].to_numpy()
            try:
                differ = not np.allclose(np.asarray(old, float), np.asarray(values, float), rtol=1e-6, atol=1e-9)
            except (TypeError, ValueError):
                differ = not np.array_equal(np.asarray(old, str), np.asarray(values, str))
            if differ:
                warnings.warn(f"{path}: column {col} differs between the particle and optics blocks; "
                              "using the optics value (RELION's rule).", ReaderWarning, stacklevel=3)
        merged[col] = values
    return merged


def read_star(path, *, require_image_name=True):
    """Read a RELION particle STAR file into one table with optics values merged per row.

    Parameters
    ----------
    path : str or path-like
        RELION 3.0, 3.1+ or 5 STAR file.
    require_image_name : bool, default=True
        Raise if the particle block has no ``rlnImageName`` column.

    Returns
    -------
    table : pandas.DataFrame
        One row per particle; columns are RELION labels without the leading underscore
        (``rlnDefocusU``...). ``table.attrs`` holds ``star_path`` (str), ``relion_layout``
        (``'3.0'`` or ``'3.1'``) and ``optics`` (the optics block as a dict of column lists, or
        None; ``pandas.DataFrame(table.attrs["optics"])`` rebuilds it).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    StarError
        If the file is not a STAR file (e.g. a pickle), has no particle block, an empty or
        truncated particle loop, optics groups that do not match, or no ``rlnImageName``.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from sklearn_disentangle.io import write_star, read_star
    >>> path = os.path.join(tempfile.mkdtemp(), "p.star")
    >>> table = pd.DataFrame({"rlnImageName": ["1@a.mrcs", "2@a.mrcs"], "rlnDefocusU": [1e4, 2e4],
    ...                       "rlnImagePixelSize": [1.5, 1.5], "rlnVoltage": [300.0, 300.0]})
    >>> write_star(path, table)
    >>> back = read_star(path)
    >>> back["rlnImagePixelSize"].tolist(), back.attrs["relion_layout"]
    ([1.5, 1.5], '3.1')
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"STAR file not found: {path}")
    if os.path.isdir(path):
        raise StarError(f"{path}: is a folder, not a STAR file.")
    _check_text_file(path)
    blocks = _read_blocks(path)
    name = _pick_particle_block(path, blocks)
    particles = blocks[name]
    if not isinstance(particles, pd.DataFrame) or particles.empty or len(particles.columns) == 0:
        raise StarError(f"{path}: the particle block 'data_{name}' is empty (no rows).")
    if particles.isna().to_numpy().any():
        bad = int(np.flatnonzero(particles.isna().to_numpy().any(axis=1))[0])
        raise StarError(f"{path}: particle row {bad + 1} has missing values (truncated or ragged file?).")
    if require_image_name and "rlnImageName" not in particles.columns:
        raise StarError(f"{path}: the particle block 'data_{name}' has no rlnImageName column, "
                        f"so it does not point at any images (columns: {', '.join(particles.columns[:8])}...).")
    optics = blocks.get("optics")
    if optics is not None and isinstance(optics, pd.DataFrame) and not optics.empty:
        table = _merge_optics(path, particles, optics)
        layout = "3.1"
    else:
        table = particles.copy()
        optics = None
        layout = "3.0"
    table = table.reset_index(drop=True)
    # attrs hold plain Python objects only (pandas compares attrs when concatenating)
    table.attrs = {"star_path": path, "relion_layout": layout,
                   "optics": None if optics is None else optics.to_dict(orient="list")}
    return table


def _source(table):
    return table.attrs.get("star_path", "<table>") if hasattr(table, "attrs") else "<table>"


def star_pixel_size(table, pixel_size=None):
    """Pixel size per particle row, by the documented precedence.

    1. the explicit ``pixel_size``; 2. ``rlnImagePixelSize`` (optics, RELION 3.1+);
    3. ``rlnDetectorPixelSize x 1e4 / rlnMagnification`` (RELION 3.0); else ``None``
    (the caller may then use the MRC header).

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`read_star`.
    pixel_size : float, default=None

    Returns
    -------
    pixel_sizes : ndarray of shape (n,) or None
        Angstrom per pixel.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_disentangle.io.star import star_pixel_size
    >>> t = pd.DataFrame({"rlnDetectorPixelSize": [5.0], "rlnMagnification": [38168.0]})
    >>> round(float(star_pixel_size(t)[0]), 4)
    1.31
    """
    n = len(table)
    if pixel_size is not None:
        return np.full(n, float(pixel_size))
    if "rlnImagePixelSize" in table.columns:
        return pd.to_numeric(table["rlnImagePixelSize"], errors="coerce").to_numpy(float)
    if "rlnDetectorPixelSize" in table.columns and "rlnMagnification" in table.columns:
        det = pd.to_numeric(table["rlnDetectorPixelSize"], errors="coerce").to_numpy(float)
        mag = pd.to_numeric(table["rlnMagnification"], errors="coerce").to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return det * 1e4 / mag
    return None


def _numeric(table, col):
    values = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
    if np.isnan(values).any():
        raise StarError(f"{_source(table)}: column {col} has non-numeric values.")
    return values


def parse_poses(table, *, pixel_size=None):
    """Rotation matrices and shifts (Angstrom) from a particle table.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`read_star`. Needs ``rlnAnglePsi`` at least (2-D classification
        files have only psi; a missing rot or tilt is taken as 0).
    pixel_size : float, default=None
        Used only to convert ``rlnOriginX/Y`` (pixels) when ``rlnOriginXAngst/YAngst`` are
        absent; defaults to the table's pixel size (see :func:`star_pixel_size`).

    Returns
    -------
    rotations : ndarray of shape (n, 3, 3), float64
        RELION's matrices ``A`` (see :mod:`sklearn_disentangle.cryoem.rotations`).
    shifts : ndarray of shape (n, 2), float64
        ``(rlnOriginXAngst, rlnOriginYAngst)`` in Angstrom (zeros when no offsets).

    Raises
    ------
    StarError
        If no angle column exists, or offsets are in pixels and no pixel size is known.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_disentangle.io import parse_poses
    >>> t = pd.DataFrame({"rlnAngleRot": [0.0], "rlnAngleTilt": [0.0], "rlnAnglePsi": [0.0],
    ...                   "rlnOriginX": [2.0], "rlnOriginY": [-1.0], "rlnImagePixelSize": [1.5]})
    >>> rot, shifts = parse_poses(t)
    >>> rot.shape, shifts.tolist()
    ((1, 3, 3), [[3.0, -1.5]])
    """
    from ..cryoem.rotations import euler_to_matrix

    src = _source(table)
    names = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
    if not any(c in table.columns for c in names):
        raise StarError(f"{src}: no pose columns (rlnAngleRot/rlnAngleTilt/rlnAnglePsi).")
    n = len(table)
    angles = np.stack([_numeric(table, c) if c in table.columns else np.zeros(n) for c in names], 1)
    rotations = euler_to_matrix(angles).numpy()
    has_a = "rlnOriginXAngst" in table.columns and "rlnOriginYAngst" in table.columns
    has_px = "rlnOriginX" in table.columns and "rlnOriginY" in table.columns
    shifts = np.zeros((n, 2))
    apix = None
    if has_px:
        apix = star_pixel_size(table, pixel_size)
        if apix is None or np.isnan(apix).any() or not (apix > 0).all():
            if not has_a:
                raise StarError(f"{src}: offsets rlnOriginX/Y are in pixels but no pixel size is known; "
                                "pass pixel_size=.")
            apix = None
    if has_a:
        shifts = np.stack([_numeric(table, "rlnOriginXAngst"), _numeric(table, "rlnOriginYAngst")], 1)
        if has_px and apix is not None:
            px = np.stack([_numeric(table, "rlnOriginX"), _numeric(table, "rlnOriginY")], 1) * apix[:, None]
            if np.abs(px - shifts).max() > 1e-3:
                warnings.warn(f"{src}: rlnOriginX/Y (pixels) and rlnOriginXAngst/YAngst disagree; using the "
                              "Angstrom columns (RELION 3.1+ rule).", ReaderWarning, stacklevel=2)
    elif has_px:
        shifts = np.stack([_numeric(table, "rlnOriginX"), _numeric(table, "rlnOriginY")], 1) * apix[:, None]
    return rotations, shifts


def parse_ctf(table, *, pixel_size=None, defaults=None):
    """CTF parameters per particle, in RELION's parameterisation and units.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`read_star` (optics merged).
    pixel_size : float, default=None
        Explicit pixel size; otherwise the table's (see :func:`star_pixel_size`).
    defaults : dict, default=None
        Values for columns the file lacks, keyed by output column name, e.g.
        ``{"amplitude_contrast": 0.1}`` (cryoDRGN's ``--w`` default) for old files without
        ``rlnAmplitudeContrast``. Values present in the file are never overridden.

    Returns
    -------
    ctf : pandas.DataFrame of shape (n, 10)
        Columns ``defocus_u``, ``defocus_v`` (A), ``defocus_angle`` (deg), ``voltage`` (kV),
        ``spherical_aberration`` (mm), ``amplitude_contrast``, ``phase_shift`` (deg),
        ``bfactor`` (A^2), ``scale``, ``pixel_size`` (A, NaN when unknown). Missing optional
        columns default to: defocus_v = defocus_u, angle 0, phase shift 0, B 0, scale 1.

    Raises
    ------
    StarError
        If ``rlnDefocusU``, ``rlnVoltage``, ``rlnSphericalAberration`` or
        ``rlnAmplitudeContrast`` is missing.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_disentangle.io import parse_ctf
    >>> t = pd.DataFrame({"rlnDefocusU": [15000.0], "rlnVoltage": [300.0],
    ...                   "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    >>> parse_ctf(t, pixel_size=1.0).loc[0, ["defocus_v", "phase_shift", "scale"]].tolist()
    [15000.0, 0.0, 1.0]
    """
    src = _source(table)
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(CTF_COLUMNS)
    if unknown:
        raise ValueError(f"parse_ctf: unknown defaults {sorted(unknown)}; valid keys are {CTF_COLUMNS}.")
    required = {"rlnDefocusU": "defocus_u", "rlnVoltage": "voltage", "rlnSphericalAberration": "spherical_aberration",
                "rlnAmplitudeContrast": "amplitude_contrast"}
    missing = [c for c, key in required.items() if c not in table.columns and key not in defaults]
    if missing:
        raise StarError(f"{src}: CTF columns missing: {', '.join(missing)} (pass defaults= to supply values).")
    n = len(table)
    rln = {"defocus_u": "rlnDefocusU", "defocus_v": "rlnDefocusV", "defocus_angle": "rlnDefocusAngle",
           "voltage": "rlnVoltage", "spherical_aberration": "rlnSphericalAberration",
           "amplitude_contrast": "rlnAmplitudeContrast", "phase_shift": "rlnPhaseShift",
           "bfactor": "rlnCtfBfactor", "scale": "rlnCtfScalefactor"}

    def get(col, default):
        if col in table.columns:
            return _numeric(table, col)
        key = next(k for k, v in rln.items() if v == col)
        return np.full(n, float(defaults.get(key, default)))

    dfu = get("rlnDefocusU", np.nan)
    apix = star_pixel_size(table, pixel_size)
    if apix is None and "pixel_size" in defaults:
        apix = np.full(n, float(defaults["pixel_size"]))
    out = pd.DataFrame({
        "defocus_u": dfu,
        "defocus_v": get("rlnDefocusV", np.nan) if ("rlnDefocusV" in table.columns or "defocus_v" in defaults)
        else dfu.copy(),
        "defocus_angle": get("rlnDefocusAngle", 0.0),
        "voltage": get("rlnVoltage", np.nan),
        "spherical_aberration": get("rlnSphericalAberration", np.nan),
        "amplitude_contrast": get("rlnAmplitudeContrast", np.nan),
        "phase_shift": get("rlnPhaseShift", 0.0),
        "bfactor": get("rlnCtfBfactor", 0.0),
        "scale": get("rlnCtfScalefactor", 1.0),
        "pixel_size": apix if apix is not None else np.full(n, np.nan),
    })
    return out


def parse_image_names(table):
    """Split ``rlnImageName`` (``index@path``) into 0-based indices and paths as written.

    Parameters
    ----------
    table : pandas.DataFrame

    Returns
    -------
    indices : ndarray of shape (n,), int64
        0-based image index within its stack.
    paths : ndarray of shape (n,), object
        Stack paths exactly as written in the file.

    Raises
    ------
    StarError
        If a name has no ``@`` or its index is not a positive integer.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_disentangle.io.star import parse_image_names
    >>> idx, paths = parse_image_names(pd.DataFrame({"rlnImageName": ["000001@a.mrcs", "12@b.mrc"]}))
    >>> idx.tolist(), paths.tolist()
    ([0, 11], ['a.mrcs', 'b.mrc'])
    """
    src = _source(table)
    if "rlnImageName" not in table.columns:
        raise StarError(f"{src}: no rlnImageName column.")
    names = table["rlnImageName"].astype(str).to_numpy()
    parts = np.char.partition(names.astype(str), "@")
    index_str, at, paths = parts[:, 0], parts[:, 1], parts[:, 2]
    bad = (at != "@") | (np.char.str_len(paths) == 0)
    if bad.any():
        raise StarError(f"{src}: rlnImageName {names[np.flatnonzero(bad)[0]]!r} is not of the form index@path.")
    try:
        indices = index_str.astype(np.int64)
    except ValueError as exc:
        raise StarError(f"{src}: rlnImageName has a non-integer image index ({exc}).") from exc
    if (indices < 1).any():
        raise StarError(f"{src}: rlnImageName index {int(indices.min())} is not 1-based (must be >= 1).")
    return indices - 1, paths.astype(object)


def resolve_stack_path(name, star_dir, datadir=None):
    """Locate the stack file a STAR/CS file refers to.

    Candidates, in order: an absolute ``name`` as is; ``datadir/name``; ``datadir/basename``;
    ``star_dir/name``; ``star_dir/basename``. The first existing one is returned; if none
    exists, the first candidate is returned (so the error names the expected place).

    Parameters
    ----------
    name : str
        Path as written in the metadata file.
    star_dir : str or path-like
        Folder of the metadata file.
    datadir : str or path-like, default=None

    Returns
    -------
    path : str
    candidates : list of str
        All places looked at.

    Examples
    --------
    >>> from sklearn_disentangle.io.star import resolve_stack_path
    >>> resolve_stack_path("Extract/x.mrcs", "/nonexistent")[0]
    '/nonexistent/Extract/x.mrcs'
    """
    if os.path.isabs(name):
        return name, [name]
    base = os.path.basename(name)
    candidates = []
    if datadir is not None:
        candidates += [os.path.join(os.fspath(datadir), name), os.path.join(os.fspath(datadir), base)]
    candidates += [os.path.join(os.fspath(star_dir), name), os.path.join(os.fspath(star_dir), base)]
    candidates = list(dict.fromkeys(candidates))
    for cand in candidates:
        if os.path.isfile(cand):
            return cand, candidates
    return candidates[0], candidates


def _split_optics(table):
    """Split a merged table into (optics, particles) for the RELION 3.1 layout."""
    table = table.copy()
    n = len(table)
    apix = star_pixel_size(table)
    if "rlnImagePixelSize" not in table.columns and apix is not None:
        table["rlnImagePixelSize"] = apix
    # pixel offsets -> Angstrom (3.1 convention)
    if "rlnOriginX" in table.columns and "rlnOriginY" in table.columns:
        if "rlnOriginXAngst" not in table.columns and apix is not None:
            table["rlnOriginXAngst"] = pd.to_numeric(table["rlnOriginX"]).to_numpy(float) * apix
            table["rlnOriginYAngst"] = pd.to_numeric(table["rlnOriginY"]).to_numpy(float) * apix
        if "rlnOriginXAngst" in table.columns:
            table = table.drop(columns=["rlnOriginX", "rlnOriginY"])
    table = table.drop(columns=[c for c in ("rlnDetectorPixelSize", "rlnMagnification") if c in table.columns
                                and "rlnImagePixelSize" in table.columns])
    if "rlnOpticsGroup" not in table.columns:
        table["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    table["rlnOpticsGroup"] = pd.to_numeric(table["rlnOpticsGroup"]).astype(np.int64)
    optics_cols = [c for c in OPTICS_COLUMNS if c in table.columns]
    optics = table[["rlnOpticsGroup"] + optics_cols].drop_duplicates("rlnOpticsGroup").sort_values("rlnOpticsGroup")
    for col in optics_cols:
        per_group = table.groupby("rlnOpticsGroup")[col].nunique()
        if (per_group > 1).any():
            raise ValueError(f"write_star: column {col} varies within an optics group; it must be constant "
                             "per rlnOpticsGroup.")
    if "rlnOpticsGroupName" not in optics.columns:
        optics.insert(1, "rlnOpticsGroupName", [f"opticsGroup{g}" for g in optics["rlnOpticsGroup"]])
    if "rlnImageDimensionality" not in optics.columns:
        optics["rlnImageDimensionality"] = 2
    particles = table.drop(columns=optics_cols)
    return optics.reset_index(drop=True), particles


def write_star(path, table, *, optics=None, float_format="%.6f"):
    """Write a particle table as a RELION 3.1+ STAR file (``data_optics`` + ``data_particles``), atomically.

    Optics columns (see :data:`OPTICS_COLUMNS`) are moved from the particle rows to one
    ``data_optics`` row per ``rlnOpticsGroup`` (all rows in group 1 when the column is absent);
    RELION 3.0 units are converted (``rlnDetectorPixelSize``/``rlnMagnification`` to
    ``rlnImagePixelSize``, ``rlnOriginX/Y`` pixels to ``rlnOriginXAngst/YAngst``), so
    :func:`read_star` gives back the same values (to ``float_format`` precision, 5e-7 by default).

    Parameters
    ----------
    path : str or path-like
    table : pandas.DataFrame
        Particle rows (e.g. from :func:`read_star`, or a subset of it for one cluster).
    optics : pandas.DataFrame, default=None
        An explicit optics block; when given, ``table`` is written as the particle block as is.
    float_format : str, default='%.6f'

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> from sklearn_disentangle.io import read_star, write_star
    >>> path = os.path.join(tempfile.mkdtemp(), "sub.star")
    >>> t = pd.DataFrame({"rlnImageName": ["3@s.mrcs"], "rlnOriginX": [1.0], "rlnOriginY": [0.0],
    ...                   "rlnDetectorPixelSize": [5.0], "rlnMagnification": [50000.0]})
    >>> write_star(path, t)
    >>> read_star(path).loc[0, ["rlnOriginXAngst", "rlnImagePixelSize"]].tolist()
    [1.0, 1.0]
    """
    path = os.fspath(path)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"write_star expects a pandas DataFrame, got {type(table).__name__}.")
    if optics is None:
        optics, particles = _split_optics(table)
    else:
        particles = table
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        starfile.write({"optics": optics, "particles": particles.reset_index(drop=True)}, tmp,
                       float_format=float_format)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
