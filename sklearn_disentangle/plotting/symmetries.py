"""Symmetry actions of a fitted CFASL model as image grids (the paper's qualitative figures)."""

import numpy as np
from matplotlib.figure import Figure

from .traversals import _image_grid, _reference_code, latent_traversals

__all__ = ["symmetry_actions", "plot_symmetry_actions"]


def symmetry_actions(estimator, x, *, sections=None, subsection=None, steps=(-3, -2, -1, 0, 1, 2, 3)):
    """Images of a reference sample acted on by learned symmetries, one row per section.

    Row ``i`` decodes ``z @ expm(t * G_i)`` for ``t`` in ``steps``, where ``z`` is the
    sample's code and ``G_i`` the codebook matrix of section ``i`` (sub-section
    ``subsection``, or the mean of the section's sub-symmetries with ``None``); see
    :meth:`~sklearn_disentangle.CFASLVAE.apply_symmetry`. ``t = 0`` is the reconstruction,
    negative ``t`` the inverse action.

    Parameters
    ----------
    estimator : fitted CFASLVAE with a CFASL ``model_type``
    x : array-like of shape (1, *image_shape) or image_shape
    sections : sequence of int, default=None
        Sections to draw (default: all ``z_dim``).
    subsection : int or None, default=None
    steps : sequence of float, default=(-3, ..., 3)

    Returns
    -------
    grid : ndarray of shape (len(sections), len(steps), *image_shape)

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> from sklearn_disentangle.plotting import symmetry_actions
    >>> _, X = make_dsprites_like(resolution=16).sample(32, random_state=0)
    >>> vae = CFASLVAE(z_dim=3, model_type="cfasl_betavae", n_subsections=2, max_epochs=1,
    ...                random_state=0).fit(X)
    >>> symmetry_actions(vae, X[:1], steps=[-1, 0, 1]).shape
    (3, 3, 16, 16)
    """
    z = _reference_code(estimator, x)
    sections = list(range(estimator.z_dim)) if sections is None else [int(s) for s in sections]
    rows = [estimator.apply_symmetry(z, s, subsection, steps=np.asarray(steps, dtype=np.float64), decode=True)[:, 0]
            for s in sections]
    return np.stack(rows)


def plot_symmetry_actions(estimator, x, *, sections=None, subsection=None, steps=(-3, -2, -1, 0, 1, 2, 3),
                          traversals=False, span=2.5, cmap="gray", title=None, fig=None):
    """Figure of :func:`symmetry_actions` (optionally above the plain latent traversals).

    With ``traversals=True`` the figure has two panels: the symmetry actions and, for
    comparison, :func:`~sklearn_disentangle.plotting.latent_traversals` of the same
    sample over ``+-span`` with as many steps.

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn_disentangle import CFASLVAE
    >>> from sklearn_disentangle.datasets import make_dsprites_like
    >>> from sklearn_disentangle.plotting import plot_symmetry_actions
    >>> _, X = make_dsprites_like(resolution=16).sample(32, random_state=0)
    >>> vae = CFASLVAE(z_dim=2, model_type="cfasl_betavae", n_subsections=2, max_epochs=1,
    ...                random_state=0).fit(X)
    >>> len(plot_symmetry_actions(vae, X[0], steps=[-1, 0, 1]).axes)
    6
    >>> len(plot_symmetry_actions(vae, X[0], steps=[-1, 0, 1], traversals=True).axes)
    12
    """
    grid = symmetry_actions(estimator, x, sections=sections, subsection=subsection, steps=steps)
    sections = list(range(grid.shape[0])) if sections is None else list(sections)
    rows, cols = grid.shape[:2]
    height = 1.1 * rows * (2 if traversals else 1) + 0.6
    fig = Figure(figsize=(1.1 * cols + 0.6, height)) if fig is None else fig
    target = fig
    if traversals:
        top, bottom = fig.subfigures(2, 1)
        target = top
    axes = _image_grid(target, grid, cmap)
    for r in range(rows):
        axes[r, 0].set_ylabel(f"S{sections[r]}", rotation=0, labelpad=14)
    for c, t in enumerate(steps):
        axes[0, c].set_title(f"t={t:g}", fontsize=8)
    sub = "mean" if subsection is None else subsection
    label = f"{type(estimator).__name__}: symmetry actions z expm(t G[i, {sub}])"
    if traversals:
        top.suptitle(label)
        trav = latent_traversals(estimator, x, dims=sections, n_steps=cols, span=span)
        taxes = _image_grid(bottom, trav, cmap)
        for r in range(rows):
            taxes[r, 0].set_ylabel(f"z{sections[r]}", rotation=0, labelpad=14)
        bottom.suptitle(f"latent traversals (+-{span})")
        if title:
            fig.suptitle(title)
    else:
        fig.suptitle(title or label)
    return fig
