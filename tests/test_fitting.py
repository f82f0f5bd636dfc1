"""Kernel fitting: gradients, the objective against brute force, and recovery of known kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nimare_jax import fitting as F
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError
from nimare_jax.generate import create_coordinate_dataset
from nimare_jax.meta.cbma.kernel import MKDAKernel
from nimare_jax.ops import kernels as K

FWHM_TO_SIGMA = 1.0 / np.sqrt(8.0 * np.log(2.0))
# well-separated true locations (>= 40 mm apart), deep inside the brain mask
CENTRES = np.array(
    [(40, -20, 40), (-40, -20, 40), (0, -60, 20), (0, 40, 0), (30, 20, -10), (-30, 20, -10)],
    float,
)


def simulate(rng, fwhms, sample_sizes=None):
    """Experiment e reports every centre with Gaussian error of FWHM ``fwhms[e]`` mm."""
    source = {}
    for e, fwhm in enumerate(fwhms):
        xyz = CENTRES + rng.normal(0.0, fwhm * FWHM_TO_SIGMA, CENTRES.shape)
        coords = {"space": "MNI", "x": xyz[:, 0].tolist(), "y": xyz[:, 1].tolist()}
        coords["z"] = xyz[:, 2].tolist()
        meta = {} if sample_sizes is None else {"sample_sizes": [int(sample_sizes[e])]}
        source[f"s{e}"] = {"contrasts": {"1": {"coords": coords, "metadata": meta}}}
    return Dataset(source)


def brute_force_log_likelihood(xyz, exp_index, var, pi, volume):
    """The objective written as explicit loops over foci and experiments."""
    n_exp = exp_index.max() + 1
    terms = []
    for i in range(len(xyz)):
        for f in range(n_exp):
            if f == exp_index[i]:
                continue
            js = np.flatnonzero(exp_index == f)
            v = var[i] + var[js]
            d2 = ((xyz[i] - xyz[js]) ** 2).sum(1)
            dens = np.mean(np.exp(-0.5 * d2 / v) / (2 * np.pi * v) ** 1.5)
            terms.append(np.log(pi * dens + (1 - pi) / volume))
    return np.mean(terms)


def test_objective_matches_brute_force(laird):
    foci = F.foci_mm(laird.slice(laird.ids[[0, 8, 9, 14]]))
    rng = np.random.default_rng(0)
    var = rng.uniform(10.0, 40.0, len(foci.xyz))
    ref = brute_force_log_likelihood(foci.xyz, foci.exp_index, var, 0.3, foci.volume)
    with jax.enable_x64(True):
        for chunk in (7, 256):  # padding of the last block must not change the value
            ours = F.held_out_log_likelihood(
                foci.xyz, foci.exp_index, foci.counts, var, 0.3, foci.volume, chunk=chunk
            )
            assert float(ours) == pytest.approx(ref, rel=1e-12)


def test_rows_subset_averages_over_those_rows(laird):
    foci = F.foci_mm(laird.slice(laird.ids[[0, 8, 9]]))
    var = np.full(len(foci.xyz), 20.0)
    rows = np.array([3, 50, 120])
    args = (foci.xyz, foci.exp_index, foci.counts)
    with jax.enable_x64(True):
        per_row = [
            F.held_out_log_likelihood(*args, var, 0.3, foci.volume, rows=np.array([r]))
            for r in rows
        ]
        both = F.held_out_log_likelihood(*args, var, 0.3, foci.volume, rows=rows, chunk=2)
    assert float(both) == pytest.approx(float(np.mean(per_row)), rel=1e-12)


def test_gradients_match_central_finite_differences(laird):
    # x64; central differences with h = 1e-5 have error O(h^2) ~ 1e-10 relative: rel 1e-6
    sub = laird.slice(laird.ids[[0, 3, 8, 9, 14]])
    foci = F.foci_mm(sub)
    n = np.array([8.0, 15.0, 20.0, 40.0, 100.0])[foci.exp_index]

    def objective(theta):
        t, s, pi = theta
        var = (K.fwhm_from_sample_size(n, t, s) * FWHM_TO_SIGMA) ** 2
        return F.held_out_log_likelihood(
            foci.xyz, foci.exp_index, foci.counts, var, pi, foci.volume, chunk=64
        )

    with jax.enable_x64(True):
        theta = jnp.array([9.0, 20.0, 0.2])
        grad = np.asarray(jax.grad(objective)(theta))
        h = 1e-5
        fd = [
            (objective(theta.at[k].add(h)) - objective(theta.at[k].add(-h))) / (2 * h)
            for k in range(3)
        ]
    np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6)
    assert np.all(grad != 0)


@pytest.mark.parametrize("true_fwhm", [8.0, 14.0])
def test_fit_fwhm_recovers_known_fwhm(true_fwhm):
    # 60 experiments x 6 foci drawn in continuous mm. Over seeds the fit scatters by about
    # 3 % (sd) around a bias of about -1.5 %: tolerance 10 %
    rng = np.random.default_rng(int(true_fwhm))
    dset = simulate(rng, np.full(60, true_fwhm), np.full(60, 20))
    res = F.fit_fwhm(dset, init=10.0, steps=150)
    assert res.fwhm == pytest.approx(true_fwhm, rel=0.10)
    assert res.loss_history.shape == res.param_history["fwhm"].shape == (150,)
    assert res.param_history["fwhm"][0] == pytest.approx(10.0)
    assert res.loss <= res.loss_history[0]
    assert 0.8 < res.match_probability < 1.0  # every experiment reports every centre


def test_fit_fwhm_recovers_generate_fwhm():
    # nimare_jax.generate draws foci on the 2 mm grid from a mask-restricted Gaussian of the
    # given FWHM (mm), with 2 uniform noise foci per study: tolerance 10 % (seeds 0-3 gave
    # 12.2, 12.1, 11.9 and 11.3 mm)
    centres = [tuple(c) for c in CENTRES[:4]]
    _, dset = create_coordinate_dataset(
        foci=centres, fwhm=12.0, n_studies=60, n_noise_foci=2, seed=0
    )
    res = F.fit_fwhm(dset, init=6.0, steps=150)
    assert res.fwhm == pytest.approx(12.0, rel=0.10)
    assert res.match_probability == pytest.approx(4 / 6, abs=0.08)  # 4 of 6 foci are signal


@pytest.mark.slow
def test_fit_uncertainty_constants_recovers_known_constants():
    # FWHM_e^2 = T^2 + S^2 / n_e with n_e log-uniform in [4, 200]; 120 experiments x 6 foci,
    # started from Eickhoff's constants (11.4, 23.1): tolerance 10 % on T and 15 % on S
    # (S is determined only through the spread of 1 / n; over 5 seeds T was within 2.5 %
    # and S within 6 %)
    rng = np.random.default_rng(1)
    t_true, s_true = 8.0, 24.0
    sizes = np.round(np.exp(rng.uniform(np.log(4), np.log(200), 120)))
    fwhms = K.fwhm_from_sample_size(sizes, t_true, s_true)
    dset = simulate(rng, fwhms, sizes)
    res = F.fit_uncertainty_constants(dset, steps=250)
    assert res.template_uncertainty == pytest.approx(t_true, rel=0.10)
    assert res.subject_uncertainty == pytest.approx(s_true, rel=0.15)
    np.testing.assert_allclose(
        res.fwhm, K.fwhm_from_sample_size(sizes, res.template_uncertainty, res.subject_uncertainty)
    )


def test_minibatch_fit_is_reproducible_and_close_to_full():
    rng = np.random.default_rng(5)
    dset = simulate(rng, np.full(30, 10.0))
    full = F.fit_fwhm(dset, steps=80)
    a = F.fit_fwhm(dset, steps=80, batch_size=64, key=jax.random.key(1))
    b = F.fit_fwhm(dset, steps=80, batch_size=64, key=jax.random.key(1))
    assert a.fwhm == b.fwhm
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    assert a.fwhm == pytest.approx(full.fwhm, rel=0.05)


def test_fit_accepts_a_ready_optax_transformation():
    rng = np.random.default_rng(6)
    dset = simulate(rng, np.full(20, 10.0))
    res = F.fit_fwhm(dset, steps=50, optimizer=optax.chain(optax.adam(0.1)))
    assert res.loss < res.loss_history[0]


def test_fitting_rejects_bad_input(laird):
    with pytest.raises(ValueError, match="init must be a positive number"):
        F.fit_fwhm(laird, init=-1.0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        F.fit_fwhm(laird, steps=0)
    with pytest.raises(ValueError, match="batch_size must be an integer"):
        F.fit_fwhm(laird, batch_size=10**6)
    with pytest.raises(TypeError, match="optimizer must be"):
        F.fit_fwhm(laird, optimizer="adam")
    with pytest.raises(DatasetError, match="at least two experiments"):
        F.fit_fwhm(laird.slice(laird.ids[:1]))
    no_sizes = simulate(np.random.default_rng(0), np.full(3, 10.0))
    with pytest.raises(DatasetError, match="sample_sizes"):
        F.fit_uncertainty_constants(no_sizes)


def soft_mkda_density(arr, r, temperature, radius=8, crop=False):
    """MKDA density (sum over experiments of the union of spheres) with a soft sphere.

    ``crop``: compute on the foci's bounding box only (voxel (0, 0, 0) at its corner).
    """
    win = K.soft_sphere_window(r, (2.0, 2.0, 2.0), radius, temperature)[None]
    step_focus, step_flush = K.schedule(arr.exp_index)
    n = arr.ijk.shape[0]
    ijk, shape = arr.ijk, arr.shape
    if crop:
        ijk = ijk - ijk.min(0)
        shape = tuple(int(v) + 1 for v in ijk.max(0))
    return K.accumulate(
        ijk,
        jnp.zeros(n, jnp.int32),
        jnp.ones(n, win.dtype),
        win,
        step_focus,
        step_flush,
        shape,
        "max",
    )


def test_soft_mkda_density_is_differentiable_in_radius(laird):
    arr = MKDAKernel().prepare(laird.slice(laird.ids[[9, 14]]))
    ijk = arr.ijk - arr.ijk.min(0)
    probe = np.concatenate([ijk[:4], np.minimum(ijk[:4] + np.array([3, 2, 1]), ijk.max(0))])

    def mean_density(r):
        return soft_mkda_density(arr, r, 1.0, crop=True)[tuple(probe.T)].mean()

    # x64; central differences, h = 1e-4: rel 1e-6
    with jax.enable_x64(True):
        grad = jax.grad(mean_density)(9.0)
        h = 1e-4
        fd = (mean_density(9.0 + h) - mean_density(9.0 - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)
    assert float(grad) > 0  # larger spheres cover more


def test_soft_mkda_density_tends_to_hard_mkda_density(laird):
    sub = laird.slice(laird.ids[[8, 9, 14]])
    arr = MKDAKernel().prepare(sub)
    hard = MKDAKernel(r=10).transform(sub, return_type="array").sum(0)
    # voxel-centre distances are 2 sqrt(k) mm: 10 is inside, the next (10.2) outside, so a
    # soft radius of 10.1 keeps every centre 0.1 mm (100 temperatures) off the surface
    soft = np.asarray(soft_mkda_density(arr, 10.1, 1e-3)).reshape(-1)[arr.mask_index]
    np.testing.assert_allclose(soft, hard, atol=1e-6)
