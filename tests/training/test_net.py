"""DisentangleNet: the module's loss dict drives training; every term is recorded per epoch."""

import numpy as np
import pytest
import torch
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from sklearn_disentangle.training import DisentangleNet, LossTermsLogger, TensorBatchLoader
from sklearn_disentangle.training.net import NoCriterion


class Tiny(torch.nn.Module):
    """Terms with known per-batch values: ``size`` = batch size, ``one`` = 1."""

    def __init__(self, n_in=2):
        super().__init__()
        self.lin = torch.nn.Linear(n_in, n_in)

    def forward(self, x):
        return {"recon": self.lin(x)}

    def loss(self, out, x):
        mse = ((out["recon"] - x) ** 2).sum(1).mean()
        return {"loss": mse, "mse": mse, "size": torch.tensor(float(len(x))), "one": torch.tensor(1.0)}


class NoLossKey(Tiny):
    def loss(self, out, x):
        return {"mse": ((out["recon"] - x) ** 2).mean()}


class DictInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, X):
        return {"recon": self.lin(X["img"]) * X["w"][:, None]}

    def loss(self, out, X):
        mse = ((out["recon"] - X["img"]) ** 2).sum(1).mean()
        return {"loss": mse, "size": torch.tensor(float(len(X["w"])))}


def _net(module=Tiny, **kwargs):
    kwargs.setdefault("max_epochs", 2)
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("lr", 1e-3)
    return DisentangleNet(module, verbose=0, **kwargs)


def test_defaults():
    net = _net()
    assert net.optimizer is torch.optim.Adam
    assert net.iterator_train is TensorBatchLoader
    assert net.iterator_valid is TensorBatchLoader
    assert net.criterion is NoCriterion
    assert net.train_split is None
    assert net.iterator_train__shuffle is True
    net.initialize()
    assert isinstance(dict(net.callbacks_)["loss_terms"], LossTermsLogger)
    names = [name for name, _ in net.callbacks_]
    assert names.index("loss_terms") < names.index("print_log")


def test_shuffle_can_be_switched_off():
    assert _net(iterator_train__shuffle=False).iterator_train__shuffle is False


def test_history_has_every_term_as_batch_weighted_mean():
    X = torch.randn(40, 2)  # batches of 16, 16, 8
    net = _net().fit(X)
    assert len(net.history) == 2
    for row in net.history:
        keys = {k for k in row if k.startswith("train_")}
        assert keys == {"train_loss", "train_loss_best", "train_batch_count", "train_mse", "train_size", "train_one"}
        assert row["train_size"] == pytest.approx((16 * 16 + 16 * 16 + 8 * 8) / 40)  # 14.4
        assert row["train_one"] == pytest.approx(1.0)
        assert row["train_batch_count"] == 3
        # the loss term equals skorch's own batch-size-weighted train_loss
        assert row["train_mse"] == pytest.approx(row["train_loss"], rel=1e-5)
        batch_losses = [b["train_loss"] for b in row["batches"]]
        assert row["train_mse"] == pytest.approx(np.average(batch_losses, weights=[16, 16, 8]), rel=1e-5)
    assert "valid_loss" not in net.history[-1]  # no silent validation split


def test_terms_are_not_accumulated_across_epochs():
    net = _net(max_epochs=3, batch_size=10).fit(torch.randn(25, 2))  # 10, 10, 5
    assert net.history[:, "train_size"] == pytest.approx([(100 + 100 + 25) / 25] * 3)
    net.partial_fit(torch.randn(10, 2))  # one batch of 10 now
    assert net.history[-1, "train_size"] == pytest.approx(10.0)


def test_terms_are_floats_and_training_decreases_loss():
    torch.manual_seed(0)
    X = torch.randn(64, 2)
    net = _net(max_epochs=30, lr=0.05).fit(X)
    assert isinstance(net.history[-1, "train_mse"], float)
    assert net.history[-1, "train_mse"] < 0.5 * net.history[0, "train_mse"]


def test_validation_terms_with_predefined_split():
    X_valid = torch.randn(20, 2)  # validation batches of 16 and 4
    net = _net(train_split=predefined_split(Dataset(X_valid, None))).fit(torch.randn(40, 2))
    for row in net.history:
        assert row["valid_size"] == pytest.approx((16 * 16 + 4 * 4) / 20)  # 13.6
        assert row["train_size"] == pytest.approx(14.4)
        assert row["valid_mse"] == pytest.approx(row["valid_loss"], rel=1e-5)
        assert row["valid_batch_count"] == 2
    # validation terms are computed with the module in eval mode and without gradients
    net.module_.eval()
    with torch.no_grad():
        direct = [float(net.module_.loss(net.module_(xb), xb)["mse"]) * len(xb) for xb in X_valid.split(16)]
    assert net.history[-1, "valid_mse"] == pytest.approx(sum(direct) / 20, rel=1e-5)


def test_loss_dict_without_loss_entry():
    with pytest.raises(KeyError, match=r"NoLossKey.loss\(\) must return a dict with a 'loss' entry"):
        _net(NoLossKey).fit(torch.randn(8, 2))


def test_the_loss_entry_is_what_is_optimised():
    class OnlyBias(Tiny):
        def loss(self, out, x):
            # only the bias enters "loss"; "weight_norm" is reported but not optimised
            return {"loss": (self.lin.bias - 3.0).pow(2).sum(), "weight_norm": self.lin.weight.norm()}

    net = _net(OnlyBias, max_epochs=1, batch_size=8)
    net.initialize()
    w0 = net.module_.lin.weight.detach().clone()
    net.partial_fit(torch.randn(16, 2))
    assert torch.equal(net.module_.lin.weight, w0)
    assert "train_weight_norm" in net.history[-1]


def test_dict_input():
    X = {"img": torch.randn(20, 2), "w": torch.ones(20)}
    net = _net(DictInput, max_epochs=1, batch_size=8).fit(X)
    assert net.history[-1, "train_size"] == pytest.approx((64 + 64 + 16) / 20)


def test_numpy_input_and_fit_reproducible_under_seed():
    X = np.random.RandomState(0).randn(40, 2).astype(np.float32)
    torch.manual_seed(3)
    a = _net().fit(X)
    torch.manual_seed(3)
    b = _net().fit(X)
    assert a.history[:, "train_mse"] == b.history[:, "train_mse"]
    for pa, pb in zip(a.module_.parameters(), b.module_.parameters()):
        assert torch.equal(pa, pb)


def test_pickle_does_not_serialise_the_module_instance_outside_skorch_cuda_path():
    """The ``module`` param is the trained instance; it must travel only as ``module_``.

    skorch maps ``module_``/``optimizer_`` to the CPU when CUDA is absent at load time, but
    pickles other attributes as they are, so a CUDA ``module`` parameter would make a
    GPU-trained estimator impossible to load on a CPU-only machine (tests/test_gpu.py runs
    the real round trip on a GPU machine).
    """
    import pickle

    import numpy as np

    from sklearn_disentangle import CFASLVAE

    X = (np.random.RandomState(0).rand(16, 16, 16) > 0.5).astype(np.float32)
    est = CFASLVAE(z_dim=2, max_epochs=1, random_state=0).fit(X)
    state = est.net_.__getstate__()
    assert isinstance(state["module"], str)
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.net_.module is loaded.net_.module_
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
