"""Figures users expect: reconstructions, latent traversals, latent scatter plots.

Functions return :class:`matplotlib.figure.Figure` objects built without pyplot, so they
work headless and never touch global figure state; save them with ``fig.savefig(path)``.
"""

from .latents import embed_latents, plot_latents
from .symmetries import plot_symmetry_actions, symmetry_actions
from .traversals import latent_traversals, plot_latent_traversals, plot_reconstructions

__all__ = [
    "latent_traversals",
    "plot_latent_traversals",
    "plot_reconstructions",
    "embed_latents",
    "plot_latents",
    "symmetry_actions",
    "plot_symmetry_actions",
]
