"""Overhead of training through the estimator (skorch net, callbacks, batching) vs plain torch.

Trains the same small convolutional beta-VAE (CFASL's 32 px architecture, z_dim=10) on the
same 32 x 32 dSprites-like images for the same number of epochs, at batch 64 on CPU:

- ``estimator``: ``CFASLVAE(...).fit(X)`` (validation, the skorch ``DisentangleNet``,
  whole-batch slicing, NaN guard and per-term history included);
- ``torch loop``: a hand-written loop over shuffled tensor slices with the same module,
  optimiser and objective.

Both run alternately in one process, ``--repeats`` times; the script prints the median
time of each and the ratio estimator / torch loop (target <= 1.10). Gradient clipping is
off on both sides so they do identical arithmetic.

Usage: python benchmarks/bench_training_overhead.py [--n 2048] [--epochs 3] [--repeats 5] [--threads 1]
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.cfasl.model import VAEModule
from sklearn_disentangle.cfasl.objectives import BetaVAEObjective
from sklearn_disentangle.datasets import make_dsprites_like


def torch_loop(X, epochs, batch_size, lr, seed, z_dim):
    torch.manual_seed(seed)
    module = VAEModule(X.shape[1:], z_dim, BetaVAEObjective(), hidden_dim=128, reconstruction="bernoulli", beta=4.0)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    Xt = torch.from_numpy(X)
    module.train()
    for _ in range(epochs):
        perm = torch.randperm(len(Xt))
        for start in range(0, len(Xt), batch_size):
            xb = Xt[perm[start:start + batch_size]]
            opt.zero_grad()
            loss = module.loss(module(xb), xb)["loss"]
            loss.backward()
            opt.step()
    return float(loss.detach())


def estimator_fit(X, epochs, batch_size, lr, seed, z_dim):
    est = CFASLVAE(z_dim=z_dim, beta=4.0, max_epochs=epochs, batch_size=batch_size, lr=lr,
                   gradient_clip=None, random_state=seed, reconstruction="bernoulli")
    est.fit(X[:, None])
    return est.history_[-1, "train_loss"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", default=None, help="write the table to this markdown file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, X = make_dsprites_like(resolution=32).sample(args.n, random_state=0)
    X = X[:, None].copy()  # (n, 1, 32, 32) for the torch loop
    kw = dict(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seed=0, z_dim=10)
    # warm-up (allocator, first-call overheads) for both paths
    torch_loop(X[:256], 1, args.batch_size, 1e-3, 0, 10)
    estimator_fit(X[:256, 0], 1, args.batch_size, 1e-3, 0, 10)
    t_est, t_loop = [], []
    t_all = time.perf_counter()
    for _ in range(args.repeats):
        t = time.perf_counter()
        torch_loop(X, **kw)
        t_loop.append(time.perf_counter() - t)
        t = time.perf_counter()
        estimator_fit(X[:, 0], **kw)
        t_est.append(time.perf_counter() - t)
    ratios = [e / l for e, l in zip(t_est, t_loop)]
    med_e, med_l = statistics.median(t_est), statistics.median(t_loop)
    lines = [
        f"command: python {' '.join(sys.argv)}",
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}",
        f"data: {args.n} x 1 x 32 x 32 dSprites-like (random_state=0), epochs {args.epochs}, batch {args.batch_size}, seed 0",
        "",
        "| path | median s | runs (s) |",
        "|---|---|---|",
        f"| torch loop | {med_l:.3f} | {', '.join(f'{t:.2f}' for t in t_loop)} |",
        f"| estimator | {med_e:.3f} | {', '.join(f'{t:.2f}' for t in t_est)} |",
        "",
        f"ratio estimator / torch loop: median of per-pair ratios {statistics.median(ratios):.3f} "
        f"(ratio of medians {med_e / med_l:.3f}; target <= 1.10)",
        f"benchmark wall time: {time.perf_counter() - t_all:.0f} s",
    ]
    print("\n".join(lines))
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text("# Training overhead: estimator vs hand-written torch loop\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
