"""ControlVAE's PI controller (Shao et al., ICML 2020) as a skorch callback."""

import math

from skorch.callbacks import Callback

__all__ = ["PIController", "PIControllerCallback"]


class PIController:
    """Nonlinear PI controller mapping the observed KL to the KL weight ``beta_t``.

    With error ``e_t = target - KL_t``::

        P_t = k_p / (1 + exp(e_t))
        I_t = clip(I_{t-1} - k_i * e_t, -P_t, beta_max - beta_min - P_t)
        beta_t = clip(P_t + I_t + beta_min, beta_min, beta_max)

    KL above the target (``e_t < 0``) raises ``beta``; below it lowers ``beta`` back toward
    ``beta_min``. Anti-windup: the paper integrates only while ``beta_{t-1}`` lies in
    ``[beta_min, beta_max]``, which, with the clipped ``beta`` tracked, is always true; we
    clamp the integral instead so that the unclipped output stays in range and the
    integral cannot run away while ``beta`` saturates. ``beta_prev`` is tracked (the
    reference code never updates it, freezing the integral term), and the KL is a plain
    float (detached: no gradient flows through ``beta``).

    Parameters
    ----------
    target : float
        Target KL ``c``.
    beta_min : float, default=1.0
    beta_max : float, default=100.0
    k_p : float, default=0.01
    k_i : float, default=0.001

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.control import PIController
    >>> pid = PIController(target=2.0, beta_min=1.0, k_i=0.1)
    >>> [round(pid.step(10.0), 3) for _ in range(3)]
    [1.81, 2.61, 3.41]
    """

    def __init__(self, target, beta_min=1.0, beta_max=100.0, k_p=0.01, k_i=0.001):
        if not beta_max > beta_min:
            raise ValueError(f"beta_max ({beta_max}) must exceed beta_min ({beta_min}).")
        self.target = float(target)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.k_p = float(k_p)
        self.k_i = float(k_i)
        self.reset()

    def reset(self):
        self.integral = 0.0
        self.beta_prev = self.beta_min
        return self

    def step(self, kl):
        """Update from the observed KL (a float) and return the new ``beta``."""
        err = self.target - float(kl)
        p = self.k_p / (1.0 + math.exp(min(err, 700.0)))
        # integrate, then clamp so that P + I + beta_min stays in [beta_min, beta_max]
        integral = self.integral - self.k_i * err
        self.integral = min(max(integral, -p), self.beta_max - self.beta_min - p)
        beta = min(max(p + self.integral + self.beta_min, self.beta_min), self.beta_max)
        self.beta_prev = beta
        return beta


class PIControllerCallback(Callback):
    """Set ``module.beta`` after every training batch from the batch's KL (ControlVAE).

    The observed KL is the ``"kl"`` loss term of the batch (read detached through the
    ``on_loss_terms`` hook of :class:`~sklearn_disentangle.training.DisentangleNet`); the
    new ``beta`` applies from the next batch. The target is constant (``c``); the CFASL
    code instead ramps it linearly from 0.5 to ``c`` over training, and the ControlVAE
    paper raises it step-wise for disentanglement. ``beta`` of each epoch's last batch is
    recorded in the history as ``beta``.

    Parameters
    ----------
    target : float
    beta_min, beta_max, k_p, k_i : float
        See :class:`PIController`.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.control import PIControllerCallback
    >>> cb = PIControllerCallback(target=16.0).initialize()
    >>> cb.controller_.beta_prev
    1.0
    """

    def __init__(self, target, beta_min=1.0, beta_max=100.0, k_p=0.01, k_i=0.001):
        self.target = target
        self.beta_min = beta_min
        self.beta_max = beta_max
        self.k_p = k_p
        self.k_i = k_i

    def initialize(self):
        self.controller_ = PIController(self.target, self.beta_min, self.beta_max, self.k_p, self.k_i)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        net.module_.beta = float(self.controller_.beta_prev)

    def on_loss_terms(self, net, terms, training):
        if training and "kl" in terms:
            net.module_.beta = self.controller_.step(float(terms["kl"].detach()))

    def on_epoch_end(self, net, **kwargs):
        net.history.record("beta", float(net.module_.beta))
