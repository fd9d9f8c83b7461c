"""Data feeding for the shared net: whole-batch tensor slices, never item by item.

skorch's default ``DataLoader`` calls ``Dataset.__getitem__`` once per sample and collates
the results, which costs more than a small model's forward pass. :class:`TensorBatchLoader`
instead indexes the whole array once per batch (a view for sequential batches, one gather
for shuffled ones). It accepts what skorch hands an iterator: a ``skorch.dataset.Dataset``
(whose ``X`` may be a tensor, an ndarray - memory-mapped ones included - or a dict of
them), or such an object directly.
"""

import numpy as np
import torch
from skorch.dataset import Dataset

__all__ = ["TensorBatchLoader", "as_batch_source", "to_batch_tensor"]


def to_batch_tensor(arr):
    """One batch of a NumPy array as a tensor: shared memory if writable, else a copy.

    (torch cannot wrap read-only memory; copying one batch keeps memory-mapped and
    read-only inputs untouched at the cost of a batch-sized copy.)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.training import to_batch_tensor
    >>> to_batch_tensor(np.ones((2, 3), np.float32)).shape
    torch.Size([2, 3])
    """
    arr = np.ascontiguousarray(arr)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def as_batch_source(X):
    """Return ``X`` as something :class:`TensorBatchLoader` can slice cheaply.

    In-memory, writable, C-contiguous ndarrays become tensors sharing their memory;
    memory-mapped or read-only arrays stay NumPy (converted one batch at a time, so a stack
    larger than memory is never loaded whole); dicts are converted entry by entry.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.training import as_batch_source
    >>> type(as_batch_source(np.zeros((4, 2), np.float32))).__name__
    'Tensor'
    >>> ro = np.zeros((4, 2), np.float32); ro.flags.writeable = False
    >>> type(as_batch_source(ro)).__name__
    'ndarray'
    """
    if isinstance(X, dict):
        return {k: as_batch_source(v) for k, v in X.items()}
    if isinstance(X, torch.Tensor):
        return X
    if isinstance(X, np.memmap) or (isinstance(X, np.ndarray) and not X.flags.writeable):
        return X
    if isinstance(X, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(X))
    return X


def _n_rows(X):
    if isinstance(X, dict):
        lengths = {len(v) for v in X.values()}
        if len(lengths) != 1:
            raise ValueError(f"all entries of a dict batch source must have the same length, got {sorted(lengths)}.")
        return lengths.pop()
    return len(X)


def _take(X, index):
    """Rows ``index`` (a slice or a sorted/unsorted LongTensor) of X as a tensor."""
    if isinstance(X, dict):
        return {k: _take(v, index) for k, v in X.items()}
    if isinstance(X, torch.Tensor):
        return X[index]
    if isinstance(index, torch.Tensor):
        index = index.numpy()
    return to_batch_tensor(X[index])


class TensorBatchLoader:
    """Iterate over ``(X_batch, None)`` whole-batch slices of an in-memory dataset.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset, tensor, ndarray or dict of them
        The data; a skorch ``Dataset``'s ``X`` is used.
    batch_size : int, default=64
        Rows per batch; the last batch may be smaller.
    shuffle : bool, default=False
        Draw a new permutation at every pass from torch's global generator (seeded by the
        estimator's ``random_state``), as ``DataLoader(shuffle=True)`` does.
    drop_last : bool, default=False
        Drop a final incomplete batch (never drops the only batch).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.training import TensorBatchLoader
    >>> loader = TensorBatchLoader(torch.arange(10.0)[:, None], batch_size=4)
    >>> [tuple(xb.shape) for xb, _ in loader]
    [(4, 1), (4, 1), (2, 1)]
    """

    def __init__(self, dataset, batch_size=64, shuffle=False, drop_last=False):
        X = dataset.X if isinstance(dataset, Dataset) else dataset
        self.X = as_batch_source(X)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.n_rows = _n_rows(self.X)

    def __len__(self):
        full, rest = divmod(self.n_rows, self.batch_size)
        if rest and not (self.drop_last and full):
            full += 1
        return full

    def __iter__(self):
        n, bs = self.n_rows, self.batch_size
        order = torch.randperm(n) if self.shuffle else None
        for b in range(len(self)):
            start = b * bs
            stop = min(start + bs, n)
            index = slice(start, stop) if order is None else order[start:stop]
            yield _take(self.X, index), None
