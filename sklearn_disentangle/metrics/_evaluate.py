"""Generator-form evaluation of all metrics on a ground-truth dataset."""

import copy

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ._sampling import GeneratorSampler
from ._validation import check_int
from .beta_vae import beta_vae_from_sampler
from .dci import dci
from .factor_vae import factor_vae_from_sampler, resolve_fvm_params
from .mfvm import mfvm_from_sampler, resolve_mfvm_params
from .mig import mig
from .sap import sap

__all__ = ["evaluate", "DLIB_DEFAULTS", "FAST_DEFAULTS"]

METRICS = ("mig", "sap", "dci", "factor_vae", "beta_vae", "mfvm")

#: Sizes of disentanglement_lib's reference study (unsupervised_study_v1 gin configs).
DLIB_DEFAULTS = {
    "mig": {"n_train": 10000, "batch_size": 16, "n_bins": 20},
    "sap": {"n_train": 10000, "n_test": 5000, "batch_size": 16, "continuous_factors": False},
    "dci": {"n_train": 10000, "n_test": 5000, "batch_size": 16, "importance": "gbt"},
    "factor_vae": {
        "batch_size": 64, "n_train": 10000, "n_eval": 5000,
        "n_variance_estimate": 10000, "threshold": 0.05, "cfasl_compat": False,
    },
    "beta_vae": {"batch_size": 64, "n_train": 10000, "n_eval": 5000},
    "mfvm": {
        "n_fixed": None, "batch_size": 64, "n_train": 10000, "n_eval": 5000,
        "n_variance_estimate": 10000, "threshold": 0.05, "cfasl_compat": False,
    },
}

#: Smaller default sizes of :func:`evaluate` (same protocol, fewer samples / votes).
FAST_DEFAULTS = copy.deepcopy(DLIB_DEFAULTS)
FAST_DEFAULTS["dci"].update(n_train=2000, n_test=1000)
for _name in ("factor_vae", "beta_vae", "mfvm"):
    FAST_DEFAULTS[_name].update(n_train=1000, n_eval=500)


def _resolve_params(metrics, dlib_defaults, metric_params):
    base = DLIB_DEFAULTS if dlib_defaults else FAST_DEFAULTS
    metric_params = {} if metric_params is None else metric_params
    if not isinstance(metric_params, dict):
        raise TypeError(
            "metric_params must be a dict mapping metric names to dicts of arguments, e.g. "
            "{'dci': {'importance': 'lasso'}}."
        )
    unknown = set(metric_params) - set(METRICS)
    if unknown:
        raise ValueError(f"metric_params has unknown metric(s) {sorted(unknown)}; valid: {list(METRICS)}.")
    resolved = {}
    for name in metrics:
        params = dict(base[name])
        extra = dict(metric_params.get(name, {}))
        if name == "dci":
            allowed = set(params) | {"estimator_params", "n_jobs"}
        elif name == "sap":
            allowed = set(params) | {"n_jobs"}
        else:
            allowed = set(params)
        bad = set(extra) - allowed
        if bad:
            raise ValueError(
                f"metric_params[{name!r}] has unknown key(s) {sorted(bad)}; valid keys: {sorted(allowed)}."
            )
        if extra.get("cfasl_compat"):
            # CFASL's protocol: sizes not given explicitly come from its preset
            for key in ("batch_size", "n_train", "n_eval", "n_variance_estimate", "threshold"):
                params[key] = None
        params.update(extra)
        resolved[name] = params
    return resolved


def _check_inputs(estimator, dataset, metrics):
    if not hasattr(estimator, "transform"):
        raise TypeError(
            f"estimator must have a transform method returning codes, got {type(estimator).__name__}; "
            "fit a transformer first, or wrap your encoder in metrics.TransformAdapter."
        )
    for attr in ("sample_factors", "sample_observations_from_factors", "sample", "n_factors"):
        if not hasattr(dataset, attr):
            raise TypeError(
                f"dataset must be a GroundTruthDataset (missing {attr!r}), got {type(dataset).__name__}; "
                "use sklearn_disentangle.datasets or subclass GroundTruthDataset."
            )
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(METRICS)}.")
    return metrics


def evaluate(
    estimator,
    dataset,
    metrics=METRICS,
    *,
    random_state=0,
    dlib_defaults=False,
    metric_params=None,
    encode_batch_size=256,
):
    """Score a fitted encoder on a ground-truth dataset with every metric (generator form).

    Observations are sampled from ``dataset`` exactly as disentanglement_lib samples them
    and encoded with ``estimator.transform`` (in batches of ``encode_batch_size``):

    - MIG, SAP, DCI: ``generate_batch_factor_code`` -- ``dataset.sample`` in chunks of
      ``batch_size=16``, first the training pool, then the test pool, from one stream;
    - FactorVAE score: ``dataset.sample_observations(n_variance_estimate)`` for the
      variances, then per vote ``randint(n_factors)``, ``sample_factors(batch_size)`` with
      the chosen column set to the first row's value, ``sample_observations_from_factors``;
      training votes, then evaluation votes;
    - beta-VAE score: per point ``randint(n_factors)``, two factor batches (the chosen
      column copied), both observation batches; training points, the classifier, then
      evaluation points;
    - mFVM_k: as the FactorVAE score with a sorted random ``k``-subset of factors fixed.

    As in disentanglement_lib, where every metric is a separate evaluation seeded with
    ``evaluation.random_seed = 0``, an int ``random_state`` gives every metric a fresh
    ``RandomState(random_state)``: MIG, SAP and DCI then see the same training pool (it is
    sampled and encoded once and shared). A ``RandomState`` instance is instead used
    sequentially across the metrics. The SAP and DCI classifiers are seeded with 0 (the
    reference leaves them unseeded).

    Parameters
    ----------
    estimator : object with ``transform``
        Fitted encoder; ``transform(observations)`` returns codes (n, n_codes) (posterior
        means, as the reference study).
    dataset : GroundTruthDataset
        Dataset to sample from (see :class:`~sklearn_disentangle.datasets.GroundTruthDataset`).
    metrics : sequence of str, default=("mig", "sap", "dci", "factor_vae", "beta_vae", "mfvm")
        Metrics to compute.
    random_state : int or RandomState, default=0
        Seed (the reference's ``evaluation.random_seed`` is 0).
    dlib_defaults : bool, default=False
        Use the reference study's sizes (:data:`DLIB_DEFAULTS`: pools 10 000 / 5 000;
        FactorVAE, beta-VAE and mFVM 10 000 / 5 000 votes of 64, i.e. ~1-2 million
        encoded images). The default (:data:`FAST_DEFAULTS`) keeps the protocol and the
        MIG/SAP pools (10 000 / 5 000) but uses DCI pools of 2 000 / 1 000 and 1 000 / 500
        votes for FactorVAE, beta-VAE and mFVM.
    metric_params : dict, default=None
        Per-metric overrides, e.g. ``{"dci": {"importance": "lasso"}, "mfvm": {"n_fixed":
        [2, 3]}}``. Keys per metric: the preset's keys (``n_train``, ``n_test``,
        ``batch_size``, ``n_bins``, ``continuous_factors``, ``importance``, ``n_eval``,
        ``n_variance_estimate``, ``threshold``, ``n_fixed``, ``cfasl_compat`` -- with
        ``cfasl_compat=True`` the FactorVAE / mFVM sizes not given explicitly follow
        CFASL's protocol), plus
        ``estimator_params``/``n_jobs`` for DCI and ``n_jobs`` for SAP. mFVM's ``n_fixed``
        (int or list) defaults to ``2 .. n_factors - 1`` as in the CFASL paper (1 for two
        factors).
    encode_batch_size : int, default=256
        Observations per ``transform`` call.

    Returns
    -------
    scores : pandas.DataFrame
        One row (indexed by the estimator's class name) with the columns ``mig``;
        ``sap``; ``dci_disentanglement``, ``dci_completeness``,
        ``dci_informativeness_train``, ``dci_informativeness_test``; ``factor_vae``,
        ``factor_vae_train``, ``factor_vae_n_active_dims``; ``beta_vae``,
        ``beta_vae_train``; ``mfvm_<k>`` per k -- for the requested metrics. The
        FactorVAE, beta-VAE and mFVM columns hold evaluation accuracies.

    References
    ----------
    Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of
    Disentangled Representations", ICML 2019. https://arxiv.org/abs/1811.12359

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from sklearn_disentangle.datasets import GroundTruthDataset
    >>> from sklearn_disentangle.metrics import evaluate
    >>> class Toy(GroundTruthDataset):          # the observation is the factor vector
    ...     factor_names, factor_sizes, observation_shape = ("a", "b", "c"), (4, 5, 3), (3,)
    ...     def sample_observations_from_factors(self, factors, random_state=None):
    ...         return np.asarray(factors, dtype=np.float32)
    >>> enc = FunctionTransformer().fit(np.zeros((1, 3)))
    >>> df = evaluate(enc, Toy(), metrics=("mig", "factor_vae"),
    ...               metric_params={"factor_vae": {"n_train": 200, "n_eval": 100}})
    >>> df[["mig", "factor_vae"]].round(2).to_numpy().tolist()
    [[1.0, 1.0]]
    """
    metrics = _check_inputs(estimator, dataset, metrics)
    params = _resolve_params(metrics, dlib_defaults, metric_params)
    encode_batch_size = check_int(encode_batch_size, "encode_batch_size", low=1)
    sampler = GeneratorSampler(estimator, dataset, encode_batch_size)
    fresh = not isinstance(random_state, np.random.RandomState)
    shared_rng = None if fresh else random_state
    if fresh and random_state is None:
        random_state = int(np.random.randint(np.iinfo(np.int32).max))

    def rng_for_metric():
        return check_random_state(random_state) if fresh else shared_rng

    # With a fresh RandomState(seed) per metric (as the reference), MIG, SAP and DCI draw
    # the same training pool; it is sampled and encoded once, and the generator state after
    # it is kept so that any test pool continues the same stream.
    pool_cache = {}

    def pools(n_train, n_test, batch_size):
        key = (n_train, batch_size)
        if not fresh or key not in pool_cache:
            rng = rng_for_metric()
            train = sampler.iid_pool(n_train, rng, batch_size)
            if not fresh:  # one shared stream: the test pool follows immediately
                test = sampler.iid_pool(n_test, rng, batch_size) if n_test else None
                return train, test
            pool_cache[key] = {"train": train, "state": rng.get_state(), "tests": {}}
        entry = pool_cache[key]
        if not n_test:
            return entry["train"], None
        if n_test not in entry["tests"]:
            rng = np.random.RandomState()
            rng.set_state(entry["state"])
            entry["tests"][n_test] = sampler.iid_pool(n_test, rng, batch_size)
        return entry["train"], entry["tests"][n_test]

    row = {}
    for name in metrics:
        p = dict(params[name])
        if name == "mig":
            (f, c), _ = pools(check_int(p["n_train"], "n_train"), 0, check_int(p["batch_size"], "batch_size"))
            row["mig"] = mig(f, c, n_bins=p["n_bins"])
        elif name in ("sap", "dci"):
            (f, c), (ft, ct) = pools(
                check_int(p.pop("n_train"), "n_train"),
                check_int(p.pop("n_test"), "n_test"),
                check_int(p.pop("batch_size"), "batch_size"),
            )
            if name == "sap":
                row["sap"] = sap(f, c, ft, ct, random_state=0, **p)
            else:
                res = dci(f, c, ft, ct, random_state=0, **p)
                for key in ("disentanglement", "completeness", "informativeness_train", "informativeness_test"):
                    row[f"dci_{key}"] = res[key]
        elif name == "factor_vae":
            sizes = resolve_fvm_params(p.pop("cfasl_compat"), **p)
            res = factor_vae_from_sampler(sampler, rng_for_metric(), **sizes)
            row["factor_vae"] = res["eval_accuracy"]
            row["factor_vae_train"] = res["train_accuracy"]
            row["factor_vae_n_active_dims"] = res["n_active_dims"]
        elif name == "beta_vae":
            res = beta_vae_from_sampler(
                sampler, rng_for_metric(), batch_size=check_int(p["batch_size"], "batch_size"),
                n_train=check_int(p["n_train"], "n_train", low=2), n_eval=check_int(p["n_eval"], "n_eval"),
            )
            row["beta_vae"] = res["eval_accuracy"]
            row["beta_vae_train"] = res["train_accuracy"]
        else:  # mfvm
            ks = p.pop("n_fixed")
            if ks is None:
                ks = list(range(2, dataset.n_factors)) or [1]
            ks = [ks] if np.isscalar(ks) else list(ks)
            cfasl_compat = p.pop("cfasl_compat")
            for k in ks:
                k, sizes = resolve_mfvm_params(dataset.n_factors, k, cfasl_compat, **p)
                res = mfvm_from_sampler(sampler, rng_for_metric(), n_fixed=k, **sizes)
                row[f"mfvm_{k}"] = res["eval_accuracy"]
    return pd.DataFrame([row], index=[type(estimator).__name__])
