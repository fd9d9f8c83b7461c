"""Callbacks of the shared net: schedules, NaN guard, progress, per-term history.

Schedules set attributes on the module (``module.beta`` ...), so a model never counts
steps itself (DESIGN.md). All callbacks are ordinary skorch callbacks and can be passed
through an estimator's ``callbacks`` parameter.
"""

import math

import numpy as np
import torch
from skorch.callbacks import Callback

__all__ = [
    "LinearWarmup",
    "CosineCyclic",
    "ParamSchedule",
    "NaNGuard",
    "NonFiniteLossError",
    "ProgressBar",
    "LossTermsLogger",
]


class NonFiniteLossError(FloatingPointError, ValueError):
    """Raised by :class:`NaNGuard` when a loss term or gradient is NaN or infinite.

    Subclasses ``ValueError`` so ``except ValueError`` handlers in user code catch it.
    Attributes ``epoch``, ``batch`` and ``term`` say where it happened.
    """

    def __init__(self, message, epoch=None, batch=None, term=None):
        super().__init__(message)
        self.epoch, self.batch, self.term = epoch, batch, term


class LinearWarmup:
    """Schedule at ``start`` for ``delay`` steps, rising linearly to ``end`` over ``n_steps``, then constant.

    Parameters
    ----------
    end : float
        Final value.
    n_steps : int
        Number of optimisation steps (batches) of the ramp.
    start : float, default=0.0
        Value at step 0 (and through the delay).
    delay : int, default=0
        Steps held at ``start`` before the ramp begins.

    Examples
    --------
    >>> from sklearn_disentangle.training import LinearWarmup
    >>> s = LinearWarmup(4.0, n_steps=4)
    >>> [s(i) for i in range(6)]
    [0.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    >>> [LinearWarmup(1.0, n_steps=2, delay=2)(i) for i in range(5)]
    [0.0, 0.0, 0.0, 0.5, 1.0]
    """

    def __init__(self, end, n_steps, start=0.0, delay=0):
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}.")
        self.end, self.n_steps, self.start, self.delay = float(end), int(n_steps), float(start), int(delay)

    def __call__(self, step):
        frac = min(max(step - self.delay, 0) / self.n_steps, 1.0)
        return self.start + (self.end - self.start) * frac

    def __repr__(self):
        return f"LinearWarmup(end={self.end}, n_steps={self.n_steps}, start={self.start}, delay={self.delay})"


class CosineCyclic:
    """Cosine-cyclic schedule, as OPUS-DSD's ``--beta cos``: restarts every ``period``.

    Within each cycle of ``period`` steps the value rises from ``low`` to ``high`` along
    half a cosine, ``low + (high - low) * (1 - cos(pi * t / period)) / 2`` with ``t`` the
    step within the cycle, then starts again at ``low``.

    Examples
    --------
    >>> from sklearn_disentangle.training import CosineCyclic
    >>> s = CosineCyclic(high=1.0, period=4)
    >>> [round(s(i), 3) for i in range(6)]
    [0.0, 0.146, 0.5, 0.854, 0.0, 0.146]
    """

    def __init__(self, high, period, low=0.0):
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}.")
        self.high, self.period, self.low = float(high), int(period), float(low)

    def __call__(self, step):
        t = step % self.period
        return self.low + (self.high - self.low) * (1.0 - math.cos(math.pi * t / self.period)) / 2.0

    def __repr__(self):
        return f"CosineCyclic(high={self.high}, period={self.period}, low={self.low})"


class ParamSchedule(Callback):
    """Set ``module.<attribute>`` from a schedule before every training batch.

    Parameters
    ----------
    attribute : str
        Attribute of the module to set (e.g. ``"beta"``); it must exist.
    schedule : callable
        ``schedule(step) -> float`` of the global training step (batches seen so far).

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.training import LinearWarmup, ParamSchedule
    >>> warmup = ParamSchedule("beta", LinearWarmup(4.0, n_steps=1000))
    >>> est = CFASLVAE(beta=4.0, callbacks=[("beta_warmup", warmup)])
    """

    def __init__(self, attribute, schedule):
        self.attribute = attribute
        self.schedule = schedule

    def initialize(self):
        self.step_ = 0
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if not hasattr(net.module_, self.attribute):
            raise ValueError(
                f"ParamSchedule: the module {type(net.module_).__name__} has no attribute "
                f"{self.attribute!r} to schedule."
            )
        # Resume counting where training stopped (partial_fit / warm start). Validation
        # batches are in the history too; only training batches (with train_loss) count.
        self.step_ = int(sum(1 for h in net.history for b in h["batches"] if "train_loss" in b))

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            setattr(net.module_, self.attribute, float(self.schedule(self.step_)))

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.step_ += 1

    def on_epoch_end(self, net, **kwargs):
        net.history.record(self.attribute, float(getattr(net.module_, self.attribute)))


class NaNGuard(Callback):
    """Stop training with an error at the first NaN/inf loss term or gradient.

    The check runs after the backward pass and before the optimiser step, so the
    parameters keep their last finite values. The error names the epoch, the batch and
    the loss term (or parameter) that went non-finite.

    Examples
    --------
    >>> from sklearn_disentangle.training import NaNGuard
    >>> guard = NaNGuard()  # on by default in every estimator
    """

    def __init__(self, check_gradients=True):
        self.check_gradients = check_gradients

    def _where(self, net, training=True):
        # skorch opens the current batch's history row before the step (on_batch_begin),
        # so it is already the last row; validation rows follow the epoch's training rows.
        epoch = len(net.history)
        if not epoch:
            return epoch, 1
        other = "valid_loss" if training else "train_loss"
        batch = sum(1 for b in net.history[-1]["batches"] if other not in b)
        return epoch, max(batch, 1)

    def on_loss_terms(self, net, terms, training):
        # one host synchronisation per batch; search for the culprit only on failure
        values = [v.detach().float().reshape(-1) for v in terms.values()]
        if bool(torch.isfinite(torch.cat(values)).all()):
            return
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                epoch, batch = self._where(net, training)
                raise NonFiniteLossError(
                    f"Loss term {name!r} became {float(value.detach().float().mean())} at epoch "
                    f"{epoch}, batch {batch} ({'training' if training else 'validation'}). The "
                    "parameters keep their last finite values. Lower lr, scale the input to a "
                    "small range (e.g. [0, 1]) or check X for extreme values.",
                    epoch=epoch, batch=batch, term=name,
                )

    def on_grad_computed(self, net, named_parameters, batch=None, training=True, **kwargs):
        if not self.check_gradients:
            return
        named = [(name, p) for name, p in named_parameters if p.grad is not None]
        if not named:
            return
        # the norm of all gradients is non-finite iff some entry is: one fused reduction and
        # one synchronisation instead of one per parameter (~4% of a small model's step)
        norms = torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for _, p in named])
        if bool(torch.isfinite(torch.linalg.vector_norm(norms))):
            return
        for name, param in named:
            if not torch.isfinite(param.grad).all():
                epoch, b = self._where(net)
                raise NonFiniteLossError(
                    f"Gradient of parameter {name!r} became non-finite at epoch {epoch}, batch "
                    f"{b}. The parameters keep their last finite values. Lower lr or enable "
                    "gradient clipping.",
                    epoch=epoch, batch=b, term=name,
                )


class LossTermsLogger(Callback):
    """Record the batch-size-weighted epoch mean of every named loss term in the history.

    The net stores each batch's detached terms; this callback averages them at the end of
    the epoch into ``history[-1]["train_<term>"]`` (and ``valid_<term>``), keeping a single
    host synchronisation per term and epoch. Every :class:`DisentangleNet` has it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle import CFASLVAE
    >>> X = (np.random.RandomState(0).rand(16, 16, 16) > 0.5).astype(np.float32)
    >>> est = CFASLVAE(z_dim=2, max_epochs=1, random_state=0).fit(X)
    >>> sorted(k for k in est.history_[-1] if k in ("train_recon", "train_kl"))
    ['train_kl', 'train_recon']
    """

    def on_epoch_begin(self, net, **kwargs):
        net._term_sums = {}

    def on_epoch_end(self, net, **kwargs):
        for prefix, sums in getattr(net, "_term_sums", {}).items():
            count = sums.pop("__count__")
            for name, total in sums.items():
                net.history.record(f"{prefix}_{name}", float(total) / max(count, 1))
        net._term_sums = {}


class ProgressBar(Callback):
    """tqdm progress: one bar over epochs, one over the batches of the current epoch.

    Shows the running mean of the loss on the batch bar and every named loss term of the
    finished epoch on the epoch bar, and writes one line per epoch (used for
    ``verbose=1``).

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> vae = CFASLVAE(verbose=1)  # adds ProgressBar() to the net's callbacks at fit
    """

    def __init__(self, leave=True):
        self.leave = leave

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        total = getattr(net, "_epochs_this_call", None) or net.max_epochs
        self.epoch_bar_ = tqdm(total=total, desc=type(net.module_).__name__, unit="epoch", leave=self.leave)

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        n_batches = len(net.get_iterator(dataset_train, training=True)) if dataset_train is not None else None
        self.batch_bar_ = self._tqdm(total=n_batches, desc=f"epoch {len(net.history)}", unit="batch", leave=False)
        self._running = []

    def on_batch_end(self, net, batch=None, training=False, loss=None, **kwargs):
        if training and loss is not None:
            self._running.append(float(loss.detach()) if torch.is_tensor(loss) else float(loss))
            self.batch_bar_.update(1)
            self.batch_bar_.set_postfix(loss=f"{np.mean(self._running):.4g}")

    def on_epoch_end(self, net, **kwargs):
        self.batch_bar_.close()
        row = net.history[-1]
        terms = {k: f"{v:.4g}" for k, v in row.items() if k.startswith(("train_", "valid_"))
                 and isinstance(v, float) and not k.endswith("_best")}
        self.epoch_bar_.set_postfix(terms)
        self.epoch_bar_.update(1)
        # one permanent line per epoch, so logs keep every epoch's terms
        line = "  ".join(f"{k}={v}" for k, v in terms.items())
        self.epoch_bar_.write(f"epoch {row['epoch']:>3}  {line}  ({row.get('dur', 0.0):.1f}s)")

    def on_train_end(self, net, **kwargs):
        self.epoch_bar_.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_tqdm", "epoch_bar_", "batch_bar_"):
            state.pop(key, None)
        return state
