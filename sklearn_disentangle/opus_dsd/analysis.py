"""What users run after training OPUS-DSD: clusters, latent maps, volumes and per-cluster STAR files.

The original's ``dsdsh analyze`` / ``eval_vol`` / ``parse_pose`` steps as plain functions on
latent codes, and :func:`analyze`, which runs them all for a fitted
:class:`~sklearn_disentangle.opus_dsd.OpusDSD` and writes::

    output_dir/
      z.npy                       latents (transform) of the particles
      pca.png, pca_pose.png       PCA maps coloured by cluster / by view direction
      umap.png, umap_pose.png     the same for UMAP (umap-learn), umap.npy
      kmeans<K>/labels.npy, centers.txt, centers_ind.txt
      kmeans<K>/reference<i>.mrc  volume at each cluster centre
      kmeans<K>/cluster<i>.star   the particles of cluster i (their original STAR rows)
      pc<j>/z_pc.txt, pc<j>/vol_<k>.mrc     volume series along principal component j
      trajectory/z.txt, trajectory/vol_<k>.mrc  volume series between two latents
      summary.json
"""

import json
import os

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.utils import Bunch

from ..io.mrc import write_mrc
from ..io.star import write_star

__all__ = [
    "cluster_latents", "pc_trajectory", "latent_trajectory", "plot_latent_map", "write_cluster_stars",
    "write_volume_series", "analyze",
]


def _codes(Z):
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or len(Z) < 1:
        raise ValueError(f"latent codes must have shape (n_samples, z_dim), got {Z.shape}.")
    if not np.isfinite(Z).all():
        raise ValueError("latent codes contain NaN or infinity.")
    return Z


def cluster_latents(Z, n_clusters=16, *, random_state=0, on_data=True, max_iter=100):
    """K-means on latent codes, centres moved onto data and ordered by hierarchical clustering.

    Parameters
    ----------
    Z : array-like of shape (n_samples, z_dim)
    n_clusters : int, default=16
    random_state : int, default=0
    on_data : bool, default=True
        Replace each centre by the nearest actual code (as the original does), so every
        centre volume is that of a real particle.
    max_iter : int, default=100

    Returns
    -------
    result : sklearn.utils.Bunch
        ``labels`` (n_samples,), ``centers`` (n_clusters, z_dim), ``center_indices``
        (n_clusters,) (the particle nearest to each centre), ``kmeans`` (the fitted KMeans,
        labels in its own order). Cluster ``i`` of ``labels`` is ``centers[i]``; clusters are
        ordered so that similar centres are neighbours (Ward linkage leaf order).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.opus_dsd.analysis import cluster_latents
    >>> Z = np.r_[np.zeros((10, 2)), np.ones((10, 2)) * 5] + np.random.RandomState(0).randn(20, 2) * 0.1
    >>> res = cluster_latents(Z, 2)
    >>> sorted(np.bincount(res.labels).tolist()), res.centers.shape
    ([10, 10], (2, 2))
    """
    Z = _codes(Z)
    if not 1 <= n_clusters <= len(Z):
        raise ValueError(f"n_clusters must be between 1 and the number of samples ({len(Z)}), got {n_clusters}.")
    km = KMeans(n_clusters=n_clusters, random_state=random_state, max_iter=max_iter, n_init=10).fit(Z)
    centers = km.cluster_centers_
    idx = np.array([int(np.argmin(((Z - c) ** 2).sum(1))) for c in centers])
    if on_data:
        centers = Z[idx]
    order = np.arange(n_clusters)
    if n_clusters > 2:
        from scipy.cluster.hierarchy import leaves_list, linkage

        order = leaves_list(linkage(centers, "ward"))
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    return Bunch(labels=rank[km.labels_], centers=centers[order], center_indices=idx[order], kmeans=km)


def pc_trajectory(Z, component=0, n_points=10, *, percentiles=(5, 95)):
    """Codes along one principal component, from one percentile of its scores to another.

    Parameters
    ----------
    Z : array-like of shape (n_samples, z_dim)
    component : int, default=0
    n_points : int, default=10
    percentiles : tuple of float, default=(5, 95)

    Returns
    -------
    codes : ndarray of shape (n_points, z_dim)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_disentangle.opus_dsd.analysis import pc_trajectory
    >>> Z = np.c_[np.linspace(-1, 1, 50), np.zeros(50)]
    >>> (pc_trajectory(Z, 0, 3).round(2) + 0.0).tolist()
    [[-0.9, 0.0], [0.0, 0.0], [0.9, 0.0]]
    """
    Z = _codes(Z)
    n_comp = min(Z.shape)
    if not 0 <= component < n_comp:
        raise ValueError(f"component must be in [0, {n_comp}), got {component}.")
    pca = PCA(n_components=n_comp).fit(Z)
    scores = pca.transform(Z)[:, component]
    lo, hi = np.percentile(scores, percentiles)
    pts = np.zeros((n_points, n_comp))
    pts[:, component] = np.linspace(lo, hi, n_points)
    return pca.inverse_transform(pts)


def latent_trajectory(z_start, z_end, n_points=10):
    """Straight line between two latent codes (both ends included).

    Parameters
    ----------
    z_start, z_end : array-like of shape (z_dim,)
    n_points : int, default=10

    Returns
    -------
    codes : ndarray of shape (n_points, z_dim)

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.analysis import latent_trajectory
    >>> latent_trajectory([0, 0], [1, 2], 3).tolist()
    [[0.0, 0.0], [0.5, 1.0], [1.0, 2.0]]
    """
    a, b = np.asarray(z_start, dtype=np.float64).ravel(), np.asarray(z_end, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"z_start and z_end must have the same length, got {a.shape} and {b.shape}.")
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}.")
    t = np.linspace(0.0, 1.0, n_points)[:, None]
    return (1 - t) * a + t * b


def plot_latent_map(embedding, color, path, *, title="", label="", centers=None, categorical=False):
    """Save a 2-D scatter of an embedding as a PNG (atomically).

    Parameters
    ----------
    embedding : array-like of shape (n_samples, 2)
    color : array-like of shape (n_samples,)
    path : str or path-like
    title, label : str
        Figure title and colour-bar label.
    centers : array-like of shape (k, 2), default=None
        Points annotated with their index (cluster centres).
    categorical : bool, default=False
        Use a qualitative colour map.

    Returns
    -------
    path : str

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from sklearn_disentangle.opus_dsd.analysis import plot_latent_map
    >>> out = plot_latent_map(np.random.rand(20, 2), np.arange(20), os.path.join(tempfile.mkdtemp(), "m.png"))
    >>> os.path.getsize(out) > 0
    True
    """
    from matplotlib.figure import Figure

    emb = np.asarray(embedding, dtype=np.float64)
    fig = Figure(figsize=(5.2, 4.4))
    ax = fig.subplots()
    cmap = "tab20" if categorical else "twilight"
    sc = ax.scatter(emb[:, 0], emb[:, 1], c=np.asarray(color), s=4, cmap=cmap, alpha=0.8, linewidths=0)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label(label)
    if centers is not None:
        for i, (x, y) in enumerate(np.asarray(centers)):
            ax.annotate(str(i), (x, y), fontsize=8, weight="bold", ha="center", va="center")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_cluster_stars(particles, labels, output_dir, *, prefix="cluster"):
    """Write one STAR file per cluster holding that cluster's particles.

    When the particles came from a STAR file (their ``metadata`` has ``rlnImageName``), each
    file holds the particles' *original* rows (optics block rebuilt), image paths unchanged, as
    RELION expects them relative to its project folder; read them back with
    ``StarReader(datadir=<folder the original paths are relative to>)``. Particles held in
    memory are written with :meth:`~sklearn_disentangle.io.ParticleStack.to_star` (images
    into a ``.mrcs`` beside each file).

    Parameters
    ----------
    particles : ParticleStack
    labels : array-like of shape (n_particles,)
        Non-negative integer cluster labels.
    output_dir : str or path-like
    prefix : str, default="cluster"

    Returns
    -------
    paths : dict of int to str
        Cluster label to file (clusters without particles are skipped).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn_disentangle.io import ParticleStack, read_star
    >>> from sklearn_disentangle.opus_dsd.analysis import write_cluster_stars
    >>> stack = ParticleStack(np.zeros((4, 8, 8)), pixel_size=2.0)
    >>> paths = write_cluster_stars(stack, [0, 1, 1, 0], tempfile.mkdtemp())
    >>> len(read_star(paths[1]))
    2
    """
    labels = np.asarray(labels)
    if labels.shape != (len(particles),):
        raise ValueError(f"labels must have shape ({len(particles)},), got {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ValueError("labels must be non-negative integers.")
    os.makedirs(output_dir, exist_ok=True)
    meta = particles.metadata
    original = meta is not None and "rlnImageName" in meta.columns
    paths = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        path = os.path.join(os.fspath(output_dir), f"{prefix}{int(c)}.star")
        if original:
            write_star(path, meta.iloc[rows].reset_index(drop=True))
        else:
            particles[rows].to_star(path)
        paths[int(c)] = path
    return paths


def write_volume_series(volumes, output_dir, pixel_size, *, prefix="vol"):
    """Write volumes as ``<prefix>_000.mrc``, ``<prefix>_001.mrc``, ... (atomically).

    Parameters
    ----------
    volumes : array-like of shape (n, D, D, D)
    output_dir : str or path-like
        Created if needed.
    pixel_size : float
        Voxel size in Angstrom (header).
    prefix : str, default="vol"

    Returns
    -------
    paths : list of str

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn_disentangle.io import read_mrc
    >>> from sklearn_disentangle.opus_dsd.analysis import write_volume_series
    >>> paths = write_volume_series(np.zeros((2, 8, 8, 8)), tempfile.mkdtemp(), 3.0)
    >>> len(paths), read_mrc(paths[0])[1].pixel_size
    (2, 3.0)
    """
    vols = np.asarray(volumes, dtype=np.float32)
    if vols.ndim != 4 or not vols.shape[1] == vols.shape[2] == vols.shape[3]:
        raise ValueError(f"volumes must have shape (n, D, D, D), got {vols.shape}.")
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for i, v in enumerate(vols):
        path = os.path.join(os.fspath(output_dir), f"{prefix}_{i:03d}.mrc")
        write_mrc(path, v, pixel_size=float(pixel_size), kind="volume")
        paths.append(path)
    return paths


def _write_text(path, array, fmt="%.6f"):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        np.savetxt(tmp, array, fmt=fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _save_npy(path, array):
    tmp = f"{path}.tmp-{os.getpid()}.npy"
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def analyze(estimator, particles, n_clusters=16, output_dir=None, *, n_pcs=2, n_points=10, umap=True,
            trajectory=None, write_volumes=True, random_state=0, umap_kwargs=None):
    """The post-training analysis of OPUS-DSD for a fitted estimator, written to ``output_dir``.

    Encodes the particles, runs :func:`cluster_latents`, draws PCA (and UMAP) maps coloured by
    cluster and by view direction, writes the volume at each cluster centre, one STAR file per
    cluster (:func:`write_cluster_stars`), volume series along the first ``n_pcs`` principal
    components and along a trajectory between two latents, and a ``summary.json``.

    Parameters
    ----------
    estimator : OpusDSD
        Fitted.
    particles : ParticleStack
        The particles to analyse (usually the training set).
    n_clusters : int, default=16
    output_dir : str or path-like
        Created if needed.
    n_pcs : int, default=2
        Principal components to traverse (0: none).
    n_points : int, default=10
        Volumes per principal-component and trajectory series.
    umap : bool, default=True
        Also compute a UMAP embedding (umap-learn, imported lazily; slow on first use).
    trajectory : tuple of two ints or two codes, default=None
        End points of the latent trajectory: two cluster indices, or two ``z_dim`` codes.
        ``None``: the first and last cluster centres (the two ends of the dendrogram order).
    write_volumes : bool, default=True
        Write the ``.mrc`` files (False: only latents, clusters, maps and STAR files).
    random_state : int, default=0
    umap_kwargs : dict, default=None
        Passed to ``umap.UMAP``.

    Returns
    -------
    summary : sklearn.utils.Bunch
        ``z``, ``labels``, ``centers``, ``center_indices``, ``pca`` (2-D embedding), ``umap``
        (or None), ``files`` (dict of lists of written paths), ``output_dir``.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_disentangle.opus_dsd import OpusDSD
    >>> from sklearn_disentangle.datasets import make_cryoem_particles
    >>> stack, _ = make_cryoem_particles(32, 16, n_conformations=2, random_state=0)
    >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
    >>> out = est.analyze(stack, n_clusters=2, output_dir=tempfile.mkdtemp(), umap=False, n_pcs=1, n_points=2)
    >>> sorted(out.files), out.labels.shape
    (['maps', 'pc', 'stars', 'trajectory', 'volumes'], (32,))
    """
    from ..cryoem.rotations import matrix_to_euler
    from ..plotting import embed_latents
    from .geometry import view_groups

    if output_dir is None:
        raise ValueError("analyze needs output_dir= (a folder for the maps, volumes and STAR files).")
    os.makedirs(output_dir, exist_ok=True)
    out = os.fspath(output_dir)
    z = estimator.transform(particles)
    _save_npy(os.path.join(out, "z.npy"), z)
    clusters = cluster_latents(z, n_clusters, random_state=random_state)
    kdir = os.path.join(out, f"kmeans{n_clusters}")
    os.makedirs(kdir, exist_ok=True)
    _save_npy(os.path.join(kdir, "labels.npy"), clusters.labels)
    _write_text(os.path.join(kdir, "centers.txt"), clusters.centers)
    _write_text(os.path.join(kdir, "centers_ind.txt"), clusters.center_indices, fmt="%d")
    files = {"maps": [], "volumes": [], "stars": [], "pc": [], "trajectory": []}

    tilt = matrix_to_euler(particles.rotations).numpy()[:, 1]
    groups = view_groups(particles.rotations, 12)
    embeddings = {"pca": embed_latents(z, "pca", random_state=random_state)}
    if umap:
        embeddings["umap"] = embed_latents(z, "umap", random_state=random_state, **(umap_kwargs or {}))
        _save_npy(os.path.join(out, "umap.npy"), embeddings["umap"])
    for name, emb in embeddings.items():
        cen = emb[clusters.center_indices]
        files["maps"].append(plot_latent_map(emb, clusters.labels, os.path.join(out, f"{name}.png"),
                                             title=f"{name.upper()} of z, k-means {n_clusters}", label="cluster",
                                             centers=cen, categorical=True))
        files["maps"].append(plot_latent_map(emb, groups, os.path.join(out, f"{name}_pose.png"),
                                             title=f"{name.upper()} of z by view direction (12 groups)",
                                             label="view group", categorical=True))
        files["maps"].append(plot_latent_map(emb, tilt, os.path.join(out, f"{name}_tilt.png"),
                                             title=f"{name.upper()} of z by tilt", label="tilt (deg)"))
    files["stars"] = list(write_cluster_stars(particles, clusters.labels, kdir).values())

    traj_codes = None
    if trajectory is None:
        trajectory = (0, n_clusters - 1)
    a, b = trajectory
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        for i in (a, b):
            if not 0 <= int(i) < n_clusters:
                raise ValueError(f"trajectory cluster indices must be in [0, {n_clusters}), got {trajectory}.")
        a, b = clusters.centers[int(a)], clusters.centers[int(b)]
    traj_codes = latent_trajectory(a, b, n_points)
    tdir = os.path.join(out, "trajectory")
    os.makedirs(tdir, exist_ok=True)
    _write_text(os.path.join(tdir, "z.txt"), traj_codes)
    pcs = []
    for j in range(min(n_pcs, min(z.shape))):
        pdir = os.path.join(out, f"pc{j + 1}")
        os.makedirs(pdir, exist_ok=True)
        codes = pc_trajectory(z, j, n_points)
        _write_text(os.path.join(pdir, "z_pc.txt"), codes)
        pcs.append((pdir, codes))
    if write_volumes:
        files["volumes"] = estimator.write_volumes(clusters.centers, kdir, prefix="reference")
        files["trajectory"] = estimator.write_volumes(traj_codes, tdir, prefix="vol")
        for pdir, codes in pcs:
            files["pc"] += estimator.write_volumes(codes, pdir, prefix="vol")
    summary = {
        "n_particles": int(len(z)), "n_clusters": int(n_clusters),
        "cluster_sizes": np.bincount(clusters.labels, minlength=n_clusters).tolist(),
        "center_indices": clusters.center_indices.tolist(),
        "volume_pixel_size": float(estimator.volume_pixel_size_), "files": files,
    }
    tmp = os.path.join(out, f".summary.json.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(summary, fh, indent=1)
    os.replace(tmp, os.path.join(out, "summary.json"))
    return Bunch(z=z, labels=clusters.labels, centers=clusters.centers, center_indices=clusters.center_indices,
                 pca=embeddings["pca"], umap=embeddings.get("umap"), trajectory=traj_codes, files=files,
                 output_dir=out)
