"""Memory and throughput of reading a large particle stack through ``ParticleStack``.

Writes a stack of ``--size-gb`` GB (default 2) of float32 images to a temporary folder,
then iterates over it in batches twice, alternating

- ``ParticleStack.from_mrcs(path).iter_batches(batch_size)``, and
- raw ``mrcfile.mmap(path).data[a:b]`` copied to float32 (the baseline),

each in a fresh subprocess, and reports the peak resident-memory growth during the loop
(``VmHWM`` after the loop minus ``VmRSS`` before it, from ``/proc/self/status``) and the read
throughput. Targets: peak RSS growth < 200 MB and throughput >= 0.9 x the baseline. The stack
is deleted at the end unless ``--keep`` is given.

Usage::

    python benchmarks/bench_io.py                      # 2 GB
    python benchmarks/bench_io.py --size-gb 0.5        # quick run
    python benchmarks/bench_io.py --size-gb 2 --write-results benchmarks/results/io_bench.md
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def _status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux >= 4.0); returns False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _measure(mode, path, batch_size):
    """Run in a child process: iterate over the stack, return timing and memory as JSON."""
    import mrcfile

    from sklearn_disentangle.io import ParticleStack

    if mode == "particlestack":
        stack = ParticleStack.from_mrcs(path)
        n = len(stack)
        batches = stack.iter_batches(batch_size)
    else:
        mrc = mrcfile.mmap(path, mode="r", permissive=True)
        data = mrc.data
        n = data.shape[0]
        batches = (np.array(data[a:a + batch_size], dtype=np.float32) for a in range(0, n, batch_size))
    reset = _reset_peak()
    rss0 = _status("VmRSS")
    checksum = 0.0
    nbytes = 0
    t0 = time.perf_counter()
    for batch in batches:
        checksum += float(batch[:, 0, 0].sum())  # touch the batch without adding work
        nbytes += batch.nbytes
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    return {"mode": mode, "n": n, "bytes": nbytes, "seconds": seconds, "gb_per_s": nbytes / seconds / 1e9,
            "rss_before_mb": rss0 / 1e6, "peak_growth_mb": (peak - rss0) / 1e6, "peak_reset": reset,
            "checksum": checksum}


def _run_child(mode, path, batch_size):
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--path", path, "--batch-size", str(batch_size)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(runs):
    return ", ".join(f"{r['gb_per_s']:.2f}" for r in runs)


def _write_stack(path, size_gb, box, chunk_images=512):
    from sklearn_disentangle.io.mrc import mrc_stack_writer

    n = int(size_gb * 1e9 // (box * box * 4))
    rng = np.random.default_rng(0)
    block = rng.standard_normal((chunk_images, box, box), dtype=np.float32)
    with mrc_stack_writer(path, n, box, pixel_size=1.0) as out:
        for a in range(0, n, chunk_images):
            b = min(n, a + chunk_images)
            out[a:b] = block[: b - a] + np.float32(a)  # distinct content per chunk, no RNG cost
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="stack size in GB (default 2)")
    parser.add_argument("--box", type=int, default=256, help="image size in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating passes per reader (default 2)")
    parser.add_argument("--dir", default=None, help="folder for the temporary stack (default: system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the stack file")
    parser.add_argument("--write-results", default=None, help="append a Markdown report to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(_measure(args.child, args.path, args.batch_size)))
        return 0

    start = time.perf_counter()
    folder = args.dir or tempfile.gettempdir()
    free = shutil.disk_usage(folder).free
    need = args.size_gb * 1e9 * 1.1 + 1e9
    if free < need:
        print(f"not enough disk space in {folder}: {free / 1e9:.1f} GB free, need {need / 1e9:.1f} GB", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="bench_io_", dir=folder)
    path = os.path.join(workdir, "stack.mrcs")
    try:
        t = time.perf_counter()
        n = _write_stack(path, args.size_gb, args.box)
        write_s = time.perf_counter() - t
        size = os.path.getsize(path)
        print(f"wrote {n} images of {args.box}x{args.box} ({size / 1e9:.2f} GB) in {write_s:.1f} s to {path}")
        results = {"particlestack": [], "mrcfile_mmap": []}
        for _ in range(args.repeats):
            for mode in ("mrcfile_mmap", "particlestack"):
                r = _run_child(mode, path, args.batch_size)
                results[mode].append(r)
                print(f"  {mode:14s} {r['gb_per_s']:6.2f} GB/s  {r['seconds']:6.2f} s  "
                      f"peak RSS growth {r['peak_growth_mb']:8.1f} MB")
        ps, raw = results["particlestack"], results["mrcfile_mmap"]
        if not all(r["checksum"] == ps[0]["checksum"] for r in ps + raw):
            raise RuntimeError("readers disagree on the data")
        best_ps = max(r["gb_per_s"] for r in ps)
        best_raw = max(r["gb_per_s"] for r in raw)
        ratio = best_ps / best_raw
        median_ratio = float(np.median([r["gb_per_s"] for r in ps]) / np.median([r["gb_per_s"] for r in raw]))
        growth = max(r["peak_growth_mb"] for r in ps)
        raw_growth = max(r["peak_growth_mb"] for r in raw)
        total = time.perf_counter() - start
        ok_mem, ok_speed = growth < 200, ratio >= 0.9
        print(f"ParticleStack: peak RSS growth {growth:.1f} MB (target < 200: {'PASS' if ok_mem else 'FAIL'}); "
              f"throughput {best_ps:.2f} GB/s = {ratio:.2f} x mrcfile.mmap {best_raw:.2f} GB/s "
              f"(target >= 0.9: {'PASS' if ok_speed else 'FAIL'}; median ratio {median_ratio:.2f}); "
              f"mrcfile.mmap peak RSS growth {raw_growth:.1f} MB; "
              f"total {total:.1f} s")
        if args.write_results:
            cmd = "python benchmarks/bench_io.py " + " ".join(argv if argv is not None else sys.argv[1:])
            with open(args.write_results, "a") as fh:
                fh.write(
                    f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
                    f"- command: `{cmd.strip()}`\n"
                    f"- machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n"
                    f"- stack: {n} images of {args.box}x{args.box} float32, {size / 1e9:.2f} GB, written in "
                    f"{write_s:.1f} s; batches of {args.batch_size}; {args.repeats} alternating passes per reader, "
                    "each in a fresh process (page cache warm after the write)\n"
                    f"- total time: {total:.1f} s\n\n"
                    "| reader | best GB/s | passes (GB/s) | peak RSS growth (MB) |\n|---|---|---|---|\n"
                    f"| ParticleStack.iter_batches | {best_ps:.2f} | "
                    f"{_fmt(ps)} | {growth:.1f} |\n"
                    f"| mrcfile.mmap slices | {best_raw:.2f} | "
                    f"{_fmt(raw)} | {raw_growth:.1f} |\n\n"
                    f"Throughput ratio (best/best) {ratio:.2f}, median/median {median_ratio:.2f} "
                    f"(target >= 0.9: {'PASS' if ok_speed else 'FAIL'}); "
                    f"ParticleStack peak RSS growth {growth:.1f} MB (target < 200 MB: {'PASS' if ok_mem else 'FAIL'}).\n"
                )
        return 0 if ok_mem and ok_speed else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
