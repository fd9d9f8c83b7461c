"""Plotting helpers: traversal values, figure layout, latent embeddings."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from sklearn_disentangle.plotting import (
    embed_latents,
    latent_traversals,
    plot_latent_traversals,
    plot_latents,
    plot_reconstructions,
)


class IdentityCoder:
    """An 'estimator' whose code is the image itself, so traversals are checkable by hand."""

    image_shape_ = (1, 3)

    def transform(self, X):
        return np.asarray(X, dtype=np.float32)[:, 0, :]

    def inverse_transform(self, Z):
        return np.asarray(Z, dtype=np.float32)[:, None, :]


def test_traversal_sweeps_one_dimension_and_keeps_the_others():
    x = np.array([[[0.1, 0.2, 0.3]]], dtype=np.float32)
    grid = latent_traversals(IdentityCoder(), x, dims=[0, 2], n_steps=5, span=2.0)
    assert grid.shape == (2, 5, 1, 3)
    sweep = np.linspace(-2, 2, 5)
    np.testing.assert_allclose(grid[0, :, 0, 0], sweep, rtol=1e-6)
    np.testing.assert_allclose(grid[0, :, 0, 1:], np.tile([0.2, 0.3], (5, 1)), rtol=1e-6)
    np.testing.assert_allclose(grid[1, :, 0, 2], sweep, rtol=1e-6)
    np.testing.assert_allclose(grid[1, :, 0, :2], np.tile([0.1, 0.2], (5, 1)), rtol=1e-6)
    # a single sample without the batch axis, and explicit values
    grid = latent_traversals(IdentityCoder(), x[0], dims=[1], values=[-1.0, 1.0])
    np.testing.assert_allclose(grid[0, :, 0, 1], [-1.0, 1.0])


def test_traversal_rejects_bad_dims():
    with pytest.raises(ValueError, match=r"dims must lie in 0..2"):
        latent_traversals(IdentityCoder(), np.zeros((1, 1, 3)), dims=[3])


class ImageCoder:
    image_shape_ = (8, 8)

    def transform(self, X):
        return np.asarray(X, dtype=np.float32).reshape(len(X), -1)[:, :2]

    def inverse_transform(self, Z):
        Z = np.asarray(Z)
        return np.clip(np.repeat(Z[:, :1, None], 64, axis=1).reshape(len(Z), 8, 8), 0, 1)


def test_figures_have_one_axis_per_image(tmp_path):
    X = np.random.RandomState(0).rand(5, 8, 8).astype(np.float32)
    fig = plot_latent_traversals(ImageCoder(), X[0], n_steps=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 4
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["z0", "z1"]
    fig = plot_reconstructions(ImageCoder(), X, n=3)
    assert len(fig.axes) == 2 * 3
    fig.savefig(tmp_path / "rec.png")
    assert (tmp_path / "rec.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="can only draw 2-D images"):
        plot_reconstructions(ImageCoder(), np.zeros((2, 4, 8, 8)), n=2)


def test_embed_latents_pca_matches_sklearn_and_validates():
    from sklearn.decomposition import PCA

    codes = np.random.RandomState(0).randn(100, 5)
    np.testing.assert_allclose(np.abs(embed_latents(codes)), np.abs(PCA(2).fit_transform(codes)), rtol=1e-6, atol=1e-9)
    assert embed_latents(codes[:, :1]).shape == (100, 2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        embed_latents(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="method must be 'pca' or 'umap'"):
        embed_latents(codes, method="tsne")
    fig = plot_latents(codes, color=np.arange(100) % 3)
    assert len(fig.axes) == 2  # scatter + colourbar


def test_umap_embedding_separates_clusters():
    """UMAP is imported lazily and only here (first call JIT-compiles for tens of seconds)."""
    rng = np.random.RandomState(0)
    codes = np.vstack([rng.randn(150, 6) * 0.3, rng.randn(150, 6) * 0.3 + 5.0])  # < 4096 rows
    emb = embed_latents(codes, method="umap", random_state=0, n_neighbors=15)
    assert emb.shape == (300, 2)
    a, b = emb[:150].mean(0), emb[150:].mean(0)
    spread = max(emb[:150].std(0).max(), emb[150:].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread
