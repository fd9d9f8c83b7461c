"""evaluate(): generator form sampled exactly as disentanglement_lib samples."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from sklearn_disentangle.metrics import evaluate, mig, sap
from sklearn_disentangle.metrics._evaluate import DLIB_DEFAULTS, FAST_DEFAULTS

from .conftest import FactorDataset, LinearEncoder

W = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


@pytest.fixture
def data():
    return FactorDataset((4, 5, 3), noise=0.2)


@pytest.fixture
def encoder():
    return LinearEncoder(weights=W).fit(np.zeros((1, 3)))


# --- literal transcriptions of disentanglement_lib's sampling loops (one RandomState) ---


def _dlib_generate_batch_factor_code(data, rep, n, rs, batch_size):
    codes, factors, i = [], [], 0
    while i < n:
        m = min(n - i, batch_size)
        f, obs = data.sample(m, rs)
        codes.append(rep(obs))
        factors.append(f)
        i += m
    return np.concatenate(factors), np.concatenate(codes)


def _dlib_factor_vae(data, rep, rs, batch_size, n_train, n_eval, n_var, threshold):
    obs = data.sample_observations(n_var, rs)
    global_var = np.var(rep(obs), axis=0, ddof=1)
    active = np.sqrt(global_var) >= threshold

    def votes(n):
        v = np.zeros((data.n_factors, global_var.size), dtype=np.int64)
        for _ in range(n):
            k = rs.randint(data.n_factors)
            f = data.sample_factors(batch_size, rs)
            f[:, k] = f[0, k]
            local = np.var(rep(data.sample_observations_from_factors(f, rs)), axis=0, ddof=1)
            v[k, np.argmin(local[active] / global_var[active])] += 1
        return v

    train = votes(n_train)
    clf = np.argmax(train, axis=0)
    ev = votes(n_eval)
    cols = np.arange(train.shape[1])
    return train[clf, cols].sum() / train.sum(), ev[clf, cols].sum() / ev.sum()


def _dlib_beta_vae(data, rep, rs, batch_size, n_train, n_eval):
    def points(n):
        x, y = [], []
        for _ in range(n):
            k = rs.randint(data.n_factors)
            f1 = data.sample_factors(batch_size, rs)
            f2 = data.sample_factors(batch_size, rs)
            f2[:, k] = f1[:, k]
            o1 = data.sample_observations_from_factors(f1, rs)
            o2 = data.sample_observations_from_factors(f2, rs)
            x.append(np.mean(np.abs(rep(o1) - rep(o2)), axis=0))
            y.append(k)
        return np.array(x), np.array(y)

    xt, yt = points(n_train)
    model = LogisticRegression(random_state=rs).fit(xt, yt)
    xe, ye = points(n_eval)
    return model.score(xt, yt), model.score(xe, ye)


def _rep(encoder):
    return lambda obs: np.asarray(encoder.transform(obs), dtype=np.float64)


def test_mig_sap_pools_sampled_as_reference(data, encoder):
    params = {"mig": {"n_train": 500}, "sap": {"n_train": 500, "n_test": 250}}
    df = evaluate(encoder, data, metrics=("mig", "sap"), metric_params=params)
    assert sum(LinearEncoder.calls) == 500 + 250  # the shared training pool is encoded once
    f, c = _dlib_generate_batch_factor_code(data, _rep(encoder), 500, np.random.RandomState(0), 16)
    assert df.loc["LinearEncoder", "mig"] == mig(f, c)
    rs = np.random.RandomState(0)
    f, c = _dlib_generate_batch_factor_code(data, _rep(encoder), 500, rs, 16)
    ft, ct = _dlib_generate_batch_factor_code(data, _rep(encoder), 250, rs, 16)
    assert df.loc["LinearEncoder", "sap"] == sap(f, c, ft, ct)


def test_factor_vae_sampled_as_reference(data, encoder):
    p = {"batch_size": 16, "n_train": 60, "n_eval": 40, "n_variance_estimate": 400, "threshold": 0.05}
    df = evaluate(encoder, data, metrics=("factor_vae",), metric_params={"factor_vae": p}, random_state=3)
    train, ev = _dlib_factor_vae(data, _rep(encoder), np.random.RandomState(3), 16, 60, 40, 400, 0.05)
    assert df["factor_vae_train"].iloc[0] == train
    assert df["factor_vae"].iloc[0] == ev
    assert df["factor_vae_n_active_dims"].iloc[0] == 3  # the constant 4th code is pruned


def test_beta_vae_sampled_as_reference(data, encoder):
    p = {"batch_size": 8, "n_train": 60, "n_eval": 30}
    df = evaluate(encoder, data, metrics=("beta_vae",), metric_params={"beta_vae": p}, random_state=1)
    train, ev = _dlib_beta_vae(data, _rep(encoder), np.random.RandomState(1), 8, 60, 30)
    assert df["beta_vae_train"].iloc[0] == pytest.approx(train, abs=1e-12)
    assert df["beta_vae"].iloc[0] == pytest.approx(ev, abs=1e-12)


def test_mfvm_generator_form(data, encoder):
    p = {"n_fixed": [1, 2], "n_train": 40, "n_eval": 20, "n_variance_estimate": 300, "batch_size": 16}
    df = evaluate(encoder, data, metrics=("mfvm",), metric_params={"mfvm": p})
    assert list(df.columns) == ["mfvm_1", "mfvm_2"]
    assert (df.to_numpy() == 1.0).all()
    # default k = 2 .. n_factors - 1 (CFASL paper)
    df = evaluate(encoder, data, metrics="mfvm", metric_params={"mfvm": {**p, "n_fixed": None}})
    assert list(df.columns) == ["mfvm_2"]


def test_evaluate_all_metrics_one_row(data, encoder):
    small = {
        "mig": {"n_train": 400},
        "sap": {"n_train": 400, "n_test": 200},
        "dci": {"n_train": 400, "n_test": 200, "importance": "lasso"},
        "factor_vae": {"n_train": 30, "n_eval": 20, "n_variance_estimate": 300, "batch_size": 16},
        "beta_vae": {"n_train": 40, "n_eval": 20, "batch_size": 8},
        "mfvm": {"n_train": 30, "n_eval": 20, "n_variance_estimate": 300, "batch_size": 16},
    }
    df = evaluate(encoder, data, metric_params=small, encode_batch_size=128)
    assert isinstance(df, pd.DataFrame) and df.shape[0] == 1
    assert list(df.columns) == [
        "mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness_train",
        "dci_informativeness_test", "factor_vae", "factor_vae_train", "factor_vae_n_active_dims",
        "beta_vae", "beta_vae_train", "mfvm_2",
    ]
    assert df["mig"].iloc[0] > 0.8 and df["factor_vae"].iloc[0] == 1.0
    assert df["dci_disentanglement"].iloc[0] > 0.9
    assert max(LinearEncoder.calls) <= 128  # encoded in batches
    # the MIG/SAP/DCI training pool is sampled and encoded once and shared (fresh seed per metric)
    again = evaluate(encoder, data, metrics=("sap", "mig"), metric_params=small)
    assert again["mig"].iloc[0] == df["mig"].iloc[0] and again["sap"].iloc[0] == df["sap"].iloc[0]


def test_evaluate_random_state_semantics(data, encoder):
    p = {"mig": {"n_train": 300}}
    a = evaluate(encoder, data, metrics=("mig",), metric_params=p, random_state=0)
    b = evaluate(encoder, data, metrics=("mig",), metric_params=p, random_state=0)
    assert a.equals(b)
    rs = np.random.RandomState(0)
    f, c = _dlib_generate_batch_factor_code(data, _rep(encoder), 300, rs, 16)
    # a RandomState instance is consumed sequentially across metrics
    rs2 = np.random.RandomState(0)
    df = evaluate(encoder, data, metrics=("mig", "sap"), random_state=rs2,
                  metric_params={**p, "sap": {"n_train": 300, "n_test": 150}})
    fs, cs = _dlib_generate_batch_factor_code(data, _rep(encoder), 300, rs, 16)
    fts, cts = _dlib_generate_batch_factor_code(data, _rep(encoder), 150, rs, 16)
    assert df["mig"].iloc[0] == mig(f, c) and df["sap"].iloc[0] == sap(fs, cs, fts, cts)


def test_cfasl_compat_in_evaluate(data, encoder):
    df = evaluate(encoder, data, metrics=("factor_vae", "mfvm"),
                  metric_params={"factor_vae": {"cfasl_compat": True}, "mfvm": {"cfasl_compat": True}})
    # CFASL: 800 votes, accuracy on the same votes -> train == reported score
    assert df["factor_vae"].iloc[0] == df["factor_vae_train"].iloc[0] == 1.0
    assert df["mfvm_2"].iloc[0] == 1.0


def test_presets():
    assert DLIB_DEFAULTS["factor_vae"] == {
        "batch_size": 64, "n_train": 10000, "n_eval": 5000, "n_variance_estimate": 10000, "threshold": 0.05,
        "cfasl_compat": False,
    }
    assert DLIB_DEFAULTS["mig"]["n_train"] == 10000 and DLIB_DEFAULTS["mig"]["batch_size"] == 16
    assert DLIB_DEFAULTS["sap"]["n_test"] == DLIB_DEFAULTS["dci"]["n_test"] == 5000
    assert FAST_DEFAULTS["beta_vae"]["n_train"] == 1000 and FAST_DEFAULTS["dci"]["n_train"] == 2000


def test_evaluate_errors(data, encoder):
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(encoder, data, metrics=("mig", "modularity"))
    with pytest.raises(TypeError, match="must have a transform method"):
        evaluate(object(), data)
    with pytest.raises(TypeError, match="must be a GroundTruthDataset"):
        evaluate(encoder, np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"metric_params\['mig'\] has unknown key"):
        evaluate(encoder, data, metrics=("mig",), metric_params={"mig": {"n_bin": 3}})
    with pytest.raises(ValueError, match="metric_params has unknown metric"):
        evaluate(encoder, data, metrics=("mig",), metric_params={"migg": {}})

    class BadEncoder(LinearEncoder):
        def transform(self, X):
            return np.full((len(X), 2), np.nan)

    with pytest.raises(ValueError, match="NaN or infinite codes"):
        evaluate(BadEncoder(), data, metrics=("mig",), metric_params={"mig": {"n_train": 20}})
