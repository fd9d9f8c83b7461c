"""Gaussian diffusion kernels of DiffAE: noise schedule, forward process, DDIM decoding and inversion.

Notation (Ho et al. 2020; Song et al. 2021): ``betas`` of a ``T``-step process,
``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])`` (written ``abar``), the forward process
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``. The denoiser predicts ``eps``.

DDIM (eta = 0) runs on a re-spaced grid of ``K`` of the ``T`` steps (``ddim_timesteps``); the
network is always called with the *original* step index. Decoding walks the grid downwards
from ``x_T`` (fed as the state at the last kept step), inversion walks it upwards from the clean
input; both clip the intermediate ``x_0`` prediction to ``[-1, 1]`` unless told otherwise.
Tables are float64; every step casts its scalars to the state's dtype.
"""

import numpy as np
import torch

__all__ = ["linear_beta_schedule", "ddim_timesteps", "GaussianDiffusion"]


def linear_beta_schedule(n_timesteps=1000):
    """The linear ``beta`` schedule of DDPM, from 1e-4 to 0.02 scaled by ``1000 / T``.

    Parameters
    ----------
    n_timesteps : int, default=1000
        Number of diffusion steps ``T``.

    Returns
    -------
    betas : ndarray of shape (n_timesteps,), float64

    Examples
    --------
    >>> from sklearn_disentangle.diffae.diffusion import linear_beta_schedule
    >>> b = linear_beta_schedule(1000)
    >>> float(b[0]), round(float(b[-1]), 6)
    (0.0001, 0.02)
    """
    n = int(n_timesteps)
    if n < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}.")
    scale = 1000.0 / n
    return np.linspace(scale * 1e-4, scale * 0.02, n, dtype=np.float64)


def ddim_timesteps(n_timesteps, n_steps):
    """The ``n_steps`` original step indices a DDIM run visits, in increasing order.

    As DiffAE's ``"ddimN"`` re-spacing: the stride ``s`` with ``len(range(0, T, s)) == N``
    (N=20 of T=1000 gives 0, 50, ..., 950). When no stride gives exactly ``N`` steps, the
    grid is ``N`` evenly spaced integers from 0 to ``T - 1`` (rounded; an addition: DiffAE
    raises).

    Parameters
    ----------
    n_timesteps : int
        ``T`` of the trained process.
    n_steps : int
        Number of DDIM steps, ``1 <= n_steps <= T``.

    Returns
    -------
    timesteps : ndarray of int64 of shape (n_steps,)

    Examples
    --------
    >>> from sklearn_disentangle.diffae.diffusion import ddim_timesteps
    >>> ddim_timesteps(1000, 20)[:3].tolist(), int(ddim_timesteps(1000, 20)[-1])
    ([0, 50, 100], 950)
    """
    T, N = int(n_timesteps), int(n_steps)
    if not 1 <= N <= T:
        raise ValueError(f"n_steps must be between 1 and the number of diffusion steps ({T}), got {n_steps}.")
    if N == 1:
        return np.array([0], dtype=np.int64)
    for stride in range(1, T + 1):
        if len(range(0, T, stride)) == N:
            return np.arange(0, T, stride, dtype=np.int64)
    grid = np.unique(np.round(np.linspace(0, T - 1, N)).astype(np.int64))
    return grid


class GaussianDiffusion:
    """Noise schedule and samplers of a ``T``-step Gaussian diffusion with an eps-predicting model.

    Parameters
    ----------
    n_timesteps : int, default=1000
        ``T``.
    beta_schedule : {"linear"}, default="linear"
        Only DDPM's linear schedule (the paper's) is implemented.

    Attributes
    ----------
    betas : ndarray of shape (T,), float64
    alphas_cumprod : ndarray of shape (T,), float64

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.diffusion import GaussianDiffusion
    >>> diff = GaussianDiffusion(1000)
    >>> x0 = torch.zeros(2, 1, 4, 4)
    >>> model = lambda x, t: torch.zeros_like(x)   # predicts eps = 0: x_0 = x_t / sqrt(abar)
    >>> x_T = diff.ddim_invert(model, x0, n_steps=10)
    >>> bool(torch.allclose(diff.ddim_decode(model, x_T, n_steps=10), x0))
    True
    """

    def __init__(self, n_timesteps=1000, beta_schedule="linear"):
        if beta_schedule != "linear":
            raise ValueError(f"beta_schedule must be 'linear', got {beta_schedule!r}.")
        self.n_timesteps = int(n_timesteps)
        self.betas = linear_beta_schedule(self.n_timesteps)
        self.alphas_cumprod = np.cumprod(1.0 - self.betas)
        self._abar_t = torch.from_numpy(self.alphas_cumprod)

    def _abar(self, t, like):
        """``abar[t]`` as a tensor shaped to broadcast against ``like`` (batch first)."""
        a = self._abar_t.to(like.device)[t.to(like.device)].to(like.dtype)
        return a.reshape((-1,) + (1,) * (like.dim() - 1))

    def sample_timesteps(self, n, device=None):
        """``n`` steps drawn uniformly from ``{0, ..., T-1}`` with torch's global generator.

        Examples
        --------
        >>> from sklearn_disentangle.diffae.diffusion import GaussianDiffusion
        >>> GaussianDiffusion(10).sample_timesteps(5).shape
        torch.Size([5])
        """
        t = torch.randint(0, self.n_timesteps, (n,))
        return t if device is None else t.to(device)

    def q_sample(self, x0, t, noise):
        """Forward process: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.diffae.diffusion import GaussianDiffusion
        >>> d = GaussianDiffusion(1000)
        >>> x = d.q_sample(torch.ones(1, 3), torch.tensor([999]), torch.zeros(1, 3))
        >>> bool((x < 0.01).all())
        True
        """
        a = self._abar(t, x0)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    @staticmethod
    def _pred_x0_eps(x, eps_hat, a, clip):
        x0 = (x - (1.0 - a).sqrt() * eps_hat) / a.sqrt()
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            # the eps consistent with the clipped x0 (DDIM's re-derived noise)
            eps_hat = (x / a.sqrt() - x0) / (1.0 / a - 1.0).sqrt()
        return x0, eps_hat

    def ddim_decode(self, model, x_T, n_steps=20, clip_denoised=True):
        """Deterministic DDIM (eta = 0) from ``x_T`` down to ``x_0``.

        Parameters
        ----------
        model : callable
            ``model(x_t, t) -> eps_hat`` (``t`` a LongTensor of original step indices).
        x_T : Tensor
            Start state (Gaussian noise or the output of :meth:`ddim_invert`).
        n_steps : int, default=20
        clip_denoised : bool, default=True
            Clip every ``x_0`` prediction to ``[-1, 1]``.

        Returns
        -------
        x0 : Tensor like ``x_T``

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.diffae.diffusion import GaussianDiffusion
        >>> out = GaussianDiffusion(100).ddim_decode(lambda x, t: torch.zeros_like(x), torch.randn(1, 2), 5)
        >>> out.shape
        torch.Size([1, 2])
        """
        steps = ddim_timesteps(self.n_timesteps, n_steps)
        x = x_T
        n = x.shape[0]
        for k in range(len(steps) - 1, -1, -1):
            t = torch.full((n,), int(steps[k]), dtype=torch.long, device=x.device)
            a = self._abar(t, x)
            x0, eps = self._pred_x0_eps(x, model(x, t), a, clip_denoised)
            if k == 0:
                x = x0
            else:
                a_prev = self._abar(torch.full((n,), int(steps[k - 1]), dtype=torch.long), x)
                x = a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps
        return x

    def ddim_invert(self, model, x0, n_steps=20, clip_denoised=True, end="noise", n_iter=0):
        """Deterministic DDIM inversion: the ``x_T`` that :meth:`ddim_decode` maps back to ``x0``.

        Parameters
        ----------
        model : callable
            ``model(x_t, t) -> eps_hat``.
        x0 : Tensor
            Clean data (in ``[-1, 1]`` when ``clip_denoised``).
        n_steps : int, default=20
        clip_denoised : bool, default=True
        end : {"noise", "last_step"}, default="noise"
            ``"noise"`` (DiffAE's convention): a last step to ``abar = 0``, so ``x_T`` is the
            noise estimate at the last kept step; :meth:`ddim_decode` then reads it as the
            state at that step, which drops that step's small ``sqrt(abar) x0`` component.
            ``"last_step"``: stop at the state of the last kept step (``n_steps - 1`` network
            calls), the exact mirror of decoding; round trips are more accurate (1-2.5 dB PSNR
            in our tests).
        n_iter : int, default=0
            Fixed-point iterations per step. ``0`` is DDIM's explicit inversion: the step from
            ``t`` up to ``t'`` uses the noise predicted at ``t``, while decoding comes back
            from ``t'`` with the noise predicted at ``t'``, so every step leaves an error. With
            ``n_iter > 0`` each step instead solves ``x_t' = step(x_t, eps(x_t', t'))`` by
            that many fixed-point iterations (started from the explicit step), i.e. it finds
            the state that one decoding step maps back to ``x_t`` (the idea of AIDI, Pan et
            al. 2023, and ReNoise, Garibi et al. 2024). A first step also solves for the state
            at ``t = 0`` whose ``x0`` prediction is the input. Cost: ``n_iter`` network calls
            per step (the explicit inversion: one), plus one. With ``end="last_step"`` a
            converged inversion is an exact inverse of :meth:`ddim_decode`.

        Returns
        -------
        x_T : Tensor like ``x0``

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.diffae.diffusion import GaussianDiffusion
        >>> GaussianDiffusion(100).ddim_invert(lambda x, t: torch.zeros_like(x), torch.zeros(1, 2), 5).shape
        torch.Size([1, 2])
        """
        if end not in ("noise", "last_step"):
            raise ValueError(f"end must be 'noise' or 'last_step', got {end!r}.")
        if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
            raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}.")
        steps = ddim_timesteps(self.n_timesteps, n_steps)
        x = x0
        n = x.shape[0]

        def at(step):
            t = torch.full((n,), int(step), dtype=torch.long, device=x.device)
            return t, self._abar(t, x)

        if n_iter == 0:
            for k in range(len(steps) - (end == "last_step")):
                t, a = at(steps[k])
                x0_hat, eps = self._pred_x0_eps(x, model(x, t), a, clip_denoised)
                if k == len(steps) - 1:
                    x = eps  # abar_next = 0 after the last kept step
                else:
                    _, a_next = at(steps[k + 1])
                    x = a_next.sqrt() * x0_hat + (1.0 - a_next).sqrt() * eps
            return x

        # implicit steps: the clean input is the state at abar = 1; solve for the state at
        # every kept step (the first one included) that one decoding step maps back
        # (each step starts from the noise last predicted, i.e. at its lower end)
        def up(x, a, a_next, eps):  # the state at a_next that a DDIM step with eps maps back to x at a
            return a_next.sqrt() * ((x - (1.0 - a).sqrt() * eps) / a.sqrt()) + (1.0 - a_next).sqrt() * eps

        a = torch.ones((1,) * x.dim(), dtype=x.dtype, device=x.device)
        t_next, a_next = at(steps[0])
        _, eps = self._pred_x0_eps(x, model(x, t_next), a_next, clip_denoised)
        for step in steps:
            t_next, a_next = at(step)
            x_next = up(x, a, a_next, eps)
            for _ in range(n_iter):
                _, eps = self._pred_x0_eps(x_next, model(x_next, t_next), a_next, clip_denoised)
                x_next = up(x, a, a_next, eps)
            x, a = x_next, a_next
        if end == "noise":
            t, a = at(steps[-1])
            _, x = self._pred_x0_eps(x, model(x, t), a, clip_denoised)
        return x
