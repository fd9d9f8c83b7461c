"""scikit-learn scorers for the disentanglement metrics.

A scorer is called as ``scorer(estimator, X, y)`` where ``X`` are observations,
``estimator.transform(X)`` returns codes and ``y`` is the (n_samples, n_factors) factor
matrix, e.g. ``GridSearchCV(est, grid, scoring={"mig": get_scorer("mig")}).fit(X, factors)``.

- ``"mig"``, ``"sap"`` and ``"dci_disentanglement"`` are built with
  :func:`sklearn.metrics.make_scorer` and ``response_method=("transform",)`` (the plain
  string ``"transform"`` is rejected by sklearn), so with a dict of such scorers sklearn
  calls ``transform`` once per fold and shares the codes between the metrics.
- ``"factor_vae"``, ``"beta_vae"`` and ``"mfvm"`` need batches with factors held fixed and
  are :class:`InterventionalScorer` callables: they draw the batches from the fold's own
  labelled codes (pool form) or, given a ``dataset``, from a ground-truth dataset
  (generator form, ignoring ``X`` and ``y``).

All scorers are seeded (``random_state=0``) so that every candidate of a search is scored
on the same draws; pass another ``random_state`` to :func:`get_scorer` to change it.
"""

import copy

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.metrics import make_scorer
from sklearn.utils import check_random_state

from ._sampling import GeneratorSampler
from .beta_vae import beta_vae_from_sampler, beta_vae_score
from .dci import dci
from .factor_vae import factor_vae_from_sampler, factor_vae_score, resolve_fvm_params
from .mfvm import mfvm, mfvm_from_sampler, resolve_mfvm_params
from .mig import mig
from .sap import sap

__all__ = [
    "dci_disentanglement",
    "InterventionalScorer",
    "TransformAdapter",
    "EpochScorer",
    "get_scorer",
    "get_scorer_names",
]


def dci_disentanglement(factors, codes, **kwargs):
    """DCI disentanglement of codes (the ``"disentanglement"`` entry of :func:`dci`).

    Parameters
    ----------
    factors : array-like of shape (n_samples, n_factors)
        Discrete ground-truth factors.
    codes : array-like of shape (n_samples, n_codes)
        Codes of the same samples.
    **kwargs
        Passed to :func:`dci` (``importance``, ``train_fraction``, ``random_state``, ...).

    Returns
    -------
    score : float

    References
    ----------
    Eastwood, Williams, "A Framework for the Quantitative Evaluation of Disentangled
    Representations", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import dci_disentanglement
    >>> rng = np.random.RandomState(0)
    >>> f = rng.randint(0, 3, size=(300, 2))
    >>> round(dci_disentanglement(f, f[:, ::-1] * 1.0, random_state=0), 3)
    1.0
    """
    return dci(factors, codes, **kwargs)["disentanglement"]


_POOL_FUNCS = {"factor_vae": factor_vae_score, "beta_vae": beta_vae_score, "mfvm": mfvm}


class InterventionalScorer:
    """Scorer for the FactorVAE score, the beta-VAE score or mFVM.

    Called as ``scorer(estimator, X, y)``. Without a dataset it encodes ``X`` with
    ``estimator.transform`` and computes the metric in the pool form on the pair
    ``(y, codes)`` (:func:`factor_vae_score`, :func:`beta_vae_score`, :func:`mfvm`), so it
    works on any labelled data, e.g. the test fold of a cross-validation. With a
    ``dataset`` it samples fixed-factor batches from that
    :class:`~sklearn_disentangle.datasets.GroundTruthDataset` instead (generator form, as
    the reference; ``X`` and ``y`` are ignored).

    Parameters
    ----------
    metric : {"factor_vae", "beta_vae", "mfvm"}
        Which metric.
    dataset : GroundTruthDataset, default=None
        Sample from this dataset instead of using ``(X, y)``.
    encode_batch_size : int, default=256
        Observations per ``transform`` call in the generator form.
    **params
        Arguments of the metric function (``batch_size``, ``n_train``, ``n_eval``,
        ``random_state``, ``n_fixed`` and ``cfasl_compat`` for mFVM, ...). The pool-form
        defaults are the reference's (10 000 / 5 000 votes); ``random_state`` defaults to
        0 so that every estimator is scored on the same draws.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from sklearn_disentangle.metrics import InterventionalScorer
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 4, size=(1000, 3))
    >>> scorer = InterventionalScorer("factor_vae", n_train=200, n_eval=100)
    >>> scorer(FunctionTransformer().fit(factors), factors * 1.0, factors)
    1.0
    """

    def __init__(self, metric, *, dataset=None, encode_batch_size=256, **params):
        if metric not in _POOL_FUNCS:
            raise ValueError(f"metric must be one of {sorted(_POOL_FUNCS)}, got {metric!r}.")
        self.metric = metric
        self.dataset = dataset
        self.encode_batch_size = encode_batch_size
        self.params = {"random_state": 0, **params}

    @property
    def __name__(self):  # skorch's EpochScoring names a callback after its scorer
        return self.metric

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        extra = f", dataset={self.dataset!r}" if self.dataset is not None else ""
        return f"InterventionalScorer({self.metric!r}{extra}, {args})"

    def __call__(self, estimator, X, y=None):
        if self.dataset is None:
            if y is None:
                raise ValueError(
                    f"the {self.metric} scorer needs the factor matrix as y (pool form), "
                    "or a dataset to sample from: InterventionalScorer(metric, dataset=...)."
                )
            codes = np.asarray(estimator.transform(X))
            return _POOL_FUNCS[self.metric](y, codes, **self.params)
        return self._score_generator(estimator)

    def _score_generator(self, estimator):
        params = dict(self.params)
        rng = check_random_state(params.pop("random_state"))
        sampler = GeneratorSampler(estimator, self.dataset, self.encode_batch_size)
        sizes = {k: params.get(k) for k in ("batch_size", "n_train", "n_eval", "n_variance_estimate", "threshold")}
        if self.metric == "factor_vae":
            res = factor_vae_from_sampler(
                sampler, rng, **resolve_fvm_params(params.get("cfasl_compat", False), **sizes)
            )
        elif self.metric == "beta_vae":
            res = beta_vae_from_sampler(
                sampler, rng, batch_size=params.get("batch_size", 64),
                n_train=params.get("n_train", 10000), n_eval=params.get("n_eval", 5000),
            )
        else:
            n_fixed, sizes = resolve_mfvm_params(
                self.dataset.n_factors, params.get("n_fixed", 2), params.get("cfasl_compat", False), **sizes
            )
            res = mfvm_from_sampler(sampler, rng, n_fixed=n_fixed, **sizes)
        return res["eval_accuracy"]


class TransformAdapter(TransformerMixin, BaseEstimator):
    """Expose any object's encoder as a scikit-learn transformer for the scorers.

    sklearn's ``make_scorer`` scorers only accept scikit-learn estimators. Wrap an object
    that is not one (or whose codes come from another method) to score it.

    Parameters
    ----------
    estimator : object
        The object holding the encoder (e.g. a skorch net).
    method : str or callable, default="transform"
        Name of the method of ``estimator`` returning codes for ``X``, or a function
        ``method(estimator, X) -> codes``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import TransformAdapter, get_scorer
    >>> class Encoder:                      # not a scikit-learn estimator
    ...     def encode(self, X):
    ...         return np.asarray(X, dtype=float)
    >>> f = np.random.RandomState(0).randint(0, 5, size=(500, 2))
    >>> round(get_scorer("mig")(TransformAdapter(Encoder(), "encode"), f, f), 2)
    0.99
    """

    def __init__(self, estimator, method="transform"):
        self.estimator = estimator
        self.method = method

    def fit(self, X=None, y=None):
        """Do nothing (the wrapped encoder is already fitted); return self."""
        return self

    def transform(self, X):
        """Codes of X from the wrapped object."""
        if callable(self.method):
            return self.method(self.estimator, X)
        return getattr(self.estimator, self.method)(X)

    def __sklearn_is_fitted__(self):
        return True


class EpochScorer:
    """Adapt a scorer for skorch's ``EpochScoring`` (which calls ``scoring(net, X, y)``).

    ``EpochScoring`` passes the skorch net itself; this wraps it in a
    :class:`TransformAdapter` (codes from ``net.<method>(X)`` or ``method(net, X)``) before
    calling the scorer. Use it with ``use_caching=False`` (cached forward outputs are not
    codes) and ``lower_is_better=False``.

    Parameters
    ----------
    scorer : str or callable
        A scorer name of :func:`get_scorer_names` or a scorer ``(estimator, X, y)``.
    method : str or callable, default="transform"
        How to get codes from the net (see :class:`TransformAdapter`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.metrics import EpochScorer
    >>> class Net:
    ...     def encode(self, X):
    ...         return np.asarray(X, dtype=float)
    >>> f = np.random.RandomState(0).randint(0, 5, size=(500, 2))
    >>> score = EpochScorer("mig", method="encode")
    >>> score.__name__, round(score(Net(), f, f), 2)
    ('mig', 0.99)
    """

    def __init__(self, scorer, method="transform"):
        self.scorer = get_scorer(scorer) if isinstance(scorer, str) else scorer
        self.method = method
        self.__name__ = scorer if isinstance(scorer, str) else getattr(scorer, "__name__", "score")

    def __call__(self, net, X, y=None):
        return self.scorer(TransformAdapter(net, self.method), X, y)

    def __repr__(self):
        return f"EpochScorer({self.scorer!r}, method={self.method!r})"


def _transform_scorer(func, defaults):
    def build(**params):
        return make_scorer(func, response_method=("transform",), **{**defaults, **params})

    return build


def _interventional(metric):
    def build(**params):
        return InterventionalScorer(metric, **params)

    return build


_SCORERS = {
    "mig": _transform_scorer(mig, {}),
    "sap": _transform_scorer(sap, {"random_state": 0}),
    "dci_disentanglement": _transform_scorer(dci_disentanglement, {"random_state": 0}),
    "factor_vae": _interventional("factor_vae"),
    "beta_vae": _interventional("beta_vae"),
    "mfvm": _interventional("mfvm"),
}


def get_scorer_names():
    """Names accepted by :func:`get_scorer`.

    Returns
    -------
    names : list of str
        Sorted scorer names.

    Examples
    --------
    >>> from sklearn_disentangle.metrics import get_scorer_names
    >>> get_scorer_names()
    ['beta_vae', 'dci_disentanglement', 'factor_vae', 'mfvm', 'mig', 'sap']
    """
    return sorted(_SCORERS)


def get_scorer(name, **params):
    """A new scorer for a disentanglement metric.

    Each call builds a fresh object (so callers may modify it freely, as sklearn's
    ``get_scorer`` returns a copy). ``"mig"``, ``"sap"`` and ``"dci_disentanglement"`` are
    ``make_scorer(..., response_method=("transform",))`` scorers: in a dict of scorers
    sklearn calls ``transform`` once per fold for all of them. ``"factor_vae"``,
    ``"beta_vae"`` and ``"mfvm"`` are :class:`InterventionalScorer` objects (pool form on
    the scored fold; pass ``dataset=`` for the generator form).

    Parameters
    ----------
    name : str or callable
        One of :func:`get_scorer_names`. A callable is returned as a copy.
    **params
        Arguments of the metric (e.g. ``importance="lasso"`` for DCI, ``n_bins=30`` for MIG,
        ``n_fixed=3`` or ``cfasl_compat=True`` for mFVM, ``n_train=1000`` for the vote
        counts). Seeded metrics default to ``random_state=0``.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, higher is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn_disentangle.metrics import get_scorer
    >>> rng = np.random.RandomState(0)
    >>> factors = rng.randint(0, 5, size=(900, 2))
    >>> X = np.c_[factors, rng.normal(size=(900, 1)) * 0.01]
    >>> scores = cross_val_score(PCA(2), X, factors, scoring=get_scorer("mig"), cv=3)
    >>> scores.shape
    (3,)
    """
    if callable(name):
        return copy.deepcopy(name)
    if name not in _SCORERS:
        raise ValueError(
            f"{name!r} is not a disentanglement scorer; valid names: {get_scorer_names()} "
            "(scikit-learn's own scorers come from sklearn.metrics.get_scorer)."
        )
    return _SCORERS[name](**params)
