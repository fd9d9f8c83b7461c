"""Scorers in GridSearchCV / cross_val_score / skorch EpochScoring."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from sklearn_disentangle.metrics import (
    EpochScorer,
    InterventionalScorer,
    TransformAdapter,
    factor_vae_score,
    get_scorer,
    get_scorer_names,
    mig,
    sap,
)

from .conftest import FactorDataset, LinearEncoder


@pytest.fixture
def xy(rng):
    data = FactorDataset((4, 5, 3), noise=0.05)
    factors, X = data.sample(900, rng)
    return X, factors


def test_scorer_names_and_copies():
    assert get_scorer_names() == ["beta_vae", "dci_disentanglement", "factor_vae", "mfvm", "mig", "sap"]
    a, b = get_scorer("mig"), get_scorer("mig")
    assert a is not b
    c = get_scorer("factor_vae", n_train=10)
    c.params["n_train"] = 99  # mutating one copy does not leak into the next
    assert get_scorer("factor_vae").params == {"random_state": 0}
    assert "mig" in repr(a) and "transform" in repr(a)
    with pytest.raises(ValueError, match="'accuracy' is not a disentanglement scorer; valid names"):
        get_scorer("accuracy")
    custom = get_scorer(a)  # a callable is returned as a copy
    assert custom is not a


def test_transform_scorers_value(xy):
    X, factors = xy
    enc = LinearEncoder(scale=2.0).fit(X)
    codes = enc.transform(X)
    assert get_scorer("mig")(enc, X, factors) == mig(factors, codes)
    assert get_scorer("sap")(enc, X, factors) == sap(factors, codes, random_state=0)
    s = get_scorer("sap", continuous_factors=True)(enc, X, factors)
    assert s == sap(factors, codes, continuous_factors=True)
    fvm = get_scorer("factor_vae", n_train=300, n_eval=200)(enc, X, factors)
    assert fvm == factor_vae_score(factors, codes, n_train=300, n_eval=200, random_state=0) == 1.0


def test_gridsearch_transform_called_once_per_fold(xy):
    X, factors = xy
    grid = {"mix": [0.0, 0.7]}
    scoring = {
        "mig": get_scorer("mig"),
        "sap": get_scorer("sap"),
        "dci": get_scorer("dci_disentanglement", importance="lasso"),
    }
    search = GridSearchCV(LinearEncoder(), grid, scoring=scoring, refit="mig", cv=KFold(3)).fit(X, factors)
    # 2 candidates x 3 folds, one transform call each for all three metrics
    assert len(LinearEncoder.calls) == 6
    assert search.best_params_ == {"mix": 0.0}
    res = search.cv_results_
    assert res["mean_test_mig"][0] > 0.9 > res["mean_test_mig"][1]
    assert set(res) >= {"mean_test_sap", "mean_test_dci", "rank_test_mig"}


def test_gridsearch_with_interventional_scorers(xy):
    X, factors = xy
    scoring = {
        "mig": get_scorer("mig"),
        "fvm": get_scorer("factor_vae", n_train=200, n_eval=100),
        "mfvm": get_scorer("mfvm", n_train=200, n_eval=100),
        "beta_vae": get_scorer("beta_vae", n_train=200, n_eval=100),
    }
    search = GridSearchCV(LinearEncoder(), {"mix": [0.0, 0.9]}, scoring=scoring, refit="fvm", cv=3).fit(X, factors)
    assert search.best_params_ == {"mix": 0.0}
    assert search.cv_results_["mean_test_fvm"][0] == 1.0
    assert search.cv_results_["mean_test_mfvm"][0] == 1.0


def test_cross_val_score_deterministic(xy):
    X, factors = xy
    enc = LinearEncoder(mix=0.3)
    scorer = get_scorer("factor_vae", n_train=200, n_eval=100)
    a = cross_val_score(enc, X + 0.5 * np.random.RandomState(1).normal(size=X.shape), factors, scoring=scorer, cv=3)
    b = cross_val_score(enc, X + 0.5 * np.random.RandomState(1).normal(size=X.shape), factors, scoring=scorer, cv=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3,) and ((0 <= a) & (a <= 1)).all()


def test_interventional_scorer_with_dataset():
    data = FactorDataset((4, 5, 3), noise=0.05)
    enc = LinearEncoder().fit(np.zeros((1, 3)))
    scorer = InterventionalScorer("factor_vae", dataset=data, n_train=50, n_eval=30, n_variance_estimate=500)
    assert scorer(enc, None, None) == 1.0  # X and y are ignored in the generator form
    assert InterventionalScorer("mfvm", dataset=data, n_train=30, n_eval=20, n_variance_estimate=300)(enc, None) == 1.0
    assert InterventionalScorer("beta_vae", dataset=data, n_train=40, n_eval=20, batch_size=8)(enc, None) == 1.0
    assert "dataset=FactorDataset" in repr(scorer)
    with pytest.raises(ValueError, match="needs the factor matrix as y"):
        InterventionalScorer("mfvm")(enc, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="metric must be one of"):
        InterventionalScorer("mig")


class _NotAnEstimator:
    """Exposes an encoder but is not a scikit-learn estimator (no __sklearn_tags__)."""

    def __init__(self):
        self.calls = 0

    def encode(self, X):
        self.calls += 1
        return np.asarray(X, dtype=float) * 3.0

    transform = encode


def test_adapters_for_non_sklearn_objects(xy):
    X, factors = xy
    obj = _NotAnEstimator()
    expected = mig(factors, X * 3.0)
    assert get_scorer("mig")(TransformAdapter(obj), X, factors) == expected
    assert get_scorer("mig")(TransformAdapter(obj, "encode"), X, factors) == expected
    assert get_scorer("mig")(TransformAdapter(obj, lambda o, X: o.encode(X)), X, factors) == expected
    epoch = EpochScorer("mig", method="encode")
    assert epoch.__name__ == "mig" and epoch(obj, X, factors) == expected
    assert EpochScorer(get_scorer("factor_vae", n_train=100, n_eval=50)).__name__ == "factor_vae"
    # interventional scorers need only a transform method
    assert get_scorer("factor_vae", n_train=100, n_eval=50)(obj, X, factors) == 1.0


def test_skorch_epoch_scoring_logs_metric(xy):
    torch = pytest.importorskip("torch")
    skorch = pytest.importorskip("skorch")
    from skorch.callbacks import EpochScoring
    from skorch.dataset import ValidSplit

    X, factors = xy

    class EncoderNet(skorch.NeuralNet):
        def get_loss(self, y_pred, y_true, X=None, training=False):
            return (y_pred - X[:, [2, 0, 1, 0]]).pow(2).mean()

        def transform(self, X):
            return self.forward(X).numpy()

    net = EncoderNet(
        torch.nn.Linear(3, 4),
        criterion=torch.nn.MSELoss,
        max_epochs=2,
        lr=0.05,
        batch_size=128,
        train_split=ValidSplit(3, stratified=False),
        callbacks=[EpochScoring(EpochScorer("mig"), lower_is_better=False, use_caching=False)],
    )
    net.fit(X.astype(np.float32), factors)
    scores = net.history[:, "mig"]
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)


def test_gridsearch_over_cfasl_beta_on_sprites():
    from sklearn_disentangle import CFASLVAE
    from sklearn_disentangle.datasets import make_dsprites_like

    data = make_dsprites_like(resolution=16, n_scales=2, n_orientations=2, n_positions=4)
    X, factors = data.images, data.factors  # 192 sprites, 5 factors
    scoring = {
        "mig": get_scorer("mig"),
        "dci": get_scorer("dci_disentanglement", importance="lasso"),
        "fvm": get_scorer("factor_vae", n_train=100, n_eval=50, threshold=0.0),
    }
    est = CFASLVAE(z_dim=4, max_epochs=1, batch_size=64, random_state=0)
    cv = KFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(est, {"beta": [1.0, 4.0]}, scoring=scoring, refit="mig", cv=cv)
    search.fit(X, factors)
    res = search.cv_results_
    for name in ("mig", "dci", "fvm"):
        assert np.all(np.isfinite(res[f"mean_test_{name}"]))
        assert np.all((res[f"mean_test_{name}"] >= 0) & (res[f"mean_test_{name}"] <= 1))
    assert search.best_params_["beta"] in (1.0, 4.0)
    assert search.best_estimator_.transform(X[:3]).shape == (3, 4)
