"""OpusDSD on a CUDA device (skipped without one): the whole image formation runs on the GPU."""

import pickle

import numpy as np
import pytest
import torch

from sklearn_disentangle import OpusDSD
from sklearn_disentangle.datasets import make_cryoem_particles

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fit_transform_volumes_and_pickle_on_cuda(tmp_path):
    stack, _ = make_cryoem_particles(64, 32, n_conformations=2, snr=0.5, random_state=0)
    est = OpusDSD(z_dim=4, **OpusDSD.PRESETS["cpu"], max_epochs=2, device="cuda", random_state=0,
                  checkpoint_dir=str(tmp_path / "ckpt")).fit(stack)
    module = est.net_.module_
    assert all(p.is_cuda for p in module.parameters()) and module.bank.is_cuda and module.mask.is_cuda
    z = est.transform(stack)
    assert z.shape == (64, 4) and np.isfinite(z).all()
    vols = est.inverse_transform(z[:2])
    assert vols.shape == (2, 32, 32, 32) and np.isfinite(vols).all()
    assert est.project(z[:2], stack[:2]).shape == (2, 32, 32)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(loaded.transform(stack), z, rtol=1e-4, atol=1e-4)
    resumed = OpusDSD(z_dim=4, **OpusDSD.PRESETS["cpu"], max_epochs=1, device="cuda", random_state=0,
                      checkpoint_dir=str(tmp_path / "ckpt"), warm_start=True).fit(stack)
    assert len(resumed.history_) == 3
