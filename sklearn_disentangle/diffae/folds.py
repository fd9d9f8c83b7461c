"""The paper's fold CSVs: reading, writing, generating, and a scikit-learn splitter over them.

A fold CSV has one row per fold (row number = fold ID) and columns ``train``, ``val``,
``test``; every cell is the Python literal of a list of patient-ID strings (``"['1', '2']"``,
``"[]"`` when empty), read here with :func:`ast.literal_eval` (never ``eval``). The paper's
folds are *independent* random splits (the subjects are reshuffled for every fold with one
seeded generator, seed 1701), not a partition-based k-fold, so a subject can be in the test set
of several folds.
"""

import ast
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state

__all__ = ["read_fold_csv", "write_fold_csv", "make_folds", "FoldCSVSplit"]

_COLUMNS = ("train", "val", "test")


def _parse_cell(value, path, row, column):
    if isinstance(value, float) and np.isnan(value):
        return []
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{path}: fold {row}, column {column!r} is not a Python list literal of IDs "
                         f"({str(value)[:60]!r}).") from exc
    if not isinstance(parsed, (list, tuple)):
        raise ValueError(f"{path}: fold {row}, column {column!r} must hold a list of IDs, got {type(parsed).__name__}.")
    return [str(v) for v in parsed]


def read_fold_csv(path):
    """Read a fold CSV into a list of ``{"train": [...], "val": [...], "test": [...]}`` dicts.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    folds : list of dict of str to list of str
        Patient IDs as strings; a missing ``val`` column gives empty lists.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_disentangle.diffae import read_fold_csv
    >>> p = os.path.join(tempfile.mkdtemp(), "folds.csv")
    >>> _ = open(p, "w").write('train,val,test\\n"[\\'1\\', \\'2\\']",[],"[\\'3\\']"\\n')
    >>> read_fold_csv(p)
    [{'train': ['1', '2'], 'val': [], 'test': ['3']}]
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"fold CSV not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("train", "test") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: fold CSV needs the columns 'train' and 'test' (and optionally 'val'); "
                         f"missing {missing}, found {list(frame.columns)}.")
    if len(frame) == 0:
        raise ValueError(f"{path}: the fold CSV has no rows (folds).")
    folds = []
    for i, row in frame.iterrows():
        fold = {}
        for col in _COLUMNS:
            fold[col] = _parse_cell(row[col], path, i, col) if col in frame.columns and row[col] != "" else []
        folds.append(fold)
    return folds


def write_fold_csv(folds, path):
    """Write folds (dicts of ID lists, or :func:`make_folds` output) as a fold CSV, atomically.

    Parameters
    ----------
    folds : list of dict
    path : str or path-like

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_disentangle.diffae import make_folds, read_fold_csv, write_fold_csv
    >>> p = os.path.join(tempfile.mkdtemp(), "folds.csv")
    >>> folds = make_folds([str(i) for i in range(10)], n_folds=2)
    >>> write_fold_csv(folds, p)
    >>> read_fold_csv(p) == folds
    True
    """
    rows = []
    for i, fold in enumerate(folds):
        unknown = set(fold) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"fold {i} has unknown entries {sorted(unknown)}; use 'train', 'val', 'test'.")
        rows.append({c: repr([str(v) for v in fold.get(c, [])]) for c in _COLUMNS})
    frame = pd.DataFrame(rows, columns=list(_COLUMNS))
    target = Path(os.fspath(path))
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_folds(subject_ids, n_folds=5, train_size=0.6, val_size=0.1, random_state=1701):
    """Independent random train/val/test splits of subjects, as the paper's fold CSVs.

    For each fold the subjects are reshuffled with one generator seeded by
    ``random_state``; the first ``int(train_size * N)`` are train, the next
    ``int(val_size * N)`` validation, the rest test.

    Parameters
    ----------
    subject_ids : sequence
        Unique subject IDs (converted to str).
    n_folds : int, default=5
    train_size, val_size : float, default=0.6, 0.1
    random_state : int, RandomState instance or None, default=1701

    Returns
    -------
    folds : list of dict of str to list of str

    Examples
    --------
    >>> from sklearn_disentangle.diffae import make_folds
    >>> f = make_folds(range(10), n_folds=3)
    >>> len(f), [len(f[0][k]) for k in ("train", "val", "test")]
    (3, [6, 1, 3])
    """
    ids = [str(s) for s in subject_ids]
    if len(set(ids)) != len(ids):
        raise ValueError("subject_ids must be unique (one entry per subject).")
    if not (0 < train_size <= 1 and 0 <= val_size < 1 and train_size + val_size <= 1):
        raise ValueError(f"need 0 < train_size, 0 <= val_size and train_size + val_size <= 1, got {train_size}, "
                         f"{val_size}.")
    if int(n_folds) < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}.")
    rng = check_random_state(random_state)
    n = len(ids)
    n_train, n_val = int(train_size * n), int(val_size * n)
    folds = []
    for _ in range(int(n_folds)):
        perm = [ids[i] for i in rng.permutation(n)]
        folds.append({"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]})
    return folds


class FoldCSVSplit(BaseCrossValidator):
    """A fold CSV (or a list of folds) as a scikit-learn cross-validation splitter.

    Rows of X are matched to folds through their subject IDs, given as ``groups`` to
    ``split`` (as ``cross_val_score(..., groups=ids, cv=FoldCSVSplit(path))``) or once as
    ``subject_ids``. Every row of a subject goes where the subject is (several series of one
    patient stay together); rows whose subject is in no list of a fold are left out of that
    fold; IDs listed in the CSV but absent from X are ignored.

    Parameters
    ----------
    folds : str, path-like or list of dict
        A fold CSV path or the output of :func:`read_fold_csv` / :func:`make_folds`.
    subject_ids : sequence or None, default=None
        Subject ID of every row of X (compared as strings).
    val : {"train", "test", "drop"}, default="train"
        Where the validation subjects go: merged into training (as the paper's pipeline does
        when it does not validate), into the test rows, or left out.
    fold_ids : sequence of int or None, default=None
        Use only these folds (rows of the CSV).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.diffae import FoldCSVSplit, make_folds
    >>> ids = [str(i) for i in range(10)]
    >>> cv = FoldCSVSplit(make_folds(ids, n_folds=2), subject_ids=ids)
    >>> [(len(tr), len(te)) for tr, te in cv.split(np.zeros((10, 1)))]
    [(7, 3), (7, 3)]
    """

    def __init__(self, folds, subject_ids=None, val="train", fold_ids=None):
        self.folds = folds
        self.subject_ids = subject_ids
        self.val = val
        self.fold_ids = fold_ids

    def _folds(self):
        if isinstance(self.folds, (str, os.PathLike)):
            folds = read_fold_csv(self.folds)
        elif isinstance(self.folds, (list, tuple)) and all(isinstance(f, dict) for f in self.folds) and self.folds:
            folds = [{c: [str(v) for v in f.get(c, [])] for c in _COLUMNS} for f in self.folds]
        else:
            raise TypeError("folds must be a fold CSV path or a non-empty list of {'train', 'val', 'test'} dicts, "
                            f"got {type(self.folds).__name__}.")
        if self.val not in ("train", "test", "drop"):
            raise ValueError(f"val must be 'train', 'test' or 'drop', got {self.val!r}.")
        if self.fold_ids is not None:
            bad = [i for i in self.fold_ids if not (isinstance(i, (int, np.integer)) and 0 <= i < len(folds))]
            if bad:
                raise ValueError(f"fold_ids {bad} are not folds of this CSV (0..{len(folds) - 1}).")
            folds = [folds[i] for i in self.fold_ids]
        return folds

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds.

        Returns
        -------
        n_splits : int
        """
        return len(self._folds())

    def _ids(self, X, groups):
        ids = groups if groups is not None else self.subject_ids
        if ids is None:
            raise ValueError("FoldCSVSplit needs the subject ID of every row: pass groups=ids to split / "
                             "cross_val_score, or subject_ids=ids to FoldCSVSplit.")
        ids = np.asarray([str(v) for v in np.asarray(ids, dtype=object).ravel()])
        if X is not None and len(ids) != len(X):
            raise ValueError(f"got {len(ids)} subject IDs for {len(X)} rows of X.")
        return ids

    def split(self, X, y=None, groups=None):
        """Yield ``(train_rows, test_rows)`` index arrays, one pair per fold.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
        y : None
            Ignored.
        groups : array-like of shape (n_samples,) or None
            Subject ID of every row (overrides ``subject_ids``).

        Yields
        ------
        train, test : ndarray of int
        """
        ids = self._ids(X, groups)
        for i, fold in enumerate(self._folds()):
            train = set(fold["train"])
            test = set(fold["test"])
            if self.val == "train":
                train |= set(fold["val"])
            elif self.val == "test":
                test |= set(fold["val"])
            overlap = train & test
            if overlap:
                raise ValueError(f"fold {i}: subjects {sorted(overlap)[:3]} are in both training and test lists.")
            tr = np.flatnonzero(np.isin(ids, list(train)))
            te = np.flatnonzero(np.isin(ids, list(test)))
            if len(tr) == 0 or len(te) == 0:
                raise ValueError(f"fold {i}: {len(tr)} training and {len(te)} test rows match the subject IDs of X; "
                                 "check that the IDs of X (groups) are the patient IDs of the fold CSV.")
            yield tr, te
