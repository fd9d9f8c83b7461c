"""Latent traversals and reconstruction grids (through ``transform``/``inverse_transform``)."""

import numpy as np
from matplotlib.figure import Figure

__all__ = ["latent_traversals", "plot_latent_traversals", "plot_reconstructions"]


def _as_display(img):
    """(C, H, W) or (H, W) -> something imshow understands (channels last or 2-D)."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    if img.ndim != 2 and not (img.ndim == 3 and img.shape[-1] == 3):
        raise ValueError(f"can only draw 2-D images (H, W), (1, H, W) or (3, H, W); got shape {img.shape}.")
    return np.clip(img, 0, 1) if img.ndim == 3 else img


def _image_grid(fig, grid, cmap):
    """Draw ``grid[r][c]`` images into ``fig`` without ticks; return the axes array."""
    rows, cols = len(grid), len(grid[0])
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            axes[r, c].imshow(_as_display(grid[r][c]), cmap=cmap, vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    return axes


def _reference_code(estimator, x):
    """Code of the first sample of ``x`` (one image of ``image_shape_`` or a batch), shape (1, z_dim)."""
    x = np.asarray(x)
    if x.shape == tuple(estimator.image_shape_):
        x = x[None]
    return estimator.transform(x[:1])


def latent_traversals(estimator, x, *, dims=None, n_steps=7, span=2.5, values=None):
    """Decode a reference image's code with one latent dimension swept at a time.

    Parameters
    ----------
    estimator : fitted estimator with ``transform`` and ``inverse_transform``
    x : array-like of shape (1, *image_shape) or image_shape
        The reference sample.
    dims : sequence of int, default=None
        Latent dimensions to sweep (default: all).
    n_steps : int, default=7
        Values per dimension.
    span : float, default=2.5
        Sweep ``linspace(-span, span, n_steps)`` (in prior standard deviations) replacing
        the reference value, as in the beta-VAE papers.
    values : array-like of shape (n_steps,), default=None
        Explicit values instead of ``span``.

    Returns
    -------
    grid : ndarray of shape (len(dims), n_steps, *image_shape)

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> from sklearn_disentangle.plotting import latent_traversals
    >>> _, X = make_dsprites_like(resolution=16).sample(32, random_state=0)
    >>> vae = CFASLVAE(z_dim=3, max_epochs=1, random_state=0).fit(X)
    >>> latent_traversals(vae, X[:1], n_steps=5).shape
    (3, 5, 16, 16)
    """
    z = _reference_code(estimator, x)[0]
    dims = list(range(z.shape[0])) if dims is None else [int(d) for d in dims]
    for d in dims:
        if not 0 <= d < z.shape[0]:
            raise ValueError(f"dims must lie in 0..{z.shape[0] - 1}, got {d}.")
    sweep = np.linspace(-span, span, n_steps) if values is None else np.asarray(values, dtype=np.float64)
    codes = np.repeat(z[None, None], len(dims), 0).repeat(len(sweep), 1)
    for i, d in enumerate(dims):
        codes[i, :, d] = sweep
    decoded = estimator.inverse_transform(codes.reshape(-1, z.shape[0]))
    return decoded.reshape((len(dims), len(sweep)) + decoded.shape[1:])


def plot_latent_traversals(estimator, x, *, dims=None, n_steps=7, span=2.5, title=None, cmap="gray", fig=None):
    """Figure of :func:`latent_traversals`: one row per latent dimension.

    ``fig`` may be an existing ``Figure`` or ``SubFigure`` to draw into (default: a new
    figure).

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> from sklearn_disentangle.plotting import plot_latent_traversals
    >>> _, X = make_dsprites_like(resolution=16).sample(32, random_state=0)
    >>> vae = CFASLVAE(z_dim=2, max_epochs=1, random_state=0).fit(X)
    >>> fig = plot_latent_traversals(vae, X[0], n_steps=4)
    >>> len(fig.axes)
    8
    """
    grid = latent_traversals(estimator, x, dims=dims, n_steps=n_steps, span=span)
    dims = list(range(grid.shape[0])) if dims is None else list(dims)
    rows, cols = grid.shape[:2]
    fig = Figure(figsize=(1.1 * cols + 0.6, 1.1 * rows + 0.4)) if fig is None else fig
    axes = _image_grid(fig, grid, cmap)
    for r in range(rows):
        axes[r, 0].set_ylabel(f"z{dims[r]}", rotation=0, labelpad=14)
    fig.suptitle(title or f"{type(estimator).__name__}: latent traversals (+-{span})")
    return fig


def plot_reconstructions(estimator, X, *, n=8, cmap="gray", title=None, fig=None):
    """Originals (top row) above their reconstructions ``inverse_transform(transform(X))``.

    ``fig`` may be an existing ``Figure`` or ``SubFigure`` to draw into.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> from sklearn_disentangle.plotting import plot_reconstructions
    >>> _, X = make_dsprites_like(resolution=16).sample(32, random_state=0)
    >>> vae = CFASLVAE(z_dim=2, max_epochs=1, random_state=0).fit(X)
    >>> len(plot_reconstructions(vae, X, n=4).axes)
    8
    """
    X = np.asarray(X)[:n]
    rec = estimator.inverse_transform(estimator.transform(X))
    fig = Figure(figsize=(1.1 * len(X) + 0.6, 2.6)) if fig is None else fig
    axes = _image_grid(fig, [X, rec], cmap)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("recon")
    fig.suptitle(title or f"{type(estimator).__name__}: reconstructions")
    return fig
