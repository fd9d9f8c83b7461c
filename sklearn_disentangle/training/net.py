"""The one skorch ``NeuralNet`` subclass that trains every method of the library.

The module owns its objective: ``module.loss(output, X) -> dict`` of named terms including
``"loss"``. The net sums nothing itself; it backpropagates ``terms["loss"]``, lets
callbacks inspect the terms (``on_loss_terms``, used by :class:`NaNGuard`), and records
the batch-size-weighted epoch mean of every term in the history as ``train_<term>`` /
``valid_<term>``.
"""

import torch
from skorch import NeuralNet
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from .callbacks import LossTermsLogger
from .data import TensorBatchLoader

__all__ = ["DisentangleNet", "NoCriterion"]

# Pickled in place of the ``module`` parameter when it is the trained instance itself.
_SAME_AS_MODULE_ = "__sklearn_disentangle_module_instance__"


class NoCriterion(torch.nn.Module):
    """Placeholder criterion: the module computes its own loss (skorch requires one)."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError("DisentangleNet computes the loss through module.loss(); the criterion is unused.")


class DisentangleNet(NeuralNet):
    """skorch ``NeuralNet`` whose loss is the module's own ``loss()`` dict.

    Defaults differ from skorch's on purpose: Adam, shuffled whole-batch slicing
    (:class:`~sklearn_disentangle.training.TensorBatchLoader`), no silent validation split,
    and the per-term logger. Users normally never build it: estimators do, in ``fit``.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Must expose ``forward(X) -> dict`` and ``loss(output, X) -> dict``.
    **kwargs
        Passed to :class:`skorch.NeuralNet`.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.training import DisentangleNet
    >>> class Tiny(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = torch.nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         return {"recon": self.lin(x)}
    ...     def loss(self, out, x):
    ...         mse = ((out["recon"] - x) ** 2).sum(1).mean()
    ...         return {"loss": mse, "mse": mse}
    >>> net = DisentangleNet(Tiny, max_epochs=2, verbose=0).fit(torch.randn(32, 2))
    >>> sorted(k for k in net.history[-1] if k.startswith("train_"))
    ['train_batch_count', 'train_loss', 'train_loss_best', 'train_mse']
    """

    def __init__(self, module, *args, criterion=NoCriterion, optimizer=torch.optim.Adam,
                 iterator_train=TensorBatchLoader, iterator_valid=TensorBatchLoader,
                 train_split=None, **kwargs):
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(
            module, *args, criterion=criterion, optimizer=optimizer,
            iterator_train=iterator_train, iterator_valid=iterator_valid,
            train_split=train_split, **kwargs,
        )

    @property
    def _default_callbacks(self):
        callbacks = list(super()._default_callbacks)
        # Before print_log, so the printed table and later callbacks see the terms.
        at = next((i for i, (name, _) in enumerate(callbacks) if name == "print_log"), len(callbacks))
        callbacks.insert(at, ("loss_terms", LossTermsLogger()))
        return callbacks

    def __getstate__(self):
        # Estimators pass an initialised module instance as ``module``, so ``module`` and
        # ``module_`` are the same object. skorch only routes attributes named ``module_``,
        # ``optimizer_`` ... through its map_location-aware unpickler; a CUDA ``module``
        # parameter pickled the plain way cannot be loaded on a CPU-only machine. Store a
        # marker instead and restore the reference from ``module_`` when loading.
        state = super().__getstate__()
        if isinstance(state.get("module"), torch.nn.Module) and state["module"] is self.__dict__.get("module_"):
            state["module"] = _SAME_AS_MODULE_
        return state

    def __setstate__(self, state):
        same = isinstance(state.get("module"), str) and state["module"] == _SAME_AS_MODULE_
        super().__setstate__(state)
        if same:
            self.module = self.module_

    def _compute_terms(self, Xi, training):
        Xi = to_tensor(Xi, device=self.device)
        output = self.module_(Xi)
        terms = self.module_.loss(output, Xi)
        if "loss" not in terms:
            raise KeyError(f"{type(self.module_).__name__}.loss() must return a dict with a 'loss' entry.")
        for _, cb in self.callbacks_:
            hook = getattr(cb, "on_loss_terms", None)
            if hook is not None:
                hook(self, terms=terms, training=training)
        self._accumulate_terms(terms, Xi, "train" if training else "valid")
        return output, terms

    def _accumulate_terms(self, terms, Xi, prefix):
        n = len(next(iter(Xi.values()))) if isinstance(Xi, dict) else len(Xi)
        sums = getattr(self, "_term_sums", None)
        if sums is None:
            sums = self._term_sums = {}
        bucket = sums.setdefault(prefix, {"__count__": 0})
        bucket["__count__"] += n
        for name, value in terms.items():
            if name == "loss":
                continue  # skorch records <prefix>_loss itself
            contrib = value.detach() * n
            bucket[name] = bucket[name] + contrib if name in bucket else contrib

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, _ = unpack_data(batch)
        output, terms = self._compute_terms(Xi, training=True)
        terms["loss"].backward()
        return {"loss": terms["loss"], "y_pred": output}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        Xi, _ = unpack_data(batch)
        with torch.no_grad():
            output, terms = self._compute_terms(Xi, training=False)
        return {"loss": terms["loss"], "y_pred": output}
