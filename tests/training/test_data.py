"""TensorBatchLoader: whole-batch slicing of tensors, arrays, memmaps and dicts."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset

from sklearn_disentangle.training import TensorBatchLoader, as_batch_source


def _rows(loader):
    return [xb for xb, yb in loader]


@pytest.mark.parametrize("n, bs, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (12, 4, False, [4, 4, 4]),
    (12, 4, True, [4, 4, 4]),
    (3, 4, False, [3]),
    (3, 4, True, [3]),  # never drops the only batch
    (1, 1, False, [1]),
    (0, 4, False, []),
])
def test_batch_sizes(n, bs, drop_last, sizes):
    X = torch.arange(float(n))[:, None]
    loader = TensorBatchLoader(X, batch_size=bs, drop_last=drop_last)
    batches = _rows(loader)
    assert len(loader) == len(sizes)
    assert [len(b) for b in batches] == sizes
    for b in batches:
        assert isinstance(b, torch.Tensor)
        assert b.shape[1:] == (1,)


def test_sequential_batches_cover_rows_in_order():
    X = torch.arange(23.0)[:, None].repeat(1, 3)
    loader = TensorBatchLoader(X, batch_size=5)
    out = torch.cat(_rows(loader))
    assert torch.equal(out, X)
    for xb, yb in loader:
        assert yb is None


def test_sequential_batch_of_tensor_is_a_view():
    X = torch.arange(20.0).reshape(10, 2)
    xb, _ = next(iter(TensorBatchLoader(X, batch_size=4)))
    assert xb.data_ptr() == X.data_ptr()


def test_skorch_dataset_is_unwrapped():
    X = torch.arange(12.0).reshape(6, 2)
    loader = TensorBatchLoader(Dataset(X, None), batch_size=4)
    assert loader.X is X
    assert torch.equal(torch.cat(_rows(loader)), X)


def test_shuffle_is_a_permutation_each_epoch():
    n = 37
    X = torch.arange(float(n))[:, None]
    loader = TensorBatchLoader(X, batch_size=8, shuffle=True)
    epochs = []
    for _ in range(3):
        batches = _rows(loader)
        assert [len(b) for b in batches] == [8, 8, 8, 8, 5]
        order = torch.cat(batches)[:, 0].long()
        assert sorted(order.tolist()) == list(range(n))  # every row exactly once
        epochs.append(order.tolist())
    assert epochs[0] != list(range(n))
    assert epochs[0] != epochs[1]  # a new permutation at every pass


def test_shuffle_deterministic_under_torch_seed():
    X = torch.arange(50.0)[:, None]
    loader = TensorBatchLoader(X, batch_size=16, shuffle=True)
    torch.manual_seed(123)
    first = torch.cat(_rows(loader))
    torch.manual_seed(123)
    second = torch.cat(_rows(loader))
    torch.manual_seed(124)
    third = torch.cat(_rows(loader))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)
    # it uses torch's global generator like DataLoader(shuffle=True): torch.randperm(n)
    torch.manual_seed(123)
    assert torch.equal(first[:, 0].long(), torch.randperm(50))


def test_shuffle_drop_last_drops_a_varying_remainder():
    X = torch.arange(10.0)[:, None]
    loader = TensorBatchLoader(X, batch_size=4, shuffle=True, drop_last=True)
    rows = torch.cat(_rows(loader))[:, 0].long().tolist()
    assert len(rows) == 8
    assert len(set(rows)) == 8


def test_numpy_array_becomes_tensor_sharing_memory():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    source = as_batch_source(X)
    assert isinstance(source, torch.Tensor)
    assert np.shares_memory(source.numpy(), X)
    loader = TensorBatchLoader(X, batch_size=3)
    batches = _rows(loader)
    assert all(isinstance(b, torch.Tensor) and b.dtype == torch.float32 for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).numpy(), X)
    assert np.shares_memory(batches[0].numpy(), X)


def test_non_contiguous_array_is_supported():
    X = np.arange(40, dtype=np.float32).reshape(10, 4)[:, ::2]
    loader = TensorBatchLoader(X, batch_size=4)
    np.testing.assert_array_equal(torch.cat(_rows(loader)).numpy(), X)


def test_read_only_array_is_not_copied_whole():
    X = np.arange(30, dtype=np.float32).reshape(10, 3)
    X.flags.writeable = False
    loader = TensorBatchLoader(X, batch_size=4)
    assert loader.X is X  # kept as NumPy, converted batch by batch
    batches = _rows(loader)
    assert [b.shape for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert all(isinstance(b, torch.Tensor) for b in batches)
    np.testing.assert_array_equal(torch.cat(batches).numpy(), X)
    torch.manual_seed(0)
    shuffled = torch.cat(_rows(TensorBatchLoader(X, batch_size=4, shuffle=True))).numpy()
    torch.manual_seed(0)
    np.testing.assert_array_equal(shuffled, X[torch.randperm(10).numpy()])


@pytest.mark.parametrize("mode", ["r", "r+"])
def test_memmap_is_read_batch_by_batch(tmp_path, mode):
    path = tmp_path / "stack.dat"
    data = np.arange(7 * 4 * 4, dtype=np.float32).reshape(7, 4, 4)
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    del mm
    X = np.memmap(path, dtype=np.float32, mode=mode, shape=data.shape)
    loader = TensorBatchLoader(X, batch_size=3)
    assert loader.X is X
    assert isinstance(as_batch_source(X), np.memmap)
    batches = _rows(loader)
    assert [tuple(b.shape) for b in batches] == [(3, 4, 4), (3, 4, 4), (1, 4, 4)]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), data)
    torch.manual_seed(1)
    shuffled = _rows(TensorBatchLoader(X, batch_size=3, shuffle=True))
    torch.manual_seed(1)
    perm = torch.randperm(7).numpy()
    np.testing.assert_array_equal(torch.cat(shuffled).numpy(), data[perm])


def test_dict_source():
    X = {"img": torch.arange(20.0).reshape(10, 2), "ctf": np.arange(10, dtype=np.float32)}
    loader = TensorBatchLoader(X, batch_size=4)
    assert len(loader) == 3
    batches = _rows(loader)
    assert all(set(b) == {"img", "ctf"} for b in batches)
    assert [len(b["img"]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b["img"] for b in batches]), X["img"])
    np.testing.assert_array_equal(torch.cat([b["ctf"] for b in batches]).numpy(), X["ctf"])
    # shuffled: the entries of one row stay together
    shuffled = _rows(TensorBatchLoader(X, batch_size=4, shuffle=True))
    for b in shuffled:
        assert torch.equal(b["img"][:, 0] / 2, b["ctf"])


def test_dict_source_inside_skorch_dataset():
    X = {"a": torch.zeros(6, 2), "b": torch.ones(6)}
    loader = TensorBatchLoader(Dataset(X, None), batch_size=4)
    assert [len(b["b"]) for b in _rows(loader)] == [4, 2]


def test_dict_entries_of_different_lengths_rejected():
    with pytest.raises(ValueError, match=r"same length, got \[4, 5\]"):
        TensorBatchLoader({"a": torch.zeros(5), "b": torch.zeros(4)})
