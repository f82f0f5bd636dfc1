"""Window loop vs chunked scatter for applying foci kernels (one ALE relocation).

``nimare_jax.ops.kernels.resolve_strategy("auto")`` picks the window loop on CPU and the
scatter on GPU/TPU; this prints both on the current backend so the choice can be checked.

Usage::

    python benchmarks/bench_strategies.py [--repeats 10]
"""

import argparse
import time
import warnings

import jax

from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma.ale import relocation_maps
from nimare_jax.meta.cbma.kernel import ALEKernel
from nimare_jax.spatial import get_resource_path


def main(argv=None) -> None:
    """Print one row per strategy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")
    arrays = ALEKernel().prepare(dset)
    key = jax.random.key(0)
    print(
        f"backend: {jax.default_backend()}, {len(arrays.ids)} experiments, "
        f"{arrays.ijk.shape[0]} foci"
    )
    print("| strategy | compile + first call s | ms per relocation | max ALE (same draw) |")
    print("|---|---|---|---|")
    for strategy in ("window", "scatter"):
        volume, operands = relocation_maps(arrays, strategy)
        run = jax.jit(lambda k, o, volume=volume: volume(k, o).max())
        t = time.perf_counter()
        first = float(run(key, operands))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(args.repeats):
            out = run(jax.random.fold_in(key, i), operands)
        out.block_until_ready()
        per = (time.perf_counter() - t) / args.repeats * 1e3
        print(f"| {strategy} | {compile_s:.2f} | {per:.1f} | {first:.6f} |")


if __name__ == "__main__":
    main()
