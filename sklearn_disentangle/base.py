"""``LatentTransformer``: the scikit-learn base class all five estimators share.

It holds everything that is the same for every method (DESIGN.md, "The estimator
contract"): parameter validation, input validation and the image-shape contract, device
and seeding, building and training the shared skorch net
(:class:`~sklearn_disentangle.training.DisentangleNet`), ``fit`` / ``partial_fit`` /
``transform`` / ``inverse_transform`` / ``score``, feature names and pandas output,
checkpoints and warm starts. A method subclass adds its parameters and one hook,
``_build_module(input_shape)``.
"""

import copy
import os
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from skorch.callbacks import Checkpoint, GradientNormClipping
from skorch.dataset import Dataset
from skorch.helper import predefined_split

from ._validation import Interval, validate_params
from .training import DisentangleNet, NaNGuard, NonFiniteLossError, ProgressBar, as_batch_source, to_batch_tensor

__all__ = ["LatentTransformer", "all_estimators"]

_REGISTRY = {}
_DEVICE_HELP = "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:<index>' or 'mps'"


def all_estimators():
    """Every concrete estimator of the library, as sorted ``(name, class)`` pairs.

    Estimators join by subclassing :class:`LatentTransformer`; the shared contract tests
    run over this list.

    Examples
    --------
    >>> from sklearn_disentangle import all_estimators
    >>> "CFASLVAE" in dict(all_estimators())
    True
    """
    return sorted(_REGISTRY.items())


class _RegisteringMeta(ABCMeta):
    def __init__(cls, name, bases, namespace, **kwargs):
        super().__init__(name, bases, namespace, **kwargs)
        if not name.startswith("_") and not getattr(cls, "__abstractmethods__", None) and bases != (object,):
            if any(isinstance(b, _RegisteringMeta) for b in bases):
                _REGISTRY[name] = cls


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``, with a clear error.

    Examples
    --------
    >>> from sklearn_disentangle.base import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device ({_DEVICE_HELP}), got {device!r}.")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"Unknown device {device!r}; use {_DEVICE_HELP}.") from exc
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unknown device {device!r}; use {_DEVICE_HELP}.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine; "
                         "use device='auto' or 'cpu'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present.")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} was requested but MPS is not available; use 'auto' or 'cpu'.")
    return dev


class LatentTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator,
                        metaclass=_RegisteringMeta):
    """Base class of the library's estimators: a torch model trained through skorch.

    Not used directly; subclasses (:class:`~sklearn_disentangle.CFASLVAE`, ...) define
    ``__init__`` with the shared parameters below plus their own, and
    ``_build_module(input_shape)`` returning a
    :class:`~sklearn_disentangle.nn.LatentModule`.

    Shared parameters
    -----------------
    z_dim : int
        Dimension of the latent code returned by ``transform`` (scikit-learn calls this
        ``n_components``).
    max_epochs : int
        Passes over the data per ``fit``.
    batch_size : int
        Mini-batch size (a smaller data set is trained as one batch).
    lr : float
        Learning rate (Adam unless the method says otherwise).
    device : str or torch.device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    random_state : int, RandomState instance or None
        Seeds weight initialisation, shuffling, sampling and the validation split. The same
        value on CPU gives bitwise-identical latents.
    verbose : int
        0 silent, 1 progress bars (epochs, batches, loss terms), 2 also skorch's table.
    callbacks : list of skorch callbacks or (name, callback) tuples, or None
        Extra callbacks (e.g. :class:`~sklearn_disentangle.training.ParamSchedule`).
    validation_fraction : float
        Fraction of X held out to report ``valid_*`` terms each epoch; 0 (default) trains
        on everything, so nothing is silently held out inside a grid search.
    checkpoint_dir : str, path-like or None
        Directory where parameters, optimiser state and history are saved after every
        epoch; ``fit`` with ``warm_start=True`` resumes from it.
    warm_start : bool
        If True, ``fit`` continues training the fitted model (or the checkpoint in
        ``checkpoint_dir``) for ``max_epochs`` more epochs instead of starting afresh.
    image_shape : tuple of int or None
        Shape of one image, ``(H, W)`` or ``(C, H, W)``, used to reshape flat
        ``(n_samples, n_features)`` input. Flat input without it trains an MLP model.

    Attributes
    ----------
    net_ : DisentangleNet
        The trained skorch net; ``net_.module_`` is the torch model.
    history_ : skorch.History
        Per-epoch records: ``train_loss`` and every named loss term (``train_recon``,
        ``train_kl`` ...), ``valid_*`` with a validation fraction, ``dur``.
    image_shape_ : tuple of int
        Trailing shape of X at fit (``(H, W)``, ``(C, H, W)`` or ``(n_features,)``); X
        passed to ``transform``/``score`` must have exactly this shape.
    input_shape_ : tuple of int
        Shape of one sample as the model sees it (channels first).
    n_features_in_ : int
        Number of values per sample (product of ``image_shape_``).
    feature_names_in_ : ndarray of str
        Column names, when X was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE, LatentTransformer
    >>> issubclass(CFASLVAE, LatentTransformer)
    True
    >>> shared = ["z_dim", "max_epochs", "batch_size", "lr", "device", "random_state"]
    >>> all(name in CFASLVAE().get_params() for name in shared)
    True
    """

    #: Number of spatial dimensions of image input (2: images; 3: volumes). A subclass whose
    #: dimensionality depends on a parameter overrides it with a property.
    _spatial_dims = 2

    #: scikit-learn checks that cannot apply to this estimator: {check name: reason}. Read by
    #: the shared contract test (tests/test_common.py); keep the reason next to the code it explains.
    _expected_failed_checks = {}

    _parameter_constraints = {
        "z_dim": [Interval(Integral, 1, None)],
        "max_epochs": [Interval(Integral, 1, None)],
        "batch_size": [Interval(Integral, 1, None)],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": [Interval(Integral, 0, None), "boolean"],
        "callbacks": [list, None],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "checkpoint_dir": [str, os.PathLike, None],
        "warm_start": ["boolean"],
        "image_shape": [tuple, list, None],
    }

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _build_module(self, input_shape):
        """Return the method's :class:`~sklearn_disentangle.nn.LatentModule` for one sample's shape."""

    def _extra_callbacks(self):
        """Method-specific callbacks (schedules, clipping); a list of (name, callback)."""
        return []

    def _check_method_params(self, X):
        """Method-specific checks of parameters against the data (called by fit)."""

    @classmethod
    def _tiny_params(cls):
        """Small, fast parameters for the shared contract tests (overridable)."""
        return {"z_dim": 2, "max_epochs": 2, "batch_size": 16, "lr": 1e-3, "random_state": 0}

    @classmethod
    def _tiny_data(cls, n_samples=48, random_state=0):
        """Small training data ``(X, factors)`` for the shared contract tests (overridable).

        Default: 16 x 16 dSprites-like images and their factors.
        """
        from .datasets import make_dsprites_like

        factors, X = make_dsprites_like(resolution=16).sample(n_samples, random_state=random_state)
        return X, factors

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Train the model on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, H, W), (n_samples, C, H, W) or (n_samples, n_features)
            Training data (float, int or bool; converted to float32).
        y : None
            Ignored; present so the estimator fits in a ``Pipeline``. Metrics scorers pass
            the ground-truth factors here.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        validate_params(self)
        if self.warm_start and self.__sklearn_is_fitted__():
            return self._continue(X, self.max_epochs)
        return self._fit_new(X, self.max_epochs, resume=self.warm_start)

    def partial_fit(self, X, y=None):
        """Train one more epoch on X (initialising the model on the first call).

        Parameters
        ----------
        X : array-like
            Data with the same per-sample shape as at the first call.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        if not self.__sklearn_is_fitted__():
            validate_params(self)
            return self._fit_new(X, 1, resume=False)
        return self._continue(X, 1)

    def _fit_new(self, X, epochs, resume):
        device = resolve_device(self.device)
        Xv = self._validate_input(X, reset=True)
        self._check_method_params(Xv)
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with self._rng(self._seed, device, fresh=True):
            net = self._make_net(self._build_module(self.input_shape_), device)
            net.initialize()
            if resume and self.checkpoint_dir is not None:
                self._load_checkpoint(net)
            self._train(net, Xv, epochs)
        return self

    def _continue(self, X, epochs):
        Xv = self._validate_input(X, reset=False)
        with self._rng(None, self.net_.device, fresh=False):
            self._train(self.net_, Xv, epochs)
        return self

    def _make_net(self, module, device):
        callbacks = [("nan_guard", NaNGuard())] + list(self._extra_callbacks())
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        for i, cb in enumerate(copy.deepcopy(self.callbacks) or []):
            callbacks.append(cb if isinstance(cb, tuple) else (f"user_{i}_{type(cb).__name__}", cb))
        if self.checkpoint_dir is not None:
            # last, so the saved history holds what every other callback recorded this epoch
            callbacks.append(("checkpoint", Checkpoint(
                dirname=os.fspath(self.checkpoint_dir), monitor=None, f_params="params.pt",
                f_optimizer="optimizer.pt", f_criterion=None, f_history="history.json")))
        return DisentangleNet(
            module=module, max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
            device=str(device), callbacks=callbacks, verbose=int(self.verbose >= 2),
        )

    def _load_checkpoint(self, net):
        params = os.path.join(os.fspath(self.checkpoint_dir), "params.pt")
        if not os.path.exists(params):
            return
        opt = os.path.join(os.fspath(self.checkpoint_dir), "optimizer.pt")
        hist = os.path.join(os.fspath(self.checkpoint_dir), "history.json")
        try:
            net.load_params(f_params=params, f_optimizer=opt if os.path.exists(opt) else None,
                            f_history=hist if os.path.exists(hist) else None)
        except RuntimeError as exc:
            raise ValueError(
                f"The checkpoint in {os.fspath(self.checkpoint_dir)!r} does not match this model "
                f"({type(self).__name__} on input shape {self.input_shape_}): {exc}. Use another "
                "checkpoint_dir or warm_start=False to start afresh."
            ) from exc

    def _train(self, net, X, epochs):
        X_train = X
        if self.validation_fraction > 0:
            rng = np.random.RandomState(self._seed)
            n_valid = int(round(self.validation_fraction * len(X)))
            if n_valid < 1 or n_valid >= len(X):
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves {len(X) - n_valid} training "
                    f"and {n_valid} validation samples out of {len(X)}; use a larger data set or 0."
                )
            perm = rng.permutation(len(X))
            X_train, X_valid = X[np.sort(perm[n_valid:])], X[np.sort(perm[:n_valid])]
            net.set_params(train_split=predefined_split(Dataset(as_batch_source(X_valid), None)))
        net._epochs_this_call = epochs
        try:
            net.partial_fit(as_batch_source(X_train), epochs=epochs)
        except NonFiniteLossError:
            self._set_fitted(net)
            raise
        self._set_fitted(net)

    def _set_fitted(self, net):
        self.net_ = net
        self.history_ = net.history
        self._rng_state = torch.get_rng_state()

    @contextmanager
    def _rng(self, seed, device, fresh):
        """Fork torch's global RNG so fitting never disturbs the user's random state.

        A fresh fit seeds the fork from ``random_state``; continued training restores the
        state where the previous call stopped, so fit + partial_fit is reproducible too.
        """
        device = torch.device(device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if fresh:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(self._rng_state)
                if devices:
                    torch.cuda.manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
            yield

    # ------------------------------------------------------------------ input
    def _validate_input(self, X, reset):
        """Validate X and return float32 of shape (n, *input_shape_)."""
        arr = X if hasattr(X, "iloc") or sp.issparse(X) else np.asarray(X)
        if hasattr(arr, "iloc") or sp.issparse(arr) or arr.ndim == 2:
            Xn = validate_data(self, arr, reset=reset, dtype=[np.float32, np.float64])
            if self.image_shape is not None:
                shape = tuple(int(s) for s in self.image_shape)
                if int(np.prod(shape)) != Xn.shape[1]:
                    raise ValueError(
                        f"image_shape={shape} has {int(np.prod(shape))} values but X has "
                        f"{Xn.shape[1]} features per sample; pass the right image_shape or X as images."
                    )
            trailing = (Xn.shape[1],)
        else:
            if arr.ndim < 2:
                raise ValueError(self._shape_help(
                    f"X of shape {arr.shape}. Reshape your data: X[None] for a single sample, "
                    "X.reshape(-1, 1) for a single feature"))
            if arr.ndim > self._spatial_dims + 2:
                raise ValueError(self._shape_help(f"X of shape {arr.shape}"))
            trailing = tuple(arr.shape[1:])
            if not reset and trailing != getattr(self, "image_shape_", trailing):
                raise self._shape_mismatch(trailing)
            flat = arr.reshape(arr.shape[0], int(np.prod(trailing)))
            Xn = validate_data(self, flat, reset=reset, dtype=[np.float32, np.float64]).reshape((-1,) + trailing)
        if reset:
            self.image_shape_ = trailing
            self.input_shape_ = self._module_shape(trailing)
        elif trailing != self.image_shape_:
            raise self._shape_mismatch(trailing)
        return np.ascontiguousarray(Xn, dtype=np.float32).reshape((len(Xn),) + self.input_shape_)

    def _shape_mismatch(self, trailing):
        return ValueError(
            f"X has per-sample shape {trailing} but this {type(self).__name__} was fitted on "
            f"shape {self.image_shape_}; resize or crop X to {self.image_shape_}."
        )

    def _module_shape(self, trailing):
        if len(trailing) == 1:
            if self.image_shape is not None:
                return self._module_shape(tuple(int(s) for s in self.image_shape))
            return trailing
        if len(trailing) == self._spatial_dims:
            return (1,) + trailing
        if len(trailing) == self._spatial_dims + 1:
            return trailing
        raise ValueError(self._shape_help(f"per-sample shape {trailing}"))

    def _shape_help(self, what):
        if self._spatial_dims == 2:
            forms = "(n_samples, H, W), (n_samples, C, H, W) or (n_samples, n_features)"
        else:
            forms = "(n_samples, D, H, W), (n_samples, C, D, H, W) or (n_samples, n_features)"
        return f"{type(self).__name__} expects X of shape {forms}; got {what}."

    # ------------------------------------------------------------------ inference
    @contextmanager
    def _eval_module(self):
        """The fitted module in eval mode without gradients (its training flag restored after)."""
        module = self.net_.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                yield module
        finally:
            module.train(was_training)

    def _map_batches(self, X, fn):
        """Apply ``fn`` to batches of X (numpy, model layout) in eval mode, without grad."""
        out = []
        with self._eval_module() as module:
            for start in range(0, len(X), self.batch_size):
                xb = to_batch_tensor(X[start:start + self.batch_size]).to(self.net_.device)
                out.append(fn(module, xb).detach().to("cpu", torch.float32).numpy())
        return np.concatenate(out, axis=0)

    def transform(self, X):
        """Encode X to its latent code (posterior means).

        Parameters
        ----------
        X : array-like with the per-sample shape seen at fit

        Returns
        -------
        Z : ndarray of shape (n_samples, z_dim), dtype float32
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        return self._map_batches(Xv, lambda m, xb: m.embed(xb))

    def inverse_transform(self, X):
        """Decode latent codes to data (the mean of the decoder's likelihood).

        Parameters
        ----------
        X : array-like of shape (n_samples, z_dim)
            Latent codes, e.g. from ``transform`` or a traversal.

        Returns
        -------
        X_original : ndarray of shape (n_samples, *image_shape_), dtype float32
        """
        Z = self._check_codes(X)
        out = self._map_batches(Z, lambda m, zb: m.decode(zb))
        return out.reshape((len(Z),) + tuple(self.image_shape_))

    def _check_codes(self, X):
        """Latent codes for ``inverse_transform``: a fitted model, ``z_dim`` columns; float32 C-contiguous."""
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float32, np.float64])
        if Z.shape[1] != self._n_features_out:
            raise ValueError(f"inverse_transform expects codes with {self._n_features_out} columns "
                             f"(z_dim), got {Z.shape[1]}.")
        return np.ascontiguousarray(Z, dtype=np.float32)

    def score(self, X, y=None):
        """Negative mean training objective on X (higher is better).

        Sampling inside the objective is seeded from ``random_state``, so the score of a
        fitted model on fixed X is reproducible.

        Parameters
        ----------
        X : array-like with the per-sample shape seen at fit
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        total, count = 0.0, 0
        with self._eval_module() as module, self._rng(self._seed, self.net_.device, fresh=True):
            for start in range(0, len(Xv), self.batch_size):
                xb = to_batch_tensor(Xv[start:start + self.batch_size]).to(self.net_.device)
                loss = module.loss(module(xb), xb)["loss"]
                total += float(loss) * len(xb)
                count += len(xb)
        return -total / count

    # ------------------------------------------------------------------ sklearn plumbing
    @property
    def _n_features_out(self):
        return self.z_dim

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.three_d_array = True
        return tags
