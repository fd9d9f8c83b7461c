"""Input validation, the image-shape contract and device handling of the shared base class."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.base import resolve_device
from sklearn_disentangle.nn import ConvEncoder, MLPEncoder


def tiny(**params):
    return CFASLVAE(**{**CFASLVAE._tiny_params(), "max_epochs": 1, **params})


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    return (rng.rand(24, 16, 16) > 0.5).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(images):
    return tiny().fit(images)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((4, 16, 16), np.nan, dtype=np.float32), "Input X contains NaN"),
        (np.full((4, 16, 16), np.inf, dtype=np.float32), "Input X contains infinity"),
        (np.zeros((0, 16, 16), dtype=np.float32), "0 sample"),
        (np.zeros((4, 1, 1, 16, 16), dtype=np.float32), r"expects X of shape \(n_samples, H, W\)"),
        (np.zeros(16, dtype=np.float32), "Reshape your data"),
        (np.array([[["a"] * 16] * 16] * 4), "could not convert|argument must be"),
    ],
    ids=["nan", "inf", "empty", "too-many-dims", "1d", "strings"],
)
def test_bad_input_raises_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny().fit(bad)


def test_sparse_input_is_a_type_error():
    with pytest.raises(TypeError, match="dense data is required"):
        tiny().fit(sp.csr_matrix(np.eye(8, dtype=np.float32)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"z_dim": 0}, r"'z_dim' parameter of CFASLVAE must be an int in the range \[1, inf\)"),
        ({"z_dim": -3}, "'z_dim' parameter"),
        ({"z_dim": 2.5}, "'z_dim' parameter"),
        ({"model_type": "vae"}, r"'model_type' parameter of CFASLVAE must be one of 'betatcvae', 'betavae'"),
        ({"lr": 0.0}, "'lr' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
        ({"random_state": "seed"}, "'random_state' parameter"),
        ({"beta": -1.0}, "'beta' parameter"),
    ],
)
def test_bad_parameters_raise_at_fit_naming_the_parameter(images, params, match):
    est = tiny(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        est.fit(images)


@pytest.mark.parametrize("device, match", [("tpu", "Unknown device 'tpu'"), ("gpu0", "Unknown device")])
def test_unknown_device(images, device, match):
    with pytest.raises(ValueError, match=match):
        tiny(device=device).fit(images)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda_says_so(images):
    with pytest.raises(ValueError, match="CUDA is not available on this machine; use device='auto' or 'cpu'"):
        tiny(device="cuda").fit(images)


def test_auto_device_resolves_to_an_available_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(torch.device("cpu")).type == "cpu"
    with pytest.raises(TypeError, match="device must be a string"):
        resolve_device(3)


def test_image_shape_at_transform_is_compared_in_full(fitted):
    # same number of values (256) but a different shape: must not pass silently
    with pytest.raises(ValueError, match=r"per-sample shape \(8, 32\) but this CFASLVAE was fitted on shape \(16, 16\)"):
        fitted.transform(np.zeros((2, 8, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="per-sample shape"):
        fitted.transform(np.zeros((2, 1, 16, 16), dtype=np.float32))
    # a different size gets the same message (which names the fitted shape), not sklearn's
    # feature count
    with pytest.raises(ValueError, match=r"per-sample shape \(16, 15\) but .* fitted on shape \(16, 16\)"):
        fitted.transform(np.zeros((2, 16, 15), dtype=np.float32))


def test_fewer_samples_than_batch_size(images):
    est = tiny(batch_size=64).fit(images[:5])
    assert est.history_[-1]["train_batch_count"] == 1
    assert est.transform(images[:5]).shape == (5, 2)


def test_single_sample(images):
    est = tiny(model_type="betatcvae").fit(images[:1])
    assert np.isfinite(est.history_[-1]["train_loss"])


def test_channels_first_and_flat_inputs(images):
    rgb = np.repeat(images[:, None], 3, axis=1)
    est = tiny().fit(rgb)
    assert est.input_shape_ == (3, 16, 16) and est.image_shape_ == (3, 16, 16)
    assert isinstance(est.net_.module_.encoder, ConvEncoder)
    assert est.inverse_transform(est.transform(rgb[:2])).shape == (2, 3, 16, 16)

    flat = images.reshape(len(images), -1)
    mlp = tiny().fit(flat)
    assert isinstance(mlp.net_.module_.encoder, MLPEncoder)
    assert mlp.inverse_transform(mlp.transform(flat[:2])).shape == (2, 256)

    conv = tiny(image_shape=(16, 16)).fit(flat)
    assert isinstance(conv.net_.module_.encoder, ConvEncoder)
    assert conv.input_shape_ == (1, 16, 16) and conv.image_shape_ == (256,)
    assert conv.inverse_transform(conv.transform(flat[:2])).shape == (2, 256)
    with pytest.raises(ValueError, match=r"image_shape=\(8, 8\) has 64 values but X has 256 features"):
        tiny(image_shape=(8, 8)).fit(flat)


def test_input_dtypes_are_accepted_and_output_is_float32(images):
    as_uint8 = images.astype(np.uint8)
    as_float64 = images.astype(np.float64)
    as_bool = images.astype(bool)
    z8 = tiny().fit(as_uint8).transform(as_uint8)
    z64 = tiny().fit(as_float64).transform(as_float64)
    zb = tiny().fit(as_bool).transform(as_bool)
    assert z8.dtype == z64.dtype == zb.dtype == np.float32
    np.testing.assert_array_equal(z8, z64)
    np.testing.assert_array_equal(z8, zb)


def test_dataframe_input_records_feature_names(images):
    frame = pd.DataFrame(images.reshape(len(images), -1), columns=[f"px{i}" for i in range(256)])
    est = tiny().fit(frame)
    assert list(est.feature_names_in_[:2]) == ["px0", "px1"]
    assert est.transform(frame).shape == (len(images), 2)


def test_inverse_transform_checks_the_code_width(fitted):
    with pytest.raises(ValueError, match=r"codes with 2 columns \(z_dim\), got 3"):
        fitted.inverse_transform(np.zeros((1, 3)))


def test_score_is_negative_loss_and_reproducible(fitted, images):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    s1, s2 = fitted.score(images), fitted.score(images)
    assert s1 == s2 and s1 < 0
    # scoring samples inside a forked, seeded RNG: the caller's stream is untouched
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_transform_is_batched_and_order_independent(fitted, images):
    full = fitted.transform(images)
    np.testing.assert_allclose(fitted.transform(images[::-1])[::-1], full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([fitted.transform(images[:5]), fitted.transform(images[5:])]), full,
                               rtol=1e-5, atol=1e-6)


def test_readonly_and_memmap_input_are_not_modified(tmp_path, images):
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=images.shape)
    mm[:] = images
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = tiny().fit(ro)
    assert est.transform(ro).shape == (len(images), 2)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), images)
