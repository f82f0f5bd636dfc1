import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from nimare_jax.ops import label as L

SHAPES = [(7, 8, 9), (1, 5, 4), (12, 3, 10)]
CONNS = [6, 18, 26]


def scipy_reference(active, weights, conn):
    """Independent computation: scipy labels + numpy bincount."""
    struct = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[conn])
    labels, n = ndimage.label(active, struct)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    masses = np.bincount(labels.ravel(), weights.ravel().astype(np.float64), minlength=n + 1)[1:]
    return labels, n, sizes, masses


def random_volume(seed, shape, density):
    rng = np.random.default_rng(seed)
    active = rng.random(shape) < density
    # dyadic weights: float32 sums are exact whatever the summation order
    weights = (rng.integers(1, 64, shape) / 8).astype(np.float32)
    return active, weights


@functools.cache
def jitted(conn, capacity):
    def f(a, w):
        stats = L.max_cluster_stats(a, w, connectivity=conn, capacity=capacity, backend="jax")
        table = L.cluster_table(a, w, connectivity=conn, capacity=capacity)
        labels, n = L.label_clusters_jax(a, connectivity=conn, capacity=capacity)
        return stats, table, labels, n

    return jax.jit(f)


def check_against_scipy(active, weights, conn, capacity):
    labels_ref, n, sizes, masses = scipy_reference(active, weights, conn)
    stats, table, labels, n_jax = jitted(conn, capacity)(active, weights)
    max_size = sizes.max() if n else 0
    max_mass = masses.max() if n else 0.0
    assert int(stats.max_size) == max_size
    assert float(stats.max_mass) == max_mass
    assert bool(stats.overflow) == (active.sum() > (capacity or L.default_capacity(active.shape)))
    assert int(table.n_clusters) == n
    k = min(n, table.sizes.shape[0])
    np.testing.assert_array_equal(np.asarray(table.sizes)[:k], sizes[:k])
    np.testing.assert_array_equal(np.asarray(table.masses)[:k], masses[:k])
    if k == n:  # sorted multiset of sizes
        np.testing.assert_array_equal(np.sort(np.asarray(table.sizes)[:n]), np.sort(sizes))
        assert not np.asarray(table.sizes)[n:].any()
    np.testing.assert_array_equal(np.asarray(labels), labels_ref)
    assert int(n_jax) == n


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(SHAPES),
    density=st.sampled_from([0.0, 0.05, 0.2, 0.4, 0.6, 0.9, 1.0]),
    conn=st.sampled_from(CONNS),
)
def test_matches_scipy_random_volumes(seed, shape, density, conn):
    active, weights = random_volume(seed, shape, density)
    check_against_scipy(active, weights, conn, capacity=None)


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(SHAPES[:2]),
    density=st.sampled_from([0.2, 0.5, 0.8]),
    conn=st.sampled_from(CONNS),
)
def test_overflow_falls_back_exactly(seed, shape, density, conn):
    """A buffer too small for the active voxels is flagged and the answer stays exact."""
    active, weights = random_volume(seed, shape, density)
    check_against_scipy(active, weights, conn, capacity=4)


def test_snake_cluster_needs_many_sweeps():
    """A long serpentine cluster (worst case for propagation) is one cluster."""
    active = np.zeros((7, 8, 9), bool)
    active[::2, :, 0] = True
    active[1::4, -1, 0] = True
    active[3::4, 0, 0] = True
    for conn in CONNS:
        check_against_scipy(active, np.ones(active.shape, np.float32), conn, capacity=None)
    assert scipy_reference(active, np.ones(active.shape), 6)[1] == 1


def test_known_example_and_mass_default():
    vol = np.zeros((7, 8, 9), bool)
    vol[0, 0, :3] = True  # 3 voxels
    vol[3, 4, 5] = True
    vol[1, 1, 3] = vol[2, 2, 3] = True  # edge-adjacent: 1+1 with 6-conn, 2 with 18
    ones = np.ones(vol.shape, np.float32)
    stats, table, _, _ = jitted(6, None)(vol, ones)
    assert int(stats.max_size) == 3
    assert float(stats.max_mass) == 3.0
    assert int(table.n_clusters) == 4
    assert int(jitted(18, None)(vol, ones)[1].n_clusters) == 3
    stats, table, labels, n = jitted(6, None)(np.zeros(vol.shape, bool), ones)
    assert (int(stats.max_size), float(stats.max_mass), int(n)) == (0, 0.0, 0)
    assert not np.asarray(labels).any()
    # default weights are ones
    assert float(L.max_cluster_stats(vol, backend="scipy").max_mass) == 3.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "scipy"])
def test_jit_equals_eager(backend):
    active, weights = random_volume(3, (7, 8, 9), 0.3)
    f = functools.partial(L.max_cluster_stats, connectivity=18, backend=backend, capacity=64)
    eager = f(active, weights)
    jitted_out = jax.jit(f)(active, weights)
    for a, b in zip(eager, jitted_out, strict=True):
        assert np.asarray(a) == np.asarray(b)
    ref = scipy_reference(active, weights, 18)
    assert int(eager.max_size) == ref[2].max()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "scipy"])
def test_vmap_equals_loop_with_mixed_overflow(backend):
    vols = [random_volume(s, (6, 7, 5), d) for s, d in enumerate([0.05, 0.5, 0.1, 0.9, 0.0])]
    active = np.stack([v[0] for v in vols])
    weights = np.stack([v[1] for v in vols])
    capacity = 40  # overflows for the dense members of the batch only
    f = functools.partial(L.max_cluster_stats, connectivity=6, backend=backend, capacity=capacity)
    batched = jax.jit(jax.vmap(f))(active, weights)
    for i in range(len(vols)):
        single = f(active[i], weights[i])
        assert int(batched.max_size[i]) == int(single.max_size)
        assert float(batched.max_mass[i]) == float(single.max_mass)
        assert bool(batched.overflow[i]) == bool(single.overflow)
        _, n, sizes, masses = scipy_reference(active[i], weights[i], 6)
        assert int(single.max_size) == (sizes.max() if n else 0)
        assert float(single.max_mass) == (masses.max() if n else 0.0)
    if backend == "jax":
        assert np.asarray(batched.overflow).any()
        assert not np.asarray(batched.overflow).all()


def test_host_label_clusters_equals_scipy():
    active, _ = random_volume(5, (10, 11, 12), 0.3)
    for conn in CONNS:
        labels, n = L.label_clusters(active, conn)
        ref, n_ref = scipy_reference(active, np.ones(active.shape), conn)[:2]
        assert n == n_ref
        np.testing.assert_array_equal(labels, ref)
        assert labels.dtype == np.int32


def test_structuring_elements_and_offsets():
    for conn, rank in [(6, 1), (18, 2), (26, 3)]:
        np.testing.assert_array_equal(
            L.structuring_element(conn), ndimage.generate_binary_structure(3, rank)
        )
        assert len(L.neighbour_offsets(conn)) == conn


def test_backend_resolution():
    assert L.resolve_label_backend("auto", "gpu") == "jax"
    assert L.resolve_label_backend("auto", "tpu") == "jax"
    assert L.resolve_label_backend("auto", "cpu") == L.AUTO_BACKEND_CPU
    assert L.resolve_label_backend("scipy") == "scipy"
    with pytest.raises(ValueError, match="label backend must be one of"):
        L.resolve_label_backend("cuda")


def test_bad_input():
    with pytest.raises(ValueError, match="connectivity must be 6, 18 or 26"):
        L.max_cluster_stats(np.ones((3, 3, 3), bool), connectivity=8)
    with pytest.raises(ValueError, match="3-D volume"):
        L.max_cluster_stats(np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="weights must have the shape"):
        L.max_cluster_stats(np.ones((3, 3, 3), bool), np.ones((3, 3, 2)))
    with pytest.raises(ValueError, match="capacity must be a positive"):
        L.max_cluster_stats(np.ones((3, 3, 3), bool), capacity=0, backend="jax")


def test_default_capacity():
    assert L.default_capacity((91, 109, 91)) == -(-91 * 109 * 91 // 64)
    assert L.default_capacity((4, 4, 4)) == 64
    assert jnp.asarray(0).dtype == jnp.int32  # x64 disabled: int32 labels are the contract


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.sampled_from(SHAPES),
    density=st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.6, 1.0]),
    conn=st.sampled_from(CONNS),
)
def test_host_backend_matches_ndimage(seed, shape, density, conn):
    """The host backend's sparse-graph components give ndimage's max size and mass."""
    active, weights = random_volume(seed, shape, density)
    _, n, sizes, masses = scipy_reference(active, weights, conn)
    out = L.max_cluster_stats(active, weights, connectivity=conn, backend="scipy")
    assert int(out.max_size) == (sizes.max() if n else 0)
    assert float(out.max_mass) == (masses.max() if n else 0.0)


def test_host_backend_line_buffer_and_overflow():
    """Volumes whose active lines fit the line buffer and volumes that overflow it (sent
    whole) give ndimage's max size and mass, alone and batched."""
    shape = (20, 20, 5)  # 400 lines: the buffer holds 64
    assert L.line_capacity(shape) == 64
    assert L.line_capacity((91, 109, 91)) == 620
    vols = [random_volume(s, shape, d) for s, d in enumerate([0.01, 0.3, 0.0, 0.05, 1.0])]
    active = np.stack([v[0] for v in vols])
    weights = np.stack([v[1] for v in vols])
    n_lines = active.reshape(len(vols), -1, shape[2]).any(2).sum(1)
    f = functools.partial(L.max_cluster_stats, connectivity=6, backend="scipy")
    batched = jax.jit(jax.vmap(f))(active, weights)
    mapped = jax.jit(lambda a, w: jax.lax.map(lambda x: f(*x), (a, w)))(active, weights)
    for i in range(len(vols)):
        _, n, sizes, masses = scipy_reference(active[i], weights[i], 6)
        for out in (batched, mapped):
            assert int(out.max_size[i]) == (sizes.max() if n else 0)
            assert float(out.max_mass[i]) == (masses.max() if n else 0.0)
            assert bool(out.overflow[i]) == (n_lines[i] > 64)
    assert np.asarray(batched.overflow).any() and not np.asarray(batched.overflow).all()


@pytest.mark.parametrize("density", [0.02, 0.4])  # fits the line buffer; overflows it
def test_gather_lines_refined_from_a_monotone_statistic_equals_ndimage(density):
    """Lines picked by a threshold on the argument of a non-decreasing statistic, the
    statistic computed on the gathered lines only (``refine``), give ndimage's clusters of
    the statistic computed on the whole volume."""
    shape = (20, 20, 6)
    rng = np.random.default_rng(3)
    acc = np.where(rng.random(shape) < density, rng.random(shape), 0).astype(np.float32)
    thresh = np.float32(0.3)
    stat = np.asarray(-jnp.expm1(-jnp.asarray(acc)))  # ALE's transform of the accumulator
    active, weights = stat > thresh, stat - thresh

    def refine(values):
        s = -jnp.expm1(-values)
        return s > thresh, s - thresh

    def summary(a):
        g = L.gather_active_lines(a > thresh * (1 - 1e-5), a, 6, refine=refine)
        return L.label_active_lines(g, shape, 6)

    out = jax.jit(summary)(acc)
    _, n, sizes, masses = scipy_reference(active, weights, 6)
    assert n > 1
    assert bool(out.overflow) == (density > 0.1)
    assert int(out.max_size) == sizes.max()
    np.testing.assert_allclose(float(out.max_mass), masses.max(), rtol=1e-6)


def test_host_labelling_of_gathered_lines_with_device_fallback():
    """Lines gathered on the device (overflowing volumes labelled by the on-device dense
    fallback) and labelled on the host give ndimage's max size and mass, batched."""
    shape = (20, 20, 5)  # 400 lines: the buffer holds 64
    vols = [random_volume(s, shape, d) for s, d in enumerate([0.01, 0.3, 0.0, 0.05, 1.0])]
    active = np.stack([v[0] for v in vols])
    weights = np.stack([v[1] for v in vols])
    gather = functools.partial(L.gather_active_lines, connectivity=6, fallback="device")
    gathered = jax.device_get(jax.jit(jax.vmap(gather))(active, weights))
    size, mass = L.label_active_lines_host(gathered, shape, 6)
    assert gathered.overflow.any() and not gathered.overflow.all()
    for i in range(len(vols)):
        _, n, sizes, masses = scipy_reference(active[i], weights[i], 6)
        assert size[i] == (sizes.max() if n else 0)
        assert mass[i] == (masses.max() if n else 0.0)


@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("tail", ["upper", "lower"])
def test_masked_host_labelling_equals_ndimage(conn, tail):
    """Maps on mask voxels (batch axes, a mask listed out of order, voxels on the volume's
    faces) labelled on the host equal SciPy's labelling of the volumes."""
    shape = (7, 8, 9)
    rng = np.random.default_rng(conn)
    inside = rng.random(shape) < 0.8
    mask_index = rng.permutation(np.flatnonzero(inside))
    values = rng.normal(size=(2, 3, mask_index.size)).astype(np.float32)
    thresh = 1.0  # about 16 % of the mask active: several clusters at every connectivity
    size, mass = L.masked_max_cluster_stats_host(values, mask_index, shape, thresh, conn, tail)
    assert size.shape == mass.shape == (2, 3) and size.dtype == np.int32
    assert mass.dtype == np.float32
    t = np.float32(thresh)
    for b in np.ndindex(2, 3):
        vol = np.zeros(int(np.prod(shape)), np.float32)
        vol[mask_index] = values[b]
        vol = vol.reshape(shape)
        active, weights = (vol > t, vol - t) if tail == "upper" else (vol < -t, -vol - t)
        _, n, sizes, masses = scipy_reference(active, weights, conn)
        assert n > 1 and size[b] == sizes.max()
        np.testing.assert_allclose(mass[b], masses.max(), rtol=1e-6)
    empty = L.masked_max_cluster_stats_host(np.zeros((1, mask_index.size)), mask_index, shape, 1.0)
    assert empty[0][0] == 0 and empty[1][0] == 0
    with pytest.raises(ValueError, match="tail"):
        L.masked_max_cluster_stats_host(values, mask_index, shape, thresh, conn, "both")
    with pytest.raises(ValueError, match="mask voxels"):
        L.masked_max_cluster_stats_host(values[..., 1:], mask_index, shape, thresh)
