"""The GPU path: training on CUDA, and a GPU-trained model used on a CPU-only machine.

Skipped where no CUDA device exists (CI); run on a GPU machine to check the CUDA path.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.datasets import make_dsprites_like

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (checks the CUDA path)")


@pytest.fixture(scope="module")
def gpu_fitted():
    _, X = make_dsprites_like(resolution=32).sample(512, random_state=0)
    est = CFASLVAE(z_dim=4, max_epochs=2, lr=1e-3, batch_size=64, device="auto", random_state=0).fit(X)
    return est, X


def test_auto_device_trains_on_cuda(gpu_fitted):
    est, X = gpu_fitted
    assert str(est.net_.device).startswith("cuda")
    assert next(est.net_.module_.parameters()).is_cuda
    Z = est.transform(X)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32 and Z.shape == (len(X), 4)
    assert est.inverse_transform(Z[:3]).shape == (3, 32, 32)
    assert np.isfinite(est.score(X))
    assert est.history_[-1, "train_loss"] < est.history_[0, "train_loss"]


def test_gpu_and_cpu_training_agree_in_distribution(gpu_fitted):
    est, X = gpu_fitted
    cpu = CFASLVAE(z_dim=4, max_epochs=2, lr=1e-3, batch_size=64, device="cpu", random_state=0).fit(X)
    # same seed, same data: different kernels, so not bitwise, but the losses are close
    assert abs(cpu.history_[-1, "train_loss"] - est.history_[-1, "train_loss"]) < 0.05 * abs(cpu.history_[-1, "train_loss"])


def test_gpu_model_unpickles_and_runs_on_a_cpu_only_process(gpu_fitted, tmp_path):
    est, X = gpu_fitted
    (tmp_path / "est.pkl").write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X[:16])
    np.save(tmp_path / "Z.npy", est.transform(X[:16]))
    code = (
        "import pickle, warnings, numpy as np, torch\n"
        "assert not torch.cuda.is_available()\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        f"    est = pickle.loads(open(r'{tmp_path / 'est.pkl'}', 'rb').read())\n"
        "assert str(est.net_.device) == 'cpu', est.net_.device\n"
        f"Z = est.transform(np.load(r'{tmp_path / 'X.npy'}'))\n"
        f"np.testing.assert_allclose(Z, np.load(r'{tmp_path / 'Z.npy'}'), rtol=1e-3, atol=1e-4)\n"
        "est.partial_fit(np.load(r'" + str(tmp_path / "X.npy") + "'))\n"
        "print('ok')\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok")
