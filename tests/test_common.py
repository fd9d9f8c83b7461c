"""The contract every estimator of the library honours, run over the registry.

An estimator joins these tests by subclassing ``LatentTransformer`` (it then appears in
``all_estimators()``) and, where the defaults do not fit, overriding ``_tiny_params`` and
``_tiny_data``.
"""

import io
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_disentangle import all_estimators

ESTIMATORS = [cls for _, cls in all_estimators()]
IDS = [cls.__name__ for cls in ESTIMATORS]

# Checks of scikit-learn's suite that cannot apply, with the reason, live on each estimator
# class as ``_expected_failed_checks`` ({check name: reason}), beside the code they explain.
# (CFASLVAE and O2VAE have none: they pass the whole suite on flat input through an MLP path.)


def _expected_failed_checks(estimator):
    return dict(getattr(type(estimator), "_expected_failed_checks", {}))


def _inverse_transform_shape(est, X):
    """What ``inverse_transform(transform(X))`` returns: X's shape, unless the class says otherwise
    (a class hook ``_inverse_transform_shape(X)``, e.g. volumes decoded from particle images)."""
    hook = getattr(type(est), "_inverse_transform_shape", None)
    return tuple(hook(X)) if hook is not None else X.shape


def assert_same_latents(a, b, est):
    """Bitwise on CPU (the contract); to float32 rounding on CUDA, whose kernels are not deterministic."""
    if str(est.net_.device) == "cpu":
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def tiny(cls, **params):
    return cls(**{**cls._tiny_params(), **params})


@pytest.fixture(scope="module", params=ESTIMATORS, ids=IDS)
def fitted(request):
    """One fitted estimator per class with its data (module-scoped: do not refit it)."""
    cls = request.param
    X, factors = cls._tiny_data()
    return tiny(cls).fit(X), X, factors


def test_registry_lists_the_built_estimators():
    assert "CFASLVAE" in IDS


@parametrize_with_checks([tiny(cls) for cls in ESTIMATORS], expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_fit_returns_self_and_output_shapes(fitted):
    est, X, _ = fitted
    Z = est.transform(X)
    assert Z.shape == (len(X), est.z_dim)
    assert Z.dtype == np.float32
    assert np.isfinite(Z).all()
    rec = est.inverse_transform(Z)
    assert rec.shape == _inverse_transform_shape(est, X) and rec.dtype == np.float32
    assert np.isfinite(est.score(X))
    assert est.image_shape_ == X.shape[1:]
    assert est.n_features_in_ == int(np.prod(X.shape[1:]))
    assert len(est.history_) == est.max_epochs
    new = tiny(type(est))
    assert new.fit(X) is new


def test_unfitted_raises_not_fitted(fitted):
    est, X, _ = fitted
    fresh = clone(est)
    for method in (fresh.transform, fresh.inverse_transform, fresh.score):
        with pytest.raises(NotFittedError):
            method(X)


def test_clone_keeps_params_not_fit(fitted):
    est, _, _ = fitted
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "net_")


@pytest.mark.parametrize("how", ["pickle", "joblib"])
def test_persistence_round_trip_gives_identical_output(fitted, how, tmp_path):
    est, X, _ = fitted
    if how == "pickle":
        loaded = pickle.loads(pickle.dumps(est))
    else:
        joblib.dump(est, tmp_path / "est.joblib")
        loaded = joblib.load(tmp_path / "est.joblib")
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    np.testing.assert_array_equal(loaded.inverse_transform(est.transform(X[:3])), est.inverse_transform(est.transform(X[:3])))
    assert loaded.score(X) == est.score(X)


def test_same_random_state_gives_bitwise_identical_latents(fitted):
    est, X, _ = fitted
    again = clone(est).fit(X)
    assert_same_latents(again.transform(X), est.transform(X), est)
    other = clone(est).set_params(random_state=1).fit(X)
    assert not np.array_equal(other.transform(X), est.transform(X))


def test_fit_does_not_touch_user_data_or_global_rng(fitted):
    import torch

    est, X, _ = fitted
    X_copy = np.array(X, copy=True)  # also for array-likes such as a ParticleStack
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    clone(est).fit(X)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_pipeline_ending_in_kmeans(fitted):
    est, X, _ = fitted
    pipe = Pipeline([("encode", clone(est)), ("kmeans", KMeans(n_clusters=3, n_init=2, random_state=0))])
    labels = pipe.fit(X).predict(X)
    assert labels.shape == (len(X),)
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_grid_search_over_z_dim(fitted):
    est, X, _ = fitted
    search = GridSearchCV(clone(est), {"z_dim": [2, 3]}, cv=2).fit(X)
    assert search.best_params_["z_dim"] in (2, 3)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.transform(X).shape == (len(X), search.best_params_["z_dim"])


def test_set_output_pandas_and_feature_names(fitted):
    est, X, _ = fitted
    names = est.get_feature_names_out()
    prefix = type(est).__name__.lower()
    assert list(names) == [f"{prefix}{i}" for i in range(est.z_dim)]
    frame = clone(est).set_output(transform="pandas").fit(X).transform(X)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    assert frame.shape == (len(X), est.z_dim)


def test_partial_fit_continues_training(fitted):
    est, X, _ = fitted
    model = clone(est)
    model.partial_fit(X)
    assert len(model.history_) == 1
    model.partial_fit(X)
    assert len(model.history_) == 2
    # fit then partial_fit is reproducible under random_state
    a = clone(est).fit(X).partial_fit(X).transform(X)
    b = clone(est).fit(X).partial_fit(X).transform(X)
    assert_same_latents(a, b, est)


def test_warm_start_continues_in_memory(fitted):
    est, X, _ = fitted
    model = clone(est).set_params(warm_start=True)
    model.fit(X)
    model.fit(X)
    assert len(model.history_) == 2 * est.max_epochs


def test_validation_fraction_records_valid_terms(fitted):
    est, X, _ = fitted
    model = clone(est).set_params(validation_fraction=0.25).fit(X)
    row = model.history_[-1]
    assert "valid_loss" in row and np.isfinite(row["valid_loss"])
    assert "train_loss" in row


def test_history_records_every_loss_term(fitted):
    est, X, _ = fitted
    row = est.history_[-1]
    terms = [k for k in row if k.startswith("train_") and k not in ("train_loss", "train_batch_count", "train_batch_size")]
    assert terms, "each estimator must log its named loss terms"
    assert all(np.isfinite(row[k]) for k in terms)


def test_verbose_prints_progress(fitted, capsys):
    est, X, _ = fitted
    clone(est).set_params(verbose=1, max_epochs=1).fit(X)
    err = capsys.readouterr().err
    assert "epoch" in err and "loss" in err
