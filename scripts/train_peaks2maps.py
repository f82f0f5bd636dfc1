"""Train the peaks2maps network on simulated studies and write its weights and metrics.

Usage::

    python scripts/train_peaks2maps.py [--steps 500] [--batch 16] [--seed 0]
        [--out nimare_jax/resources/peaks2maps]

Every training study is simulated on the fly by
:func:`nimare_jax.peaks2maps.data.simulate_study` from the training population (seed
``TRAIN_POPULATION``; batch ``s`` holds studies ``s * batch ... s * batch + batch - 1``), so
a run is fully determined by ``--seed`` (network initialisation), ``--steps`` and
``--batch``. Held-out studies come from a different population (``HELDOUT_POPULATION``).
The loss is the mean squared error over the coarse brain mask; the optimiser is Adam with
linear warm-up, cosine decay and gradient clipping (optax).

Writes ``peaks2maps_weights.npz`` (parameters and metadata) and ``training_metrics.json``
(loss curve, held-out correlations of the network and of the ALE kernel, wall time).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nimare_jax.io.weights import save_params
from nimare_jax.meta.cbma.kernel import coarse_mask
from nimare_jax.ops import unet
from nimare_jax.peaks2maps import data
from nimare_jax.peaks2maps.evaluate import (
    HELDOUT_POPULATION,
    TRAIN_POPULATION,
    correlations,
    evaluate,
    predict,
)

N_CHECK = 8  # held-out studies 0..7: the fixed check stored with the weights (tests use it)
ALE_FWHMS = (8.0, 12.0, 16.0, 20.0)


def main(argv=None) -> None:
    """Train, evaluate on held-out studies, and write weights and metrics."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_heldout", type=int, default=200)
    parser.add_argument("--out", default="nimare_jax/resources/peaks2maps")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    mask = jnp.asarray(coarse_mask(), jnp.float32)
    n_mask = float(mask.sum())
    key = jax.random.key(args.seed)
    params = unet.init(key)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        args.lr,
        warmup_steps=min(50, args.steps // 10),
        decay_steps=args.steps,
        end_value=args.lr * 0.01,
    )
    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    opt_state = optimiser.init(params)

    def loss_fn(p, x, y):
        return jnp.sum((unet.apply(p, x, mask) - y) ** 2) / (x.shape[0] * n_mask)

    @jax.jit
    def step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = optimiser.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    val_inputs, val_targets, _ = data.simulate_batch(HELDOUT_POPULATION, range(1000, 1032))

    def batch_at(s):
        x, y, _ = data.simulate_batch(
            TRAIN_POPULATION, range(s * args.batch, (s + 1) * args.batch)
        )
        return x, y

    print(f"parameters: {unet.n_parameters(params)}; steps {args.steps} x batch {args.batch}")
    losses, curve = [], []
    with ThreadPoolExecutor(1) as pool:  # simulate the next batch while this one trains
        future = pool.submit(batch_at, 0)
        for s in range(args.steps):
            x, y = future.result()
            if s + 1 < args.steps:
                future = pool.submit(batch_at, s + 1)
            params, opt_state, loss = step(params, opt_state, x, y)
            losses.append(float(loss))
            if (s + 1) % 50 == 0 or s + 1 == args.steps:
                r = float(correlations(predict(params, val_inputs), val_targets).mean())
                elapsed = time.perf_counter() - start
                curve.append({"step": s + 1, "loss": float(np.mean(losses[-50:])), "val_r": r})
                print(
                    f"step {s + 1:5d}  loss {curve[-1]['loss']:.4f}  val r {r:.3f}  "
                    f"{elapsed:7.1f} s",
                    flush=True,
                )
    train_seconds = time.perf_counter() - start

    heldout = evaluate(params, range(args.n_heldout), ale_fwhms=ALE_FWHMS)
    check = evaluate(params, range(N_CHECK))
    summary = {k: float(np.mean(v)) for k, v in heldout.items()}
    wins = float(np.mean(heldout["network"] > heldout["ale"]))
    metrics = {
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "train_population": TRAIN_POPULATION,
        "heldout_population": HELDOUT_POPULATION,
        "n_training_studies": args.steps * args.batch,
        "n_parameters": unet.n_parameters(params),
        "train_seconds": train_seconds,
        "jax_version": jax.__version__,
        "heldout_n": args.n_heldout,
        "heldout_mean_r": summary,
        "heldout_median_r": {k: float(np.median(v)) for k, v in heldout.items()},
        "heldout_sd_r": {k: float(np.std(v)) for k, v in heldout.items()},
        "heldout_share_network_beats_ale": wins,
        "check_indices": list(range(N_CHECK)),
        "check_network_r": check["network"].tolist(),
        "check_ale_r": check["ale"].tolist(),
        "curve": curve,
    }
    save_params(
        params,
        out / "peaks2maps_weights.npz",
        seed=args.seed,
        steps=args.steps,
        batch=args.batch,
        check_network_r=check["network"],
        check_ale_r=check["ale"],
        heldout_network_r=summary["network"],
        heldout_ale_r=summary["ale"],
    )
    (out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: metrics[k] for k in ("heldout_mean_r", "train_seconds")}, indent=2))
    print(f"network beats the ALE kernel on {100 * wins:.1f}% of held-out studies")


if __name__ == "__main__":
    main()
