"""Exponential moving average of DiffAE's weights, as a skorch callback."""

from skorch.callbacks import Callback

__all__ = ["EMACallback"]


class EMACallback(Callback):
    """Update the module's EMA copy after every optimiser step.

    ``ema <- d * ema + (1 - d) * live``, with ``d = decay`` (the paper: 0.9999) or, when
    ``warmup`` is True, ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates.
    The module must expose ``update_ema(decay)`` and an ``ema_updates`` counter (as
    :class:`~sklearn_disentangle.diffae.model.DiffAEModule`); the counter lives in the module,
    so continued training (``partial_fit``, warm starts, checkpoints) resumes the schedule.

    Parameters
    ----------
    decay : float, default=0.9999
    warmup : bool, default=True
        Use the step-dependent decay above. With the paper's ~3 million steps it makes no
        difference after the first ~10^5 steps; on small data sets it stops the EMA from
        staying at the random initialisation (with ``d = 0.9999`` the EMA still weighs the
        initial weights by ``0.9999^n``: 0.90 after 1000 steps).
    record : bool, default=True
        Record the last decay used as ``ema_decay`` in the history each epoch.

    Examples
    --------
    >>> from sklearn_disentangle.diffae import EMACallback
    >>> cb = EMACallback(decay=0.999)
    >>> [round(cb.decay_at(n), 4) for n in (0, 10, 10000)]
    [0.1, 0.55, 0.999]
    """

    def __init__(self, decay=0.9999, warmup=True, record=True):
        self.decay = decay
        self.warmup = warmup
        self.record = record

    def decay_at(self, n_updates):
        """Decay used for the update after ``n_updates`` earlier ones."""
        if not self.warmup:
            return float(self.decay)
        return float(min(self.decay, (1.0 + n_updates) / (10.0 + n_updates)))

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        if not (hasattr(net.module_, "update_ema") and hasattr(net.module_, "ema_updates")):
            raise ValueError(f"EMACallback: the module {type(net.module_).__name__} has no update_ema()/ema_updates; "
                             "it only works with DiffAE modules.")

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.last_decay_ = self.decay_at(int(net.module_.ema_updates))
            net.module_.update_ema(self.last_decay_)

    def on_epoch_end(self, net, **kwargs):
        if self.record and hasattr(self, "last_decay_"):
            net.history.record("ema_decay", self.last_decay_)
