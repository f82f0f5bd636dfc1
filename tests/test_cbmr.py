"""CBMR: separable basis, likelihoods, fit and inference against independent references.

References: NiMARE 0.22.1 outputs stored by tests/data/cbmr/make_reference.py (1-D bases, the
laird ``~ 1`` fit, the 120-experiment and the overdispersed 60-experiment simulations); a dense
Newton (IRLS) Poisson fit in NumPy on the full experiment x voxel table with a basis evaluated
by the Cox-de Boor recursion written here; ``jax.hessian``; scipy's negative-binomial pmf.
"""

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbmr import CBMR, CovarianceError, FormulaError, bind, parse_formula
from nimare_jax.ops import cbmr as ops
from nimare_jax.spatial import get_template, vox2mm

DATA = Path(__file__).parent / "data" / "cbmr"
BOX = (slice(42, 48), slice(50, 56), slice(34, 39))  # 6 x 6 x 5 voxels
SPACING = 6


@pytest.fixture(scope="module")
def nimare_ref():
    """NiMARE 0.22.1 reference values (tests/data/cbmr/reference_nimare.npz)."""
    with np.load(DATA / "reference_nimare.npz") as f:
        return {k: f[k] for k in f.files}


# ----------------------------------------------------------------------------- dense reference
def cox_de_boor(x, knots, degree=3):
    """All B-spline basis functions of ``knots`` at ``x`` (n_x, len(knots) - degree - 1)."""
    x = np.asarray(x, float)[:, None]
    t = np.asarray(knots, float)
    basis = ((t[:-1] <= x) & (x < t[1:])).astype(float)
    for d in range(1, degree + 1):
        left_den = t[d:-1] - t[: -d - 1]
        right_den = t[d + 1 :] - t[1:-d]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(left_den > 0, (x - t[: -d - 1]) / left_den, 0.0) * basis[:, :-1]
            right = np.where(right_den > 0, (t[d + 1 :] - x) / right_den, 0.0) * basis[:, 1:]
        basis = left + right
    return basis


def dense_basis(ijk, spacing, margin=10):
    """NiMARE's basis, built densely: 1-D bases by Cox-de Boor, full product, column filter."""
    lo, hi = ijk.min(0), ijk.max(0)
    axes = []
    for d in range(3):
        lower, upper = lo[d] - margin, hi[d] + margin - 1
        inner = np.arange(lo[d] - margin, hi[d] + margin, spacing)
        knots = np.sort(np.r_[[lower] * 4, [upper] * 4, inner])
        b = cox_de_boor(np.arange(lo[d], hi[d] + 1), knots)[:, 1:]
        axes.append(b[:, b.sum(0) != 0])
    local = ijk - lo
    full = np.einsum(
        "va,vb,vc->vabc", axes[0][local[:, 0]], axes[1][local[:, 1]], axes[2][local[:, 2]]
    ).reshape(len(ijk), -1)
    return full[:, full.max(axis=0) >= ops.SPLINE_SUPPORT_THRESHOLD]


def newton_poisson(X, y, offset=None, n_iter=100):
    """Poisson GLM by Newton/IRLS: coefficients and Fisher covariance."""
    offset = np.zeros(len(y)) if offset is None else offset
    beta = np.zeros(X.shape[1])
    beta_start = np.log(y.mean() + 1e-3)
    # start from the constant fit: partition of unity -> every spline coefficient = log mean
    beta[:] = np.linalg.lstsq(X, np.full(len(y), beta_start), rcond=None)[0]
    for _ in range(n_iter):
        mu = np.exp(X @ beta + offset)
        info = X.T @ (X * mu[:, None])
        step = np.linalg.solve(info, X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-13:
            break
    mu = np.exp(X @ beta + offset)
    return beta, np.linalg.inv(X.T @ (X * mu[:, None]))


# ----------------------------------------------------------------------------- simulated data
@pytest.fixture(scope="module")
def box_mask():
    """A 6 x 6 x 5 voxel mask on the 2 mm MNI grid."""
    template = get_template()
    data = np.zeros(template.shape, np.uint8)
    data[BOX] = 1
    return nib.Nifti1Image(data, template.affine)


@pytest.fixture(scope="module")
def simulated(box_mask):
    """28 experiments, two diagnosis levels and a numeric moderator, ~50 foci each."""
    rng = np.random.default_rng(7)
    ijk = np.argwhere(np.asarray(box_mask.dataobj) > 0)
    local = ijk - ijk.min(0)
    smooth = 0.4 * np.sin(local[:, 0] / 2.0) + 0.3 * np.cos(local[:, 1] / 3.0) - 0.1 * local[:, 2]
    source = {}
    for e in range(28):
        dx = ["control", "patient"][e % 2]
        n = float(rng.normal())
        log_mu = -1.3 + smooth + (0.25 * local[:, 0] / 5 if dx == "patient" else 0) + 0.15 * n
        counts = rng.poisson(np.exp(log_mu))
        xyz = vox2mm(np.repeat(ijk, counts, axis=0), box_mask.affine)
        source[f"s{e:02d}"] = {
            "contrasts": {
                "1": {
                    "coords": {"space": "MNI", "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]},
                    "labels": {"dx": dx, "n": n},
                }
            }
        }
    return Dataset(source, mask=box_mask), ijk


def _table(dset, ijk):
    """Dense experiment x voxel counts and annotations, in the dataset's order."""
    lookup = {tuple(v): n for n, v in enumerate(ijk)}
    counts = np.zeros((len(dset.ids), len(ijk)))
    row = {ident: n for n, ident in enumerate(dset.ids)}
    for ident, i, j, k in dset.coordinates[["id", "i", "j", "k"]].itertuples(index=False):
        counts[row[ident], lookup[(i, j, k)]] += 1
    frame = dset.annotations.set_index("id").loc[list(dset.ids)]
    return counts, frame


def _design(formula_kind, frame, phi):
    """Dense (experiment*voxel) x params design of the reference fit, and level maps."""
    patient = (frame["dx"] == "patient").to_numpy(float)
    dx = np.c_[1 - patient, patient]
    n = frame["n"].to_numpy(float)[:, None]
    if formula_kind == "s(dx)":
        spatial, scalar = dx, np.zeros((len(frame), 0))
    elif formula_kind == "s(dx)+n":
        spatial, scalar = dx, n
    elif formula_kind == "s(n)":  # the baseline 1 plus a spatially varying moderator
        spatial, scalar = np.c_[np.ones(len(frame)), n], np.zeros((len(frame), 0))
    else:  # "sz(dx)+n": baseline + effect coding (control = +1, patient = -1)
        spatial, scalar = np.c_[np.ones(len(frame)), patient * -2 + 1], n
    n_vox = phi.shape[0]
    rows_s = np.kron(spatial, phi)  # (exp*vox, C*K), experiment-major rows
    rows_g = np.repeat(scalar, n_vox, axis=0)
    return np.hstack([rows_s, rows_g])


@pytest.mark.slow
@pytest.mark.parametrize(
    "formula, kind",
    [
        ("~ s(dx)", "s(dx)"),
        ("~ s(dx) + n", "s(dx)+n"),
        ("~ s(n)", "s(n)"),
        ("~ sz(dx) + n", "sz(dx)+n"),
    ],
)
def test_poisson_designs_match_dense_newton(simulated, box_mask, formula, kind):
    """Coefficients (rtol 1e-4, atol 1e-5) and standard errors (rtol 1e-4) vs dense Newton."""
    dset, ijk = simulated
    counts, frame = _table(dset, ijk)
    phi = dense_basis(ijk, SPACING)
    beta, cov = newton_poisson(_design(kind, frame, phi), counts.ravel())
    est = CBMR(
        formula, mask=box_mask, incidence_threshold=None, spline_spacing=SPACING, n_iter=5000,
        tol=1e-13,
    )  # fmt: skip
    result = est.fit(dset)
    assert result.converged
    k = phi.shape[1]
    assert est.n_bases_ == k
    params = est.params_[: est.n_coefficients]
    mine_cov = est.covariance()
    if kind == "sz(dx)+n":
        # Compare the invariant level effects: nimare_jax's QR sum-to-zero column and the
        # reference's effect coding span the same space; map both to (baseline, control
        # effect) per basis function.
        sz = [b for b in est.blocks_ if b.term.constraint][0]
        z = sz.level_map[0, 0]  # control's loading on the single sz column
        t = np.zeros((2 * k + 1, 2 * k + 1))
        t[:k, :k] = np.eye(k)
        t[k : 2 * k, k : 2 * k] = z * np.eye(k)
        t[-1, -1] = 1
        params, mine_cov = t @ params, t @ mine_cov @ t.T
    np.testing.assert_allclose(params, beta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(mine_cov)), np.sqrt(np.diag(cov)), rtol=1e-4)
    if kind == "s(n)":
        effects = result.moderator_effect_maps(unit_change=2.0)
        relative = np.exp(2.0 * phi @ beta[k : 2 * k])
        np.testing.assert_allclose(effects.maps["relativeIntensity_n_unit-2"], relative, rtol=1e-5)
        np.testing.assert_allclose(
            effects.maps["intensityDifference_n_unit-2_group-Default"],
            np.exp(phi @ beta[:k]) * (relative - 1),
            rtol=1e-4,
            atol=1e-8,
        )
        return
    # the reported maps are the fitted log intensities
    if kind != "sz(dx)+n":
        np.testing.assert_allclose(
            result.maps["logSpatialIntensity_group-patient"], phi @ beta[k : 2 * k], atol=1e-6
        )
    if kind == "s(dx)+n":
        table = result.tables["moderatorEffect_n"]
        np.testing.assert_allclose(table["est"], beta[-1:], rtol=1e-4)
        # Wald test of the two group maps, against the dense covariance
        tested = result.test("patient = control")
        diff = phi @ (beta[k : 2 * k] - beta[:k])
        c = np.c_[-np.eye(k), np.eye(k)]
        var = np.einsum("vk,kl,vl->v", phi, c @ cov[: 2 * k, : 2 * k] @ c.T, phi)
        np.testing.assert_allclose(
            tested.maps["z_patient_vs_control"], diff / np.sqrt(var), rtol=1e-4, atol=1e-5
        )
        assert "z_patient_vs_control" not in result.maps
        # cluster sandwich (hc0) against dense per-experiment scores; hc1 needs n > p
        X = _design(kind, frame, phi)
        resid = (counts.ravel() - np.exp(X @ beta)).reshape(len(frame), -1)
        scores = np.einsum("ivp,iv->ip", X.reshape(len(frame), phi.shape[0], -1), resid)
        expected = cov @ (scores.T @ scores) @ cov
        got = est.covariance("sandwich", correction="hc0")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * abs(expected).max())
        with pytest.raises(CovarianceError, match="29 parameters and only 28 experiments"):
            result.test("patient = control", cov_type="sandwich")


def test_matrix_and_separable_bases_give_the_same_fit(simulated, box_mask, monkeypatch):
    """The estimator's two basis representations (a matrix on small voxel sets,
    ``ops.prefer_dense``; the separable grid otherwise) give the same fit: coefficients,
    standard errors and maps within 1e-9 relative. The rule: laird's default voxels take the
    matrix; 4,422 voxels x 666 bases (a gram 7x ``DENSE_GRAM_MAX``) and the whole brain do not."""
    assert ops.prefer_dense(1030, 299)
    assert not ops.prefer_dense(4422, 666)
    assert not ops.prefer_dense(228483, 457)
    dset, _ = simulated
    fits = []
    for limit in (ops.DENSE_BASIS_MAX, 0):
        monkeypatch.setattr(ops, "DENSE_BASIS_MAX", limit)
        est = CBMR("~ s(dx) + n", mask=box_mask, incidence_threshold=None, spline_spacing=SPACING)
        fits.append((est, est.fit(dset)))
    (dense, dense_result), (grid, grid_result) = fits
    assert isinstance(dense.data_.basis, ops.DenseBasis)
    assert isinstance(grid.data_.basis, ops.SplineBasis)
    np.testing.assert_allclose(dense.params_, grid.params_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.diag(dense.covariance()), np.diag(grid.covariance()), rtol=1e-9)
    key = "spatialIntensity_group-patient"
    np.testing.assert_allclose(dense_result.maps[key], grid_result.maps[key], rtol=1e-9)


def test_axis_basis_matches_nimare(nimare_ref):
    """1-D bases equal NiMARE 0.22.1's coef_spline_bases (patsy) to 1e-12."""
    for n in range(4):
        lo, hi, spacing = nimare_ref[f"axis_{n}_case"]
        np.testing.assert_allclose(
            ops.axis_spline_basis(int(lo), int(hi), int(spacing)),
            nimare_ref[f"axis_{n}_basis"],
            atol=1e-12,
        )


@pytest.mark.parametrize("representation", ["separable", "dense"])
def test_basis_matches_cox_de_boor(representation):
    """apply / transpose / gram of the separable basis and of the matrix basis (``dense_basis``,
    built from each voxel's 64 local products) equal the dense Cox-de Boor basis (1e-12)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 24, 18), bool)
    mask[2:18, 3:22, 1:16] = rng.random((16, 19, 15)) < 0.3
    ijk = np.argwhere(mask)
    phi = dense_basis(ijk, 5)
    basis = ops.spline_basis(ijk, 5)
    if representation == "dense":
        basis = ops.dense_basis(basis)
        np.testing.assert_allclose(basis.matrix, phi, rtol=1e-12, atol=1e-14)
    with jax.enable_x64(True):
        basis = jax.device_put(basis)
        assert basis.kept.size == phi.shape[1]
        coef = rng.normal(size=(2, phi.shape[1]))
        np.testing.assert_allclose(ops.basis_apply(basis, coef), coef @ phi.T, atol=1e-12)
        values = rng.normal(size=(2, len(ijk)))
        np.testing.assert_allclose(ops.basis_transpose(basis, values), values @ phi, atol=1e-11)
        w = rng.random(len(ijk))
        np.testing.assert_allclose(
            ops.basis_gram(basis, w), phi.T @ (phi * w[:, None]), atol=1e-11
        )


def _small_data(rng, n_global=1, n_patterns=3, representation="separable"):
    """A small CBMRData on a random mask (no fit needed)."""
    mask = np.zeros((12, 13, 11), bool)
    mask[1:11, 2:12, 1:10] = rng.random((10, 10, 9)) < 0.5
    ijk = np.argwhere(mask)
    basis = ops.spline_basis(ijk, 5)
    if representation == "dense":
        basis = ops.dense_basis(basis)
    n_exp = 12
    assignment = np.arange(n_exp) % n_patterns
    counts = rng.poisson(0.3, size=(n_exp, len(ijk))).astype(float)
    marginal = np.stack([counts[assignment == p].sum(0) for p in range(n_patterns)])
    loadings = np.eye(n_patterns)
    return ops.CBMRData(
        basis=jax.device_put(basis),
        marginal=jnp.asarray(marginal),
        totals=jnp.asarray(counts.sum(1)),
        assignment=jnp.asarray(assignment, jnp.int32),
        loadings=jnp.asarray(loadings, jnp.float64),
        moderators=jnp.asarray(rng.normal(size=(n_exp, n_global))),
        exposure=jnp.asarray(rng.uniform(0.5, 2.0, n_exp)),
    ), counts


@pytest.mark.parametrize("representation", ["separable", "dense"])
def test_closed_form_information_matches_jax_hessian(representation):
    """Poisson closed-form information equals jax.hessian of the likelihood, its gradient
    jax.grad (rtol 1e-10), on either basis representation; the Newton program's factor and
    direction solve the information (NumPy's Cholesky and solve, rtol 1e-10)."""
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        data, _ = _small_data(rng, representation=representation)
        n = ops.n_params(data, "poisson")
        params = jnp.asarray(rng.normal(scale=0.3, size=n) - 0.5)
        closed = ops.poisson_information(params, data)
        hessian = jax.hessian(lambda p: -ops.log_likelihood(p, data, "poisson"))(params)
        np.testing.assert_allclose(closed, hessian, rtol=1e-10, atol=1e-10 * abs(hessian).max())
        for batch_size in (7, None):  # lax.map in batches of 7; one vmap
            batched = ops.autodiff_information(params, data, "poisson", batch_size=batch_size)
            np.testing.assert_allclose(
                batched, hessian, rtol=1e-10, atol=1e-10 * abs(hessian).max()
            )
        # the closed-form value and gradient Newton's method uses
        value, grad, info = ops.poisson_terms(params, data)
        np.testing.assert_allclose(value, ops.log_likelihood(params, data, "poisson"), rtol=1e-12)
        expected = jax.grad(ops.log_likelihood)(params, data, "poisson")
        np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-10 * abs(expected).max())
        np.testing.assert_allclose(info, closed, rtol=1e-12)
        _, _, direction, info, factor = ops.newton_direction(params, data)
        info = np.asarray(info)
        np.testing.assert_allclose(factor, np.linalg.cholesky(info), rtol=1e-10, atol=1e-12)
        solved = np.linalg.solve(info, np.asarray(grad))
        np.testing.assert_allclose(direction, solved, rtol=1e-10, atol=1e-10 * abs(solved).max())


@pytest.mark.parametrize("n_global", [pytest.param(0, marks=pytest.mark.slow), 2])
@pytest.mark.parametrize("dist", ["negativebinomial", "clusterednegativebinomial"])
def test_overdispersed_terms_match_jax_hessian(dist, n_global):
    """NB / CNB closed-form value, gradient and information (all parameters, log overdispersion
    included) equal log_likelihood, jax.grad and -jax.hessian (rtol 1e-8); the information
    over the coefficients (overdispersion held fixed, as autodiff_information) is its leading
    block. Without moderators on the separable basis, with two on the matrix basis."""
    rng = np.random.default_rng(11 + n_global)
    representation = "dense" if n_global else "separable"
    with jax.enable_x64(True):
        data, _ = _small_data(rng, n_global=n_global, representation=representation)
        n = ops.n_params(data, dist)
        params = rng.normal(scale=0.3, size=n) - 0.5
        params[-3:] = np.log([0.3, 0.05, 1.2])  # one overdispersion per pattern
        params = jnp.asarray(params)
        value, grad, info = ops.overdispersed_terms(params, data, dist)
        np.testing.assert_allclose(value, ops.log_likelihood(params, data, dist), rtol=1e-12)
        expected = jax.grad(ops.log_likelihood)(params, data, dist)
        np.testing.assert_allclose(grad, expected, rtol=1e-8, atol=1e-8 * abs(expected).max())
        hessian = -jax.hessian(ops.log_likelihood)(params, data, dist)
        np.testing.assert_allclose(info, hessian, rtol=1e-8, atol=1e-8 * abs(hessian).max())
        coef = ops.overdispersed_information(params, data, dist)  # jitted: rounding differs
        np.testing.assert_allclose(
            coef, info[: n - 3, : n - 3], rtol=1e-12, atol=1e-12 * abs(coef).max()
        )


def test_likelihoods_match_elementwise_forms():
    """Poisson = elementwise Poisson; NB = scipy nbinom.logpmf of NiMARE's moment match."""
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        data, counts = _small_data(rng)
        n_coef = ops.n_params(data, "poisson")
        params = jnp.asarray(rng.normal(scale=0.3, size=n_coef) - 0.5)
        k = data.basis.kept.size
        phi = dense_basis(np.c_[data.basis.vx, data.basis.vy, data.basis.vz], 5)
        s = np.asarray(params[: 3 * k]).reshape(3, k) @ phi.T
        w = np.asarray(data.exposure) * np.exp(np.asarray(data.moderators) @ params[3 * k :])
        assignment = np.asarray(data.assignment)
        mu = np.exp(s)[assignment] * w[:, None]
        poisson = np.sum(counts * np.log(mu) - mu) - np.sum(counts.sum(1) * np.log(data.exposure))
        got = ops.log_likelihood(params, data, "poisson")
        np.testing.assert_allclose(got, poisson, rtol=1e-12)

        theta = np.array([0.3, 0.05, 1.2])
        nb_params = jnp.concatenate([params, jnp.log(theta)])
        expected = 0.0
        for p in range(3):
            s1, s2 = w[assignment == p].sum(), (w[assignment == p] ** 2).sum()
            r = s1**2 / (theta[p] * s2)
            prob = 1 / (1 + s1 / (theta[p] * np.exp(s[p]) * s2))
            expected += scipy.stats.nbinom.logpmf(np.asarray(data.marginal[p]), r, 1 - prob).sum()
        got = ops.log_likelihood(nb_params, data, "negativebinomial")
        np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.slow
def test_laird_intercept_matches_nimare(laird, nimare_ref):
    """laird ~ 1: NiMARE's voxels and basis, LL >= NiMARE's - 1e-6 rel, intensity 1e-3 rel."""
    result = CBMR("~ 1").fit(laird)
    est = result.estimator
    np.testing.assert_array_equal(est.ijk_, nimare_ref["laird_ijk"])
    assert est.n_bases_ == int(nimare_ref["laird_n_bases"])
    assert result.converged
    ll_ref = float(nimare_ref["laird_log_likelihood"])
    assert est.log_likelihood_ >= ll_ref - 1e-6 * abs(ll_ref)
    np.testing.assert_allclose(
        result.maps["spatialIntensity_group-Default"], nimare_ref["laird_intensity"], rtol=1e-3
    )
    assert est.solver_ == "newton"
    assert f"after {est.n_iter_} Newton iterations" in result.description


def test_unknown_column_is_a_clear_error(laird):
    """A formula naming a missing column fails at fit, naming the column and the term."""
    with pytest.raises(FormulaError, match=r"term s\(diagnosis\): no column 'diagnosis'"):
        CBMR("~ s(diagnosis)").fit(laird)


def test_no_voxel_after_incidence_filter(laird):
    """An incidence threshold no voxel reaches is a DatasetError naming the threshold."""
    with pytest.raises(DatasetError, match="no voxel survived the CBMR incidence filter"):
        CBMR("~ 1", incidence_threshold=0.9).fit(laird)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("~ offset(n)", "exposure"),
        ("~ s(dx, spacing=5)", "per-term spacing"),
        ("~ np.log(n)", "not supported"),
        ("~ s(dx) + s(dx)", "appears more than once"),
    ],
)
def test_formula_refusals(formula, message):
    """Parse-time refusals name the problem."""
    with pytest.raises(FormulaError, match=message):
        CBMR(formula)


def test_design_refusals(laird):
    """NiMARE's unidentifiable designs are refused at bind time."""
    dset = laird.slice(list(laird.ids))
    dset.annotations["a"] = ["x", "y"] * 8 + ["x"]
    dset.annotations["b"] = ["p"] * 9 + ["q"] * 8
    dset.annotations["n"] = np.arange(17.0)
    with pytest.raises(FormulaError, match="not jointly identifiable"):
        CBMR("~ s(a) + s(b)").fit(dset)
    with pytest.raises(FormulaError, match="no coefficient to estimate beside exposure"):
        CBMR("~ s(a) + n + exposure()").fit(dset)
    with pytest.raises(FormulaError, match="hold a single experiment"):
        CBMR("~ s(n)", distribution="negativebinomial").fit(dset)


@pytest.fixture(scope="module")
def sim120():
    """NiMARE's 120-experiment simulation (diagnosis alternating) and NiMARE's fits."""
    with np.load(DATA / "reference_sim120.npz") as f:
        ref = {k: f[k] for k in f.files}
    return Dataset(DATA / "sim120_dataset.json"), ref


@pytest.mark.slow
def test_sim120_poisson_matches_nimare(sim120):
    """~ s(diagnosis), Poisson: maps, Fisher z and hc0 z within 1e-3 of NiMARE; hc1 refused."""
    dset, ref = sim120
    result = CBMR("~ s(diagnosis)").fit(dset)
    assert result.converged
    np.testing.assert_array_equal(result.estimator.ijk_, ref["ijk"])
    ll_ref = float(ref["poisson_log_likelihood"])
    assert result.estimator.log_likelihood_ >= ll_ref - 1e-6 * abs(ll_ref)
    for group in ("schizophrenia", "depression"):
        name = f"spatialIntensity_group-{group}"
        np.testing.assert_allclose(result.maps[name], ref[f"poisson_{name}"], rtol=1e-3)
    z = result.test("schizophrenia = depression").maps["z_schizophrenia_vs_depression"]
    np.testing.assert_allclose(z, ref["poisson_z"], rtol=1e-3, atol=1e-3)
    hc0 = result.test("schizophrenia = depression", cov_type="sandwich", correction="hc0")
    np.testing.assert_allclose(
        hc0.maps["z_schizophrenia_vs_depression"], ref["poisson_z_hc0"], rtol=1e-3, atol=1e-3
    )
    assert "190 parameters and only 120 experiments" in str(ref["poisson_hc1_error"])
    with pytest.raises(CovarianceError, match="190 parameters and only 120 experiments"):
        result.test("schizophrenia = depression", cov_type="sandwich", correction="hc1")


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["negativebinomial", "clusterednegativebinomial"])
def test_sim120_overdispersed_reach_nimare_optimum(sim120, dist):
    """NB / CNB: log-likelihood >= NiMARE's, overdispersion as small as NiMARE's.

    On these data (foci drawn without overdispersion) both models drift toward their Poisson
    limit, where the likelihood is flat in the overdispersion; NiMARE stops early (NB 468, CNB
    194 iterations) short of the optimum, so maps are compared loosely (NB 1e-2; CNB against
    NiMARE's Poisson fit, the limit both approach, 2e-3) rather than at 1e-3 to NiMARE's.
    Parity at 1e-3 is tested where the optimum is interior:
    test_overdispersed_design_matches_nimare.
    """
    dset, ref = sim120
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CBMR stopped at the iteration cap")
        result = CBMR("~ s(diagnosis)", distribution=dist).fit(dset)
    ll_ref = float(ref[f"{dist}_log_likelihood"])
    assert result.estimator.log_likelihood_ >= ll_ref - 1e-6 * abs(ll_ref)
    overdispersion = result.tables["overdispersion"]["overdispersion"].to_numpy()
    assert np.all(overdispersion <= 1.01 * ref[f"{dist}_overdispersion"].max())
    target, rtol = (dist, 1e-2) if dist == "negativebinomial" else ("poisson", 2e-3)
    for group in ("schizophrenia", "depression"):
        name = f"spatialIntensity_group-{group}"
        np.testing.assert_allclose(result.maps[name], ref[f"{target}_{name}"], rtol=rtol)


@pytest.mark.slow
@pytest.mark.parametrize("formula", ["~ s(dx)", "~ s(dx) + n"])
@pytest.mark.parametrize("dist", ["negativebinomial", "clusterednegativebinomial"])
def test_overdispersed_newton_reaches_lbfgs_optimum(simulated, box_mask, dist, formula):
    """NB / CNB fitted by Newton's method (with and without a moderator): a log-likelihood at
    least that of optax L-BFGS from the old start (ops.fit, 1000 iterations, tol 1e-8) minus
    1e-9 relative. (These foci are Poisson draws: both models drift toward the Poisson limit,
    where L-BFGS stops early, so the maps are not compared; see
    test_overdispersed_design_matches_nimare for an interior optimum.)"""
    dset, _ = simulated
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="CBMR stopped at the iteration cap")
        result = CBMR(formula, distribution=dist, mask=box_mask, incidence_threshold=None).fit(
            dset
        )
    est = result.estimator
    assert est.solver_ == "newton" and est.converged_
    with jax.enable_x64(True):
        lbfgs = ops.fit(
            est.data_, ops.initial_params(est.data_, dist), 1000, 1e-8, distribution=dist
        )
    assert lbfgs.params.shape[0] == est.params_.shape[0]
    ll = float(lbfgs.log_likelihood)
    assert est.log_likelihood_ >= ll - 1e-9 * abs(ll)


OVERDISPERSED_BOX = (slice(38, 52), slice(46, 60), slice(32, 42))  # make_reference.BOX


@pytest.fixture(scope="module")
def overdispersed():
    """60 experiments with gamma-distributed study and voxel intensity multipliers, their box
    mask, and NiMARE's NB / CNB fits (make_reference.py --overdispersed)."""
    template = get_template()
    data = np.zeros(template.shape, np.uint8)
    data[OVERDISPERSED_BOX] = 1
    mask = nib.Nifti1Image(data, template.affine)
    with np.load(DATA / "reference_overdispersed.npz") as f:
        ref = {k: f[k] for k in f.files}
    return Dataset(DATA / "overdispersed_dataset.json", mask=mask), mask, ref


@pytest.mark.slow
@pytest.mark.parametrize("dist", ["negativebinomial", "clusterednegativebinomial"])
def test_overdispersed_design_matches_nimare(overdispersed, dist):
    """NB / CNB on data with real overdispersion (interior optimum, NiMARE converged):
    intensity maps and overdispersion within 1e-3 relative of NiMARE, the Fisher z of
    ``"schizophrenia = depression"`` within 1e-3 (rtol 1e-3, atol 1e-3 where z crosses 0),
    log-likelihood at least NiMARE's minus 1e-6 relative."""
    dset, mask, ref = overdispersed
    result = CBMR("~ s(diagnosis)", distribution=dist, mask=mask, incidence_threshold=None).fit(
        dset
    )
    est = result.estimator
    assert result.converged
    assert len(dset.coordinates) == int(ref["n_foci"])
    assert est.ijk_.shape[0] == int(ref["n_voxels"])
    ll_ref = float(ref[f"{dist}_log_likelihood"])
    assert est.log_likelihood_ >= ll_ref - 1e-6 * abs(ll_ref)
    overdispersion = result.tables["overdispersion"]["overdispersion"].to_numpy()
    # interior: far from the Poisson limit (0) and from the starting value (1e-2)
    assert np.all(ref[f"{dist}_overdispersion"] > 1.0)
    np.testing.assert_allclose(overdispersion, ref[f"{dist}_overdispersion"], rtol=1e-3)
    for group in ("schizophrenia", "depression"):
        name = f"spatialIntensity_group-{group}"
        np.testing.assert_allclose(result.maps[name], ref[f"{dist}_{name}"], rtol=1e-3)
    z = result.test("schizophrenia = depression").maps["z_schizophrenia_vs_depression"]
    assert np.abs(ref[f"{dist}_z"]).max() > 2.0  # a real group difference to test
    np.testing.assert_allclose(z, ref[f"{dist}_z"], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dist, program",
    [("poisson", "newton_direction"), ("negativebinomial", "overdispersed_direction")],
)
def test_second_fit_traces_nothing(simulated, box_mask, dist, program):
    """A second fit with the same shapes reuses every compiled program (the first fit, after
    ``jax.clear_caches``, must trace: with a matrix basis another test's spacing can give the
    same shapes)."""
    from test_compilation import count_traces

    dset, _ = simulated
    jax.clear_caches()
    results = []
    for _ in range(2):
        with count_traces() as traces:
            est = CBMR(
                "~ s(dx) + n",
                distribution=dist,
                mask=box_mask,
                incidence_threshold=None,
                spline_spacing=8,
            )
            results.append((est.fit(dset), list(traces)))
    (first, first_traces), (second, second_traces) = results
    assert program in first_traces
    assert second_traces == []
    np.testing.assert_array_equal(
        second.maps["spatialIntensity_group-patient"], first.maps["spatialIntensity_group-patient"]
    )


def test_bind_names_and_blocks_follow_patsy():
    """Columns of s(a:b), s(a:n), s(n:a), s(t) and sz(a) as patsy's "0 + expr" builds them.

    Expected names are patsy 1.0's output for the same frame (NiMARE builds its blocks with
    patsy.dmatrix("0 + expr")): the first factor varies fastest; booleans are factors.
    """
    frame = pd.DataFrame(
        {"id": list("wxyz"), "a": ["x", "y", "x", "y"], "b": ["p", "p", "q", "q"],
         "n": [1.0, 2.0, 3.0, 4.0], "t": [True, False, True, True]}
    )  # fmt: skip
    expected = {
        "~ s(a:b)": ["a[x]:b[p]", "a[y]:b[p]", "a[x]:b[q]", "a[y]:b[q]"],
        "~ s(a:n)": ["a[x]:n", "a[y]:n"],
        "~ s(n:a)": ["n:a[x]", "n:a[y]"],
        "~ s(t)": ["t[False]", "t[True]"],
    }
    for formula, names in expected.items():
        blocks = bind(*parse_formula(formula), frame)
        block = blocks[-1]
        assert list(block.column_names) == names
        for j, name in enumerate(names):  # each column is the product of its factors
            value = np.ones(4)
            for part in name.split(":"):
                col, _, level = part.partition("[")
                raw = frame[col].astype(str) == level[:-1] if level else frame[col]
                value = value * np.asarray(raw, dtype=float)
            np.testing.assert_array_equal(block.block[:, j], value)
    # a:b gives one map per cell and so is the baseline; a:n is not, so 1 is added
    assert bind(*parse_formula("~ s(a:b)"), frame)[0].is_baseline
    assert str(bind(*parse_formula("~ s(a:n)"), frame)[0].term) == "1"
    sz = bind(*parse_formula("~ sz(a) + n"), frame)
    z = sz[1].level_map
    np.testing.assert_allclose(z.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.T @ z, np.eye(z.shape[1]), atol=1e-12)


@pytest.mark.slow
def test_exposure_column_matches_dense_offset(simulated, box_mask):
    """~ s(dx) + exposure(e): a multiplicative exposure = an offset log(e) in the dense fit."""
    dset, ijk = simulated
    dset = dset.slice(list(dset.ids))
    dset.annotations["e"] = np.exp(0.3 * dset.annotations["n"].to_numpy(float))
    counts, frame = _table(dset, ijk)
    phi = dense_basis(ijk, SPACING)
    offset = np.repeat(np.log(frame["e"].to_numpy(float)), len(ijk))
    beta, cov = newton_poisson(_design("s(dx)", frame, phi), counts.ravel(), offset)
    est = CBMR(
        "~ s(dx) + exposure(e)", mask=box_mask, incidence_threshold=None, spline_spacing=SPACING
    )
    est.fit(dset)
    np.testing.assert_allclose(est.params_, beta, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.sqrt(np.diag(est.covariance())), np.sqrt(np.diag(cov)), rtol=1e-4
    )


def test_device_argument(simulated, box_mask):
    """``device="cpu"`` runs on the CPU device with the default's result; a GPU request on a
    machine without one falls back to the CPU with a warning; a bad name is refused."""
    dset, _ = simulated
    kwargs = {"mask": box_mask, "incidence_threshold": None, "spline_spacing": 8}
    default = CBMR("~ s(dx) + n", **kwargs).fit(dset)
    on_cpu = CBMR("~ s(dx) + n", device="cpu", random_state=3, **kwargs)
    result = on_cpu.fit(dset)
    assert on_cpu.data_.marginal.devices() == {jax.devices("cpu")[0]}
    key = "spatialIntensity_group-patient"
    np.testing.assert_array_equal(result.maps[key], default.maps[key])
    if not any(d.platform == "gpu" for d in jax.devices()):
        with pytest.warns(UserWarning, match="no GPU is available"):
            fallback = CBMR("~ s(dx) + n", device="cuda", **kwargs).fit(dset)
        np.testing.assert_array_equal(fallback.maps[key], default.maps[key])
    with pytest.raises(ValueError, match="device must be"):
        CBMR("~ 1", device="tpu-7")
    with pytest.raises(TypeError, match="random_state"):
        CBMR("~ 1", random_state="seed")
