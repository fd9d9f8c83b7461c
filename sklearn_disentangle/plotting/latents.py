"""2-D maps of latent codes (PCA, or UMAP imported lazily), coloured by a factor or cluster."""

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

__all__ = ["embed_latents", "plot_latents"]


def embed_latents(codes, method="pca", *, random_state=None, **kwargs):
    """Project codes to 2-D with PCA or UMAP.

    Parameters
    ----------
    codes : array-like of shape (n_samples, z_dim)
    method : {"pca", "umap"}, default="pca"
        ``"umap"`` needs umap-learn (imported only here; the first call in a process
        compiles numba code, ~tens of seconds). Codes with 2 columns are returned as is.
    random_state : int or None, default=None
    **kwargs
        Passed to ``umap.UMAP``.

    Returns
    -------
    embedding : ndarray of shape (n_samples, 2)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.plotting import embed_latents
    >>> embed_latents(np.random.RandomState(0).randn(50, 5)).shape
    (50, 2)
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise ValueError(f"codes must have shape (n_samples >= 2, z_dim), got {codes.shape}.")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or infinity.")
    if codes.shape[1] <= 2:
        return np.pad(codes, ((0, 0), (0, 2 - codes.shape[1])))
    if method == "pca":
        return PCA(n_components=2, random_state=random_state).fit_transform(codes)
    if method == "umap":
        import umap  # lazy: heavy import and JIT

        if random_state is not None:
            kwargs.setdefault("n_jobs", 1)  # a seeded UMAP is single-threaded anyway; say so to silence it
        return umap.UMAP(n_components=2, random_state=random_state, **kwargs).fit_transform(codes)
    raise ValueError(f"method must be 'pca' or 'umap', got {method!r}.")


def plot_latents(codes, color=None, *, method="pca", random_state=None, title=None, cmap="viridis"):
    """Scatter plot of a 2-D embedding of the codes.

    Parameters
    ----------
    codes : array-like of shape (n_samples, z_dim)
    color : array-like of shape (n_samples,), default=None
        A factor or cluster label per sample.
    method : {"pca", "umap"}, default="pca"

    Returns
    -------
    fig : matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.plotting import plot_latents
    >>> fig = plot_latents(np.random.RandomState(0).randn(40, 4), color=np.arange(40) % 3)
    >>> len(fig.axes)
    2
    """
    emb = embed_latents(codes, method, random_state=random_state)
    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=color, s=6, cmap=cmap if color is not None else None)
    if color is not None:
        fig.colorbar(sc, ax=ax)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    ax.set_title(title or f"latent codes ({method.upper()})")
    return fig
