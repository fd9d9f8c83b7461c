"""Checkpoints and warm starts through an estimator (CFASLVAE)."""

import json

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.datasets import make_dsprites_like


@pytest.fixture(scope="module")
def X():
    return make_dsprites_like(resolution=16).sample(64, random_state=0)[1]


def _est(**kwargs):
    params = dict(z_dim=2, max_epochs=2, batch_size=16, lr=1e-3, random_state=0, device="cpu")
    params.update(kwargs)
    return CFASLVAE(**params)


class StartState(Callback):
    """Parameters of the module when training starts."""

    def on_train_begin(self, net, **kwargs):
        self.state_ = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


def test_checkpoint_files_written(tmp_path, X):
    est = _est(checkpoint_dir=tmp_path).fit(X)
    for name in ("params.pt", "optimizer.pt", "history.json"):
        assert (tmp_path / name).is_file(), name
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history) == 2
    assert [row["train_loss"] for row in history] == pytest.approx(est.history_[:, "train_loss"])
    assert "train_recon" in history[-1] and "train_kl" in history[-1]
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    for key, value in est.net_.module_.state_dict().items():
        assert torch.equal(saved[key], value), key


def test_checkpoint_dir_is_created(tmp_path, X):
    target = tmp_path / "new" / "ckpt"
    _est(checkpoint_dir=str(target), max_epochs=1).fit(X)
    assert (target / "params.pt").is_file()


def test_resume_from_checkpoint(tmp_path, X):
    first = _est(checkpoint_dir=tmp_path).fit(X)
    saved = torch.load(tmp_path / "params.pt", weights_only=True)
    resumed = _est(checkpoint_dir=tmp_path, warm_start=True, max_epochs=1,
                   callbacks=[("start", StartState())]).fit(X)
    assert len(resumed.history_) == 3
    assert resumed.history_[:, "epoch"] == [1, 2, 3]
    assert resumed.history_[:2, "train_loss"] == first.history_[:, "train_loss"]
    assert resumed.history_[:2, "train_kl"] == first.history_[:, "train_kl"]
    # training started from the saved parameters, and went on from there
    start = dict(resumed.net_.callbacks_)["start"].state_
    for key, value in saved.items():
        assert torch.equal(start[key], value), key
    assert any(not torch.equal(resumed.net_.module_.state_dict()[k], v) for k, v in saved.items())
    # the optimiser state came along: Adam has counted all 8 + 4 steps
    adam = resumed.net_.optimizer_.state_dict()["state"]
    assert all(float(s["step"]) == 12 for s in adam.values())
    # and the checkpoint now holds the three epochs
    assert len(json.loads((tmp_path / "history.json").read_text())) == 3
    assert resumed.transform(X).shape == (64, 2)


def test_warm_start_with_empty_checkpoint_dir_starts_afresh(tmp_path, X):
    est = _est(checkpoint_dir=tmp_path, warm_start=True).fit(X)
    assert len(est.history_) == 2
    plain = _est().fit(X)
    assert est.history_[:, "train_loss"] == plain.history_[:, "train_loss"]


def test_without_warm_start_the_checkpoint_is_ignored(tmp_path, X):
    first = _est(checkpoint_dir=tmp_path).fit(X)
    again = _est(checkpoint_dir=tmp_path).fit(X)
    assert len(again.history_) == 2
    assert again.history_[:, "train_loss"] == first.history_[:, "train_loss"]


def test_warm_start_continues_in_memory(X):
    est = _est(warm_start=True).fit(X)
    net = est.net_
    losses = est.history_[:, "train_loss"]
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    est.fit(X)
    assert est.net_ is net
    assert len(est.history_) == 4
    assert est.history_[:, "epoch"] == [1, 2, 3, 4]
    assert est.history_[:2, "train_loss"] == losses
    assert any(not torch.equal(net.module_.state_dict()[k], v) for k, v in before.items())


def test_warm_start_false_refits_from_scratch(X):
    est = _est().fit(X)
    Z = est.transform(X)
    est.fit(X)
    assert len(est.history_) == 2
    np.testing.assert_array_equal(est.transform(X), Z)


def test_warm_start_continuation_is_reproducible(X):
    a = _est(warm_start=True).fit(X).fit(X)
    b = _est(warm_start=True).fit(X).fit(X)
    assert a.history_[:, "train_loss"] == b.history_[:, "train_loss"]
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


@pytest.mark.parametrize("change", [{"z_dim": 3}, {"hidden_dim": 32}])
def test_checkpoint_of_another_architecture(tmp_path, X, change):
    _est(checkpoint_dir=tmp_path, max_epochs=1).fit(X)
    other = _est(checkpoint_dir=tmp_path, warm_start=True, max_epochs=1, **change)
    with pytest.raises(ValueError) as excinfo:
        other.fit(X)
    msg = str(excinfo.value)
    assert str(tmp_path) in msg
    assert "does not match this model" in msg
    assert "warm_start=False" in msg


def test_checkpoint_of_another_input_shape(tmp_path, X):
    _est(checkpoint_dir=tmp_path, max_epochs=1).fit(X)
    X32 = make_dsprites_like(resolution=32).sample(32, random_state=0)[1]
    with pytest.raises(ValueError, match="does not match this model"):
        _est(checkpoint_dir=tmp_path, warm_start=True, max_epochs=1).fit(X32)



def _ramp():
    from sklearn_disentangle.training import LinearWarmup, ParamSchedule

    return [("ramp", ParamSchedule("beta", LinearWarmup(100.0, n_steps=100)))]  # value = step


def test_schedule_resumes_from_checkpoint(tmp_path, X):
    first = _est(checkpoint_dir=tmp_path, callbacks=_ramp()).fit(X)  # 4 batches per epoch
    assert first.history_[:, "beta"] == pytest.approx([3.0, 7.0])
    resumed = _est(checkpoint_dir=tmp_path, warm_start=True, max_epochs=1, callbacks=_ramp()).fit(X)
    assert len(resumed.history_) == 3
    # the step count goes on from the 8 batches in the checkpoint's history
    assert resumed.history_[-1, "beta"] == pytest.approx(11.0)
    assert resumed.net_.module_.beta == pytest.approx(11.0)


def test_checkpoint_history_keeps_user_callback_records(tmp_path, X):
    _est(checkpoint_dir=tmp_path, callbacks=_ramp()).fit(X)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row.get("beta") for row in history] == pytest.approx([3.0, 7.0])
