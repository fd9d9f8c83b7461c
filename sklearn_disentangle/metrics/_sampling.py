"""Batch samplers for the interventional metrics (FactorVAE score, beta-VAE score, mFVM).

Two sources of codes share one interface, so every metric has a single implementation:

- :class:`PoolSampler` draws rows of a finite labelled pool of codes ("pool form"). A batch
  with factor set ``S`` held fixed is drawn as disentanglement_lib draws it from a
  generator: a first row uniformly at random, then every other row uniformly among the
  pool rows whose factors in ``S`` equal those of the first row (the first row is part of
  the batch). This is exact in distribution when the pool is a complete factor grid, or
  when the factors are independent; with correlated factors it conditions on ``S``.
  Everything is vectorised.
- :class:`GeneratorSampler` samples observations from a
  :class:`~sklearn_disentangle.datasets.GroundTruthDataset` and encodes them with
  ``estimator.transform``, consuming the ``RandomState`` in exactly the order of
  disentanglement_lib (one stream, used sequentially). Observations of many batches are
  encoded together (the representation is deterministic, so batching does not change
  the codes).

Methods (``rng`` is a ``numpy.random.RandomState``):

- ``iid_codes(n, rng)`` -> (n, n_codes)
- ``fixed_batches(n_batches, batch_size, n_fixed, rng, subset_mode)`` yields chunks
  ``(subsets, codes)`` with ``subsets`` (m, n_fixed) sorted factor indices and codes
  (m, batch_size, n_codes);
- ``pair_batches(n_points, batch_size, rng)`` yields ``(k, codes1, codes2)`` chunks.
"""

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # codes gathered per chunk (float64: 32 MiB)


class PoolSampler:
    """Draw (fixed-factor) batches from a labelled pool of codes."""

    def __init__(self, factors, codes):
        self.factors = np.asarray(factors)
        self.codes = np.asarray(codes, dtype=np.float64)
        self.n_samples, self.n_factors = self.factors.shape
        self.n_codes = self.codes.shape[1]
        self._groupings = {}

    def _grouping(self, cols):
        """Group id of every row by the values of factor columns ``cols``."""
        key = tuple(int(c) for c in cols)
        if key not in self._groupings:
            _, gid = np.unique(self.factors[:, list(key)], axis=0, return_inverse=True)
            gid = gid.reshape(-1)
            order = np.argsort(gid, kind="stable")
            counts = np.bincount(gid)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self._groupings[key] = (gid, order, starts, counts)
        return self._groupings[key]

    def _rows_like(self, anchors, cols, n_draws, rng):
        """(len(anchors), n_draws) rows matching each anchor row on factor columns cols."""
        gid, order, starts, counts = self._grouping(cols)
        g = gid[anchors]
        u = rng.random_sample((anchors.size, n_draws))
        cnt = counts[g][:, None]
        offs = np.minimum((u * cnt).astype(np.int64), cnt - 1)
        return order[starts[g][:, None] + offs]

    def _chunk(self, batch_size):
        return max(1, _CHUNK_ELEMENTS // max(1, batch_size * self.n_codes))

    def iid_codes(self, n, rng):
        return self.codes[rng.randint(self.n_samples, size=n)]

    def fixed_batches(self, n_batches, batch_size, n_fixed, rng, subsets=None):
        if subsets is None:
            subsets = random_subsets(n_batches, self.n_factors, n_fixed, rng)
        # process the votes subset by subset (each subset has its own grouping)
        uniq, inverse = np.unique(subsets, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        anchors = rng.randint(self.n_samples, size=n_batches)
        chunk = self._chunk(batch_size)
        for u in range(uniq.shape[0]):
            idx = np.flatnonzero(inverse == u)
            for start in range(0, idx.size, chunk):
                sel = idx[start : start + chunk]
                a = anchors[sel]
                rows = self._rows_like(a, uniq[u], batch_size - 1, rng)
                rows = np.concatenate([a[:, None], rows], axis=1)
                yield subsets[sel], self.codes[rows]

    def pair_batches(self, n_points, batch_size, rng):
        ks = rng.randint(self.n_factors, size=n_points)
        chunk = self._chunk(2 * batch_size)
        for k in range(self.n_factors):
            idx = np.flatnonzero(ks == k)
            for start in range(0, idx.size, chunk):
                m = idx[start : start + chunk].size
                rows1 = rng.randint(self.n_samples, size=(m, batch_size))
                rows2 = self._rows_like(rows1.ravel(), [k], 1, rng).reshape(m, batch_size)
                yield np.full(m, k), self.codes[rows1], self.codes[rows2]


def random_subsets(n, n_factors, n_fixed, rng):
    """n uniformly random sorted subsets of size n_fixed of range(n_factors), (n, n_fixed)."""
    if n_fixed == 1:
        return rng.randint(n_factors, size=(n, 1))
    keys = rng.random_sample((n, n_factors))
    return np.sort(np.argsort(keys, axis=1)[:, :n_fixed], axis=1)


def encode(estimator, observations, batch_size):
    """Codes of ``observations`` from ``estimator.transform`` in batches, as float64."""
    n = observations.shape[0]
    out = None
    for start in range(0, n, batch_size):
        z = np.asarray(estimator.transform(observations[start : start + batch_size]))
        if z.ndim != 2:
            raise ValueError(
                f"estimator.transform must return a 2-D array (n_samples, n_codes), got shape {z.shape}."
            )
        if out is None:
            out = np.empty((n, z.shape[1]), dtype=np.float64)
        out[start : start + z.shape[0]] = z
    if out is None:
        raise ValueError("cannot encode an empty set of observations.")
    if not np.all(np.isfinite(out)):
        raise ValueError("estimator.transform returned NaN or infinite codes; check the fitted model.")
    return out


class GeneratorSampler:
    """Draw observations from a ground-truth dataset in disentanglement_lib's order and encode them."""

    def __init__(self, estimator, dataset, encode_batch_size=256, votes_per_chunk=64):
        self.estimator = estimator
        self.dataset = dataset
        self.n_factors = dataset.n_factors
        self.encode_batch_size = encode_batch_size
        self.votes_per_chunk = votes_per_chunk

    def encode(self, observations):
        return encode(self.estimator, observations, self.encode_batch_size)

    def iid_pool(self, n, rng, batch_size=16):
        """dlib's ``generate_batch_factor_code``: ``dataset.sample`` in chunks of batch_size."""
        factors, codes = [], []
        obs_buffer, n_buffered = [], 0
        remaining = n
        while remaining > 0:
            m = min(batch_size, remaining)
            f, x = self.dataset.sample(m, rng)
            factors.append(np.asarray(f))
            obs_buffer.append(np.asarray(x))
            n_buffered += m
            remaining -= m
            if n_buffered >= 4096 or remaining == 0:
                codes.append(self.encode(np.concatenate(obs_buffer)))
                obs_buffer, n_buffered = [], 0
        return np.concatenate(factors), np.concatenate(codes)

    def iid_codes(self, n, rng):
        """dlib's variance estimate: ``dataset.sample_observations(n, rng)`` in one call."""
        return self.encode(np.asarray(self.dataset.sample_observations(n, rng)))

    def fixed_batches(self, n_batches, batch_size, n_fixed, rng, subsets=None):
        """Per vote: the fixed set (FVM: ``rng.randint(K)``; mFVM: a random k-subset), then
        ``sample_factors(batch_size)``, overwrite the fixed columns by the first row's,
        ``sample_observations_from_factors`` -- the order of dlib's factor_vae.py."""
        data = self.dataset
        done = 0
        while done < n_batches:
            m = min(self.votes_per_chunk, n_batches - done)
            subs, obs = [], []
            for _ in range(m):
                if n_fixed == 1:
                    s = np.array([rng.randint(self.n_factors)])
                else:
                    s = np.sort(rng.choice(self.n_factors, n_fixed, replace=False))
                f = np.array(data.sample_factors(batch_size, rng))
                f[:, s] = f[0, s]
                obs.append(np.asarray(data.sample_observations_from_factors(f, rng)))
                subs.append(s)
            codes = self.encode(np.concatenate(obs))
            done += m
            yield np.stack(subs), codes.reshape(m, batch_size, -1)

    def pair_batches(self, n_points, batch_size, rng):
        """Per point, dlib's beta_vae.py order: ``randint(K)``, factors1, factors2 (column k
        copied from factors1), observations1, observations2."""
        data = self.dataset
        done = 0
        while done < n_points:
            m = min(self.votes_per_chunk, n_points - done)
            ks, obs1, obs2 = [], [], []
            for _ in range(m):
                k = rng.randint(self.n_factors)
                f1 = np.array(data.sample_factors(batch_size, rng))
                f2 = np.array(data.sample_factors(batch_size, rng))
                f2[:, k] = f1[:, k]
                obs1.append(np.asarray(data.sample_observations_from_factors(f1, rng)))
                obs2.append(np.asarray(data.sample_observations_from_factors(f2, rng)))
                ks.append(k)
            c1 = self.encode(np.concatenate(obs1)).reshape(m, batch_size, -1)
            c2 = self.encode(np.concatenate(obs2)).reshape(m, batch_size, -1)
            done += m
            yield np.asarray(ks), c1, c2
