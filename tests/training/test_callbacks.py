"""Schedules, ParamSchedule, NaNGuard and ProgressBar of the shared training core."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.datasets import make_dsprites_like
from sklearn_disentangle.training import (
    CosineCyclic,
    DisentangleNet,
    LinearWarmup,
    NaNGuard,
    NonFiniteLossError,
    ParamSchedule,
    ProgressBar,
)


class Tiny(torch.nn.Module):
    """Linear autoencoder with a schedulable ``scale`` and switchable failure modes."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.scale = 1.0
        self.poison = None

    def forward(self, x):
        return {"recon": self.lin(x)}

    def loss(self, out, x):
        mse = ((out["recon"] - x) ** 2).sum(1).mean()
        terms = {"mse": mse, "size": torch.tensor(float(len(x))), "scale": torch.tensor(float(self.scale))}
        loss = mse
        if self.poison == "loss":
            loss = loss * float("nan")
        elif self.poison == "term":
            terms["size"] = torch.tensor(float("inf"))
        elif self.poison == "grad":
            # finite value (0), but d sqrt(u)/du at u=0 is inf and inf * 0 = nan
            loss = loss + torch.sqrt(self.lin.weight * 0.0).sum()
        if not self.training and getattr(self, "poison_valid", False):
            loss = loss * float("nan")
        return {"loss": loss, **terms}


class PoisonAt(Callback):
    """Switch the module's failure mode on at one global training step (0-based)."""

    def __init__(self, step, kind):
        self.step, self.kind = step, kind

    def initialize(self):
        self.seen_ = 0
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            net.module_.poison = self.kind if self.seen_ == self.step else None
            self.seen_ += 1


class Snapshot(Callback):
    """Copy of the parameters and optimiser state after every finished training batch."""

    def initialize(self):
        self.state_, self.n_steps_ = None, 0
        return self

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.state_ = copy.deepcopy(net.module_.state_dict())
            self.n_steps_ += 1


def _net(callbacks, max_epochs=2, **kwargs):
    return DisentangleNet(Tiny, max_epochs=max_epochs, batch_size=16, lr=1e-3, verbose=0,
                          callbacks=callbacks, iterator_train__shuffle=False, **kwargs)


@pytest.fixture
def X40():
    return torch.randn(40, 2)  # batches of 16, 16, 8


def _sprites(n=64):
    return make_dsprites_like(resolution=16).sample(n, random_state=0)[1]


# ----------------------------------------------------------------------------- schedules
def test_linear_warmup_values():
    s = LinearWarmup(4.0, n_steps=4)
    assert [s(i) for i in range(7)] == [0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert s(-3) == 0.0
    s = LinearWarmup(3.0, n_steps=4, start=1.0)
    assert [s(i) for i in (0, 1, 2, 4, 100)] == [1.0, 1.5, 2.0, 3.0, 3.0]
    down = LinearWarmup(0.0, n_steps=2, start=1.0)  # a ramp may go down too
    assert [down(i) for i in range(3)] == [1.0, 0.5, 0.0]
    assert LinearWarmup(5.0, n_steps=1)(0) == 0.0
    assert LinearWarmup(5.0, n_steps=1)(1) == 5.0
    assert repr(LinearWarmup(4, 10)) == "LinearWarmup(end=4.0, n_steps=10, start=0.0, delay=0)"
    late = LinearWarmup(2.0, n_steps=2, start=1.0, delay=3)  # held at start, then the ramp
    assert [late(i) for i in range(7)] == [1.0, 1.0, 1.0, 1.0, 1.5, 2.0, 2.0]
    with pytest.raises(ValueError, match="delay must be >= 0"):
        LinearWarmup(1.0, n_steps=2, delay=-1)


def test_cosine_cyclic_values():
    s = CosineCyclic(high=1.0, period=4)
    expected = [0.0, (1 - math.cos(math.pi / 4)) / 2, 0.5, (1 - math.cos(3 * math.pi / 4)) / 2]
    np.testing.assert_allclose([s(i) for i in range(4)], expected, atol=1e-12)
    np.testing.assert_allclose([s(i) for i in range(4, 8)], expected, atol=1e-12)  # restarts
    np.testing.assert_allclose([s(i) for i in range(6)], [0.0, 0.146447, 0.5, 0.853553, 0.0, 0.146447], atol=1e-6)
    s = CosineCyclic(high=3.0, period=2, low=1.0)
    assert [s(i) for i in range(5)] == pytest.approx([1.0, 2.0, 1.0, 2.0, 1.0])
    assert CosineCyclic(high=2.0, period=1)(5) == 0.0
    assert repr(CosineCyclic(1, 4)) == "CosineCyclic(high=1.0, period=4, low=0.0)"


@pytest.mark.parametrize("make", [lambda: LinearWarmup(1.0, n_steps=0), lambda: LinearWarmup(1.0, n_steps=-2)])
def test_linear_warmup_validation(make):
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        make()


@pytest.mark.parametrize("period", [0, -1])
def test_cosine_cyclic_validation(period):
    with pytest.raises(ValueError, match="period must be >= 1"):
        CosineCyclic(1.0, period=period)


# ----------------------------------------------------------------------------- ParamSchedule
def test_param_schedule_sets_attribute_per_batch_and_records_per_epoch(X40):
    net = _net([("sched", ParamSchedule("scale", LinearWarmup(4.0, n_steps=4)))]).fit(X40)
    # steps 0, 1, 2 in epoch 1 (batches of 16, 16, 8), steps 3, 4, 5 in epoch 2
    assert net.history[:, "train_scale"] == pytest.approx([(0 * 16 + 1 * 16 + 2 * 8) / 40, (3 * 16 + 4 * 16 + 4 * 8) / 40])
    assert net.history[:, "scale"] == [2.0, 4.0]
    assert net.module_.scale == 4.0


def test_param_schedule_resumes_step_count(X40):
    net = _net([("sched", ParamSchedule("scale", lambda step: float(step)))], max_epochs=1).fit(X40)
    assert net.history[:, "scale"] == [2.0]
    net.partial_fit(X40)
    assert net.history[:, "scale"] == [2.0, 5.0]
    assert net.history[-1, "train_scale"] == pytest.approx((3 * 16 + 4 * 16 + 5 * 8) / 40)


def test_param_schedule_counts_only_training_batches(X40):
    # validation batches are in the history too; they must not advance the schedule
    valid = predefined_split(Dataset(torch.randn(20, 2), None))
    net = _net([("sched", ParamSchedule("scale", lambda step: float(step)))], max_epochs=1,
               train_split=valid).fit(X40)
    assert net.history[:, "scale"] == [2.0]
    net.partial_fit(X40)
    assert net.history[:, "scale"] == [2.0, 5.0]


def test_param_schedule_validation_uses_last_training_value(X40):
    valid = predefined_split(Dataset(torch.randn(20, 2), None))
    net = _net([("sched", ParamSchedule("scale", lambda step: float(step)))], train_split=valid).fit(X40)
    assert net.history[:, "valid_scale"] == [2.0, 5.0]


def test_param_schedule_missing_attribute(X40):
    with pytest.raises(ValueError, match="Tiny has no attribute 'gamma'"):
        _net([("sched", ParamSchedule("gamma", LinearWarmup(1.0, 10)))]).fit(X40)


def test_param_schedule_on_cfasl_beta():
    X = _sprites(64)  # 4 batches of 16 per epoch
    est = CFASLVAE(z_dim=2, max_epochs=2, batch_size=16, lr=1e-3, random_state=0, device="cpu",
                   callbacks=[("warmup", ParamSchedule("beta", LinearWarmup(4.0, n_steps=8)))])
    est.fit(X)
    assert est.history_[:, "beta"] == [1.5, 3.5]
    assert est.net_.module_.beta == 3.5
    # the user's callback object is not mutated (estimators deep-copy callbacks)
    assert not hasattr(est.callbacks[0][1], "step_")


def test_param_schedule_on_cfasl_resumes_with_validation_split():
    X = _sprites(64)  # 48 training rows: 3 batches per epoch, plus 1 validation batch
    est = CFASLVAE(z_dim=2, max_epochs=2, batch_size=16, lr=1e-3, random_state=0, device="cpu",
                   validation_fraction=0.25, warm_start=True,
                   callbacks=[ParamSchedule("beta", LinearWarmup(100.0, n_steps=100))])
    est.fit(X)
    assert est.history_[:, "beta"] == pytest.approx([2.0, 5.0])
    est.set_params(max_epochs=1).fit(X)
    assert est.history_[:, "beta"] == pytest.approx([2.0, 5.0, 8.0])


def test_param_schedule_unknown_attribute_on_cfasl():
    est = CFASLVAE(z_dim=2, max_epochs=1, batch_size=16, random_state=0, device="cpu",
                   callbacks=[ParamSchedule("gamma", LinearWarmup(1.0, 10))])
    with pytest.raises(ValueError, match="no attribute 'gamma'"):
        est.fit(_sprites(32))


# ----------------------------------------------------------------------------- NaNGuard
def test_non_finite_loss_error_type():
    err = NonFiniteLossError("boom", epoch=2, batch=3, term="kl")
    assert isinstance(err, ValueError)
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.batch, err.term) == (2, 3, "kl")
    assert str(err) == "boom"


def test_nan_guard_stops_at_nan_loss_and_keeps_last_finite_parameters(X40):
    # global step 4 = epoch 2, batch 2
    net = _net([("guard", NaNGuard()), ("poison", PoisonAt(4, "loss")), ("snap", Snapshot())], max_epochs=3)
    with pytest.raises(NonFiniteLossError) as excinfo:
        net.fit(X40)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert (err.epoch, err.batch, err.term) == (2, 2, "loss")
    msg = str(err)
    assert "Loss term 'loss' became nan at epoch 2, batch 2 (training)" in msg
    assert "last finite values" in msg
    snap = dict(net.callbacks_)["snap"]
    assert snap.n_steps_ == 4
    state = net.module_.state_dict()
    for key, value in snap.state_.items():
        assert torch.equal(state[key], value), key
    assert all(torch.isfinite(p).all() for p in net.module_.parameters())
    # the optimiser took exactly the 4 good steps
    adam_state = net.optimizer_.state_dict()["state"]
    assert all(float(s["step"]) == 4 for s in adam_state.values())


def test_nan_guard_names_a_non_finite_term(X40):
    net = _net([("guard", NaNGuard()), ("poison", PoisonAt(0, "term"))])
    with pytest.raises(NonFiniteLossError, match=r"Loss term 'size' became inf at epoch 1, batch 1") as excinfo:
        net.fit(X40)
    assert excinfo.value.term == "size"


def test_nan_guard_detects_nan_gradients(X40):
    net = _net([("guard", NaNGuard()), ("poison", PoisonAt(2, "grad")), ("snap", Snapshot())])
    with pytest.raises(NonFiniteLossError) as excinfo:
        net.fit(X40)
    err = excinfo.value
    assert (err.epoch, err.batch, err.term) == (1, 3, "lin.weight")
    assert "Gradient of parameter 'lin.weight' became non-finite at epoch 1, batch 3" in str(err)
    snap = dict(net.callbacks_)["snap"]
    for key, value in snap.state_.items():
        assert torch.equal(net.module_.state_dict()[key], value), key


def test_nan_guard_without_gradient_check_lets_nan_gradients_through():
    X = torch.randn(16, 2)  # one batch, one epoch: the loss stays finite, the step is taken
    net = _net([("guard", NaNGuard(check_gradients=False)), ("poison", PoisonAt(0, "grad"))], max_epochs=1)
    net.fit(X)
    assert not torch.isfinite(net.module_.lin.weight).all()


def test_nan_guard_in_validation(X40):
    valid = predefined_split(Dataset(torch.randn(20, 2), None))
    net = _net([("guard", NaNGuard())], train_split=valid).initialize()
    net.module_.poison_valid = True
    with pytest.raises(NonFiniteLossError) as excinfo:
        net.partial_fit(X40)
    err = excinfo.value
    assert "(validation)" in str(err)
    assert (err.epoch, err.batch, err.term) == (1, 1, "loss")


def test_nan_guard_through_cfasl_estimator():
    # beta becomes inf at global step 5 (epoch 2, batch 2 with 4 batches per epoch)
    X = _sprites(64)
    est = CFASLVAE(z_dim=2, max_epochs=3, batch_size=16, lr=1e-3, random_state=0, device="cpu",
                   callbacks=[("inf_beta", ParamSchedule("beta", lambda step: math.inf if step >= 5 else 1.0)),
                              ("snap", Snapshot())])
    with pytest.raises(NonFiniteLossError) as excinfo:
        est.fit(X)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert (err.epoch, err.batch, err.term) == (2, 2, "loss")
    assert "epoch 2, batch 2" in str(err)
    # the estimator keeps the net with the last finite parameters
    snap = dict(est.net_.callbacks_)["snap"]
    assert snap.n_steps_ == 5
    for key, value in snap.state_.items():
        assert torch.equal(est.net_.module_.state_dict()[key], value), key
    assert np.isfinite(est.transform(X[:4])).all()


def test_estimators_have_nan_guard_by_default():
    est = CFASLVAE(z_dim=2, max_epochs=1, batch_size=16, random_state=0, device="cpu").fit(_sprites(16))
    assert isinstance(dict(est.net_.callbacks_)["nan_guard"], NaNGuard)


# ----------------------------------------------------------------------------- ProgressBar
def test_progress_bar_on_net(X40, capsys):
    net = _net([("progress", ProgressBar())], max_epochs=2).fit(X40)
    err = capsys.readouterr().err
    assert "Tiny" in err
    assert "2/2" in err
    assert "train_mse" in err
    assert len(net.history) == 2
    clone = pickle.loads(pickle.dumps(net))
    clone.partial_fit(X40)  # the bars are rebuilt after unpickling (max_epochs more epochs)
    assert len(clone.history) == 4


def test_progress_bar_through_estimator_verbose(capsys):
    X = _sprites(32)
    est = CFASLVAE(z_dim=2, max_epochs=2, batch_size=16, lr=1e-3, random_state=0, device="cpu", verbose=1)
    est.fit(X)
    captured = capsys.readouterr()
    assert "VAEModule" in captured.err
    assert "epoch" in captured.err
    assert "train_recon" in captured.err
    assert isinstance(dict(est.net_.callbacks_)["progress"], ProgressBar)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.transform(X), est.transform(X))
    clone.partial_fit(X)
    assert len(clone.history_) == 3

