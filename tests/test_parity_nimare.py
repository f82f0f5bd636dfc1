"""Live parity with NiMARE (``nox -s parity`` installs it; skipped when it is absent).

The default suite compares against NiMARE outputs stored in tests/data/reference; these
tests run NiMARE itself on other inputs, so a NiMARE upgrade that changes behaviour shows.
"""

import warnings

import numpy as np
import pytest

nimare = pytest.importorskip("nimare")

from conftest import DATA, LAIRD  # noqa: E402
from nimare.dataset import Dataset as NiDataset  # noqa: E402
from nimare.io import convert_sleuth_to_dataset as ni_sleuth  # noqa: E402
from nimare.meta import kernel as ni_kernel  # noqa: E402
from nimare.meta.cbma import ALE as NiALE  # noqa: E402

from nimare_jax.io import convert_sleuth_to_dataset  # noqa: E402
from nimare_jax.meta.cbma import ALE, ALEKernel, KDAKernel, MKDAKernel  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def pair():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nimare_jax.dataset import Dataset

        ours = Dataset(LAIRD)
        ids = list(ours.ids[:6])
        theirs = NiDataset(str(LAIRD)).slice(ids)
    return ours.slice(ids), theirs


@pytest.mark.parametrize(
    "ours,theirs,rtol",
    [
        (ALEKernel, ni_kernel.ALEKernel, 1e-5),
        (MKDAKernel, ni_kernel.MKDAKernel, 0),
        (KDAKernel, ni_kernel.KDAKernel, 0),
    ],
)
def test_ma_maps(pair, ours, theirs, rtol):
    d_ours, d_theirs = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = theirs().transform(d_theirs, return_type="array")
    ref = np.asarray(ref.toarray() if hasattr(ref, "toarray") else ref)
    order = [list(d_theirs.ids).index(i) for i in d_ours.ids]
    np.testing.assert_allclose(
        ours().transform(d_ours, return_type="array"), ref[order], rtol=rtol, atol=1e-9
    )


def test_ale_maps(pair):
    d_ours, d_theirs = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NiALE().fit(d_theirs)
    res = ALE().fit(d_ours)
    for name in ("stat", "z"):
        np.testing.assert_allclose(
            res.get_map(name, "array"),
            ref.get_map(name, return_type="array"),
            rtol=1e-5,
            atol=1e-6,
        )


def test_sleuth_conversion():
    path = DATA / "sleuth" / "test_sleuth_file2.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ni_sleuth(str(path))
    ours = convert_sleuth_to_dataset(path)
    assert sorted(ours.ids) == sorted(ref.ids)
    a = ours.coordinates.sort_values(["id", "x", "y", "z"])[["x", "y", "z"]].to_numpy()
    b = ref.coordinates.sort_values(["id", "x", "y", "z"])[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
