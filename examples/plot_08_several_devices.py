"""
Permutations on several devices
===============================

Every Monte Carlo null of nimare_jax runs through one engine
(``nimare_jax.ops.permute.run_permutations``) that spreads the iterations over devices:
GPUs, or the cores of a CPU exposed as devices. Iteration ``i`` always draws from the key
``fold_in(seed, i)``, so the null, and every corrected map, is the same whatever the
number of devices; ``docs/multihost.md`` extends this to several machines.

A CPU shows one device unless told otherwise *before JAX starts*:
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` in the environment, or
``nimare_jax.ops.permute.configure_cpu_devices(N)`` before the first computation. The
examples of this gallery share one Python process in which JAX is already running, so
this one starts a fresh process per device count and compares their nulls.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PROGRAM = """
import sys
import warnings

import jax
import numpy as np

from nimare_jax.correct import FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.spatial import get_resource_path

n_cores, out = int(sys.argv[1]), sys.argv[2]
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*unknown space.*")
    dset = Dataset(get_resource_path() / "data" / "laird_n20_dataset.json")
result = ALE(random_state=0).fit(dset)  # the seed of the permutations
corrector = FWECorrector(method="montecarlo", n_iters=64, n_cores=n_cores, progress=False)
corrected = corrector.transform(result)
print(f"{len(jax.devices())} device(s): {jax.devices()}")
null = corrected.null_distributions
np.savez(
    out,
    voxel=null["values_level-voxel_corr-fwe_method-montecarlo"],
    size=null["values_desc-size_level-cluster_corr-fwe_method-montecarlo"],
    z=corrected.get_map(
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo", return_type="array"
    ),
)
"""

# %%
# One run per device count
# ------------------------
# ``n_cores`` of the corrector (or ``--n_cores`` of the command line) sets how many devices
# the permutations use; the environment variable makes that many CPU devices exist.
runs = {}
with tempfile.TemporaryDirectory() as tmp:
    program = Path(tmp) / "fwe.py"
    program.write_text(PROGRAM)
    for n in (1, 2):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        out = Path(tmp) / f"null_{n}.npz"
        done = subprocess.run(
            [sys.executable, str(program), str(n), str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the {n}-device run failed:\n{done.stderr}")
        print(done.stdout.strip())
        with np.load(out) as f:
            runs[n] = {key: f[key] for key in f.files}

# %%
# The same null on one and on two devices
# ---------------------------------------
# Same seed (``ALE(random_state=0)``), same draws, same numbers: the device count changes
# only where each iteration runs.
for key, label in [("voxel", "voxel-level null"), ("size", "cluster-size null")]:
    same = np.array_equal(runs[1][key], runs[2][key])
    print(f"{label} ({len(runs[1][key])} iterations) identical on 1 and 2 devices: {same}")
print(f"cluster-level FWE z maps identical: {np.array_equal(runs[1]['z'], runs[2]['z'])}")
