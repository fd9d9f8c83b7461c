"""O2VAE on a CUDA device (skipped without one)."""

import pickle

import numpy as np
import pytest
import torch

from sklearn_disentangle import O2VAE
from sklearn_disentangle.datasets import make_rotated_digits

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("encoder", ["e2cnn", "d4"])
def test_fit_invariance_and_pickle_on_cuda(encoder):
    X = make_rotated_digits(64, resolution=32, flips=True, random_state=0).images
    widths = (3, 4, 6) if encoder == "e2cnn" else (8, 16, 32)
    model = O2VAE(z_dim=4, encoder=encoder, encoder_widths=widths, max_epochs=2, batch_size=32,
                  device="cuda", random_state=0).fit(X)
    assert str(model.net_.device).startswith("cuda")
    Z = model.transform(X)
    rel = np.linalg.norm(model.transform(np.rot90(X, 1, axes=(1, 2)).copy()) - Z, axis=1) / np.linalg.norm(Z, axis=1)
    assert rel.max() < 1e-4
    loaded = pickle.loads(pickle.dumps(model))
    assert all(p.is_cuda for p in loaded.net_.module_.parameters())
    np.testing.assert_allclose(loaded.transform(X), Z, rtol=1e-5, atol=1e-5)
