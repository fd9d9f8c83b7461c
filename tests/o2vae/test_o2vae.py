"""O2VAE estimator: invariance, alignment, learning, errors."""

import numpy as np
import pytest
import torch

from sklearn_disentangle import O2VAE
from sklearn_disentangle.datasets import make_rotated_digits, rotate_images

TINY_E2 = {"encoder_widths": (2, 2, 3), "decoder_widths": (8, 8, 8, 8)}
TINY_CNN = {"encoder_widths": (4, 8, 16), "decoder_widths": (8, 8, 8, 8)}


def tiny(encoder="e2cnn", **params):
    widths = TINY_E2 if encoder == "e2cnn" else TINY_CNN
    return O2VAE(**{"z_dim": 4, "encoder": encoder, "max_epochs": 2, "batch_size": 16, "n_angles": 90,
                    "random_state": 0, **widths, **params})


@pytest.fixture(scope="module")
def X():
    return make_rotated_digits(48, resolution=16, flips=True, random_state=0).images


@pytest.fixture(scope="module")
def fitted(X):
    """Fitted tiny e2cnn and d4 models (training warms up the batch-norm statistics)."""
    return {enc: tiny(enc).fit(X) for enc in ("e2cnn", "d4", "cnn")}


def _relative_change(model, X, X_moved):
    """Mean code change under a transformation, relative to the mean distance between codes."""
    Z, Zm = model.transform(X), model.transform(X_moved)
    change = np.linalg.norm(Zm - Z, axis=1).mean()
    spread = np.linalg.norm(Z[:, None] - Z[None], axis=-1).sum() / (len(Z) * (len(Z) - 1))
    return change / spread


def _d4_copies(X):
    yield from (np.rot90(X, k, axes=(1, 2)).copy() for k in (1, 2, 3))
    yield X[:, :, ::-1].copy()
    yield np.rot90(X[:, :, ::-1], 1, axes=(1, 2)).copy()


@pytest.mark.parametrize("encoder", ["e2cnn", "d4"])
def test_codes_are_invariant_to_90_degree_rotations_and_flips(fitted, X, encoder):
    model = fitted[encoder]
    Z = model.transform(X)
    scale = np.abs(Z).max()
    for moved in _d4_copies(X):
        np.testing.assert_allclose(model.transform(moved), Z, rtol=0, atol=1e-4 * scale)


def test_plain_cnn_is_not_invariant(fitted, X):
    assert _relative_change(fitted["cnn"], X, np.rot90(X, 1, axes=(1, 2)).copy()) > 1e-2


@pytest.mark.parametrize("encoder, tol", [("e2cnn", 0.6), ("d4", 1.0)])
def test_codes_are_approximately_invariant_to_arbitrary_angles(fitted, X, encoder, tol):
    """Off-grid angles: the code moves by less than the mean distance between digits.

    Measured for these 2-epoch, 16 px tiny models (code change / mean distance between
    codes, at 20, 45 and 130 degrees): e2cnn 0.46-0.47, d4 0.66-0.81, plain CNN 0.41-0.91.
    Asserted below ``tol``; the O(2) encoder must also beat the plain CNN at 45 and 130
    degrees. (The benchmark benchmarks/o2vae_rotated_digits.py measures trained 32 px models.)
    """
    model = fitted[encoder]
    for angle in (20.0, 45.0, 130.0):
        moved = rotate_images(X, np.full(len(X), angle))
        assert _relative_change(model, X, moved) < tol
    if encoder == "e2cnn":
        for angle in (45.0, 130.0):
            moved = rotate_images(X, np.full(len(X), angle))
            assert _relative_change(model, X, moved) < _relative_change(fitted["cnn"], X, moved)


def test_align_to_recovers_known_rotations_and_flips(fitted):
    upright = make_rotated_digits(16, resolution=32, n_angles=1, random_state=3).images
    rng = np.random.RandomState(0)
    angles, flips = rng.uniform(-180, 180, 16), rng.rand(16) < 0.5
    X = rotate_images(upright, angles, flips)
    model = O2VAE()  # no fit needed
    found, found_flips = model.align_to(X, upright)
    assert np.abs((found - angles + 180) % 360 - 180).max() <= 2.0
    np.testing.assert_array_equal(found_flips, flips)
    # documented direction: rotate_images(Y, angles, flips) ~ X
    np.testing.assert_allclose(rotate_images(upright, found, found_flips), X, atol=0.1)
    brute, brute_flips = model.set_params(align="brute", rot_step_deg=2.0).align_to(X[:4, None], upright[:4, None])
    assert np.abs((brute - angles[:4] + 180) % 360 - 180).max() <= 2.0
    np.testing.assert_array_equal(brute_flips, flips[:4])


def test_loss_falls_on_rotated_digits():
    X = make_rotated_digits(128, resolution=16, flips=True, random_state=1).images
    model = tiny("d4", max_epochs=8, batch_size=32, lr=3e-3).fit(X)
    losses = model.history_[:, "train_loss"]
    assert losses[-1] < 0.9 * losses[0]
    e2 = tiny("e2cnn", max_epochs=4, batch_size=32, lr=3e-3).fit(X[:64])
    e2_losses = e2.history_[:, "train_loss"]
    assert e2_losses[-1] < e2_losses[0]


@pytest.mark.parametrize("params", [{"align": None}, {"align": "brute", "rot_step_deg": 30.0},
                                    {"align_flip": False, "augment": False}, {"recon_loss": "mse"}])
def test_alignment_options_train(X, params):
    model = tiny("d4", max_epochs=1, **params).fit(X[:32])
    assert np.isfinite(model.history_[-1, "train_recon"])
    assert model.transform(X[:4]).shape == (4, 4)


def test_aligned_reconstruction_is_not_worse_than_unaligned(fitted, X):
    module = fitted["d4"].net_.module_.eval()
    x = torch.from_numpy(X[:16, None])
    with torch.no_grad():
        y = module.decode(module.encode(x)["z_mean"])
        *_, aligned = module.align_to(y, x)
        unaligned = module._per_sample_recon(y, x)
    assert (aligned <= unaligned + 1e-3).all()


def test_multichannel_images(X):
    X2 = np.stack([X[:32], X[:32] ** 2], axis=1)
    model = tiny("e2cnn", max_epochs=1).fit(X2)
    Z = model.transform(X2)
    np.testing.assert_allclose(model.transform(np.rot90(X2, 1, axes=(2, 3)).copy()), Z,
                               atol=1e-4 * np.abs(Z).max(), rtol=0)
    assert model.inverse_transform(Z[:2]).shape == (2, 2, 16, 16)


def test_recon_loss_auto_resolves_from_the_data(X):
    assert tiny("d4", max_epochs=1).fit(X[:16]).recon_loss_ == "bce"
    assert tiny("d4", max_epochs=1).fit(X[:16] * 2 - 1).recon_loss_ == "mse"


def test_checkpoint_resume_with_e2cnn(X, tmp_path):
    model = tiny("e2cnn", max_epochs=1, checkpoint_dir=tmp_path).fit(X[:32])
    resumed = tiny("e2cnn", max_epochs=1, checkpoint_dir=tmp_path, warm_start=True).fit(X[:32])
    assert len(resumed.history_) == 2
    assert np.isfinite(resumed.transform(X[:4])).all()
    assert model.transform(X[:4]).shape == (4, 4)


@pytest.mark.parametrize("params, data, match", [
    ({}, np.zeros((4, 16, 12), np.float32), "square"),
    ({"recon_loss": "bce"}, np.full((4, 16, 16), 2.0, np.float32), r"needs X in \[0, 1\]"),
    ({"encoder": "resnet"}, None, "'encoder' parameter"),
    ({"align": "phase"}, None, "'align' parameter"),
    ({"beta": -1.0}, None, "'beta' parameter"),
    ({"encoder_widths": (2, 0, 3)}, None, "encoder_widths"),
    ({}, np.full((8, 4, 4), 0.5, np.float32), "too small"),
    ({"encoder_widths": (2, 2, 1)}, None, "invariant"),
    ({"decoder_widths": (8, 8)}, None, "decoder_widths of length 2"),
])
def test_clear_errors(X, params, data, match):
    with pytest.raises(ValueError, match=match):
        tiny(**params).fit(X[:8] if data is None else data)


def test_align_to_rejects_bad_inputs():
    model = O2VAE()
    with pytest.raises(ValueError, match="square"):
        model.align_to(np.zeros((2, 8, 6)), np.zeros((2, 8, 6)))
    with pytest.raises(ValueError, match="same shape"):
        model.align_to(np.zeros((2, 8, 8)), np.zeros((3, 8, 8)))


@pytest.mark.parametrize("field_pool, bound", [("avg", 1e-4), ("norm_max", None)])
def test_e2cnn_32px_digits_invariance_per_sample(field_pool, bound):
    """Per-sample relative change of the code under rot90 and flips, at 32 px.

    With average field pooling every sample changes by < 1e-4 (measured ~2e-6). The
    reference's norm max pooling jumps at ties on digit backgrounds (measured up to ~1e-3);
    it stays far below the distance between digits.
    """
    from sklearn_disentangle.o2vae.model import E2Encoder

    X = torch.from_numpy(make_rotated_digits(48, resolution=32, n_angles=1, random_state=1).images[:, None])
    torch.manual_seed(0)
    enc = E2Encoder(1, 8, side=32, widths=(3, 4, 6), field_pool=field_pool)
    with torch.no_grad():
        enc.train()
        enc(X)  # warm up the batch-norm statistics
        enc.eval()
        z = enc(X)
        norm = z.norm(dim=1)
        for moved in (torch.rot90(X, 1, dims=(-2, -1)), torch.rot90(X, 2, dims=(-2, -1)), torch.flip(X, dims=(-1,))):
            rel = (enc(moved) - z).norm(dim=1) / norm
            if bound is not None:
                assert rel.max() < bound
            else:
                assert rel.max() < 0.05


@pytest.mark.parametrize("rotations, pool", [(4, "mean"), (8, "mean"), (16, "max"), (16, "mean")])
def test_larger_orbits_keep_exact_d4_invariance(X, rotations, pool):
    model = tiny("d4", orbit_rotations=rotations, orbit_pool=pool, max_epochs=1).fit(X)
    Z = model.transform(X)
    scale = np.abs(Z).max()
    for moved in _d4_copies(X):
        np.testing.assert_allclose(model.transform(moved), Z, rtol=0, atol=1e-4 * scale)


def _orbit_over_distance(encoder, ds, angles):
    """Mean code change of off-grid views (each rendered once from the source digit) over the
    mean distance between the codes of different digits, for an encoder in eval mode."""
    source, side = ds._source[ds.instance], ds.images.shape[-1]

    def codes(angle):
        views = rotate_images(source, np.full(len(source), angle), output_size=side, extent=1 / np.sqrt(2))
        with torch.no_grad():
            return encoder(torch.as_tensor(views[:, None])).numpy()

    Z = codes(0.0)
    spread = np.linalg.norm(Z[:, None] - Z[None], axis=-1).sum() / (len(Z) * (len(Z) - 1))
    return np.mean([np.linalg.norm(codes(a) - Z, axis=1).mean() for a in angles]) / spread


def test_sixteen_rotation_mean_orbit_is_closer_to_invariant_between_grid_angles():
    """At initialisation (same weights), at 15-75 degrees: D4 max pooling moves the code by
    about as much as changing the digit; the 16-rotation mean-pooled orbit by far less
    (measured on 32 px digits at the paper's widths: 0.78 vs 0.04; here, 16 px and small
    widths: 0.83 vs 0.13)."""
    from sklearn_disentangle.o2vae.model import D4Encoder

    ds = make_rotated_digits(32, resolution=16, n_angles=1, random_state=3)
    angles = (15.0, 30.0, 45.0, 60.0, 75.0)
    ratios = {}
    for rotations, pool in [(4, "max"), (16, "mean")]:
        torch.manual_seed(0)
        encoder = D4Encoder(1, 8, widths=(8, 16, 16), n_rotations=rotations, orbit_pool=pool).eval()
        ratios[rotations, pool] = _orbit_over_distance(encoder, ds, angles)
    assert ratios[16, "mean"] < 0.25 * ratios[4, "max"], ratios
    assert ratios[16, "mean"] < 0.2, ratios


def test_orbit_parameters_are_validated(X):
    with pytest.raises(ValueError, match="orbit_rotations"):
        tiny("d4", orbit_rotations=6).fit(X)
    with pytest.raises(ValueError, match="orbit_pool"):
        tiny("d4", orbit_pool="median").fit(X)
