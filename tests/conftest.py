import warnings
from pathlib import Path

import numpy as np
import pytest

from nimare_jax.dataset import Dataset
from nimare_jax.spatial import get_resource_path

DATA = Path(__file__).parent / "data"
REFERENCE = DATA / "reference"
LAIRD = get_resource_path() / "data" / "laird_n20_dataset.json"


@pytest.fixture(scope="session")
def laird():
    """The bundled 17-experiment / 1117-focus dataset (3 experiments in an unknown space)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown space.*")
        return Dataset(LAIRD)


@pytest.fixture(scope="session")
def reference():
    """Load a NiMARE 0.22.1 output file from tests/data/reference."""

    def load(name):
        with np.load(REFERENCE / f"{name}.npz") as f:
            return {k: f[k] for k in f.files}

    return load
