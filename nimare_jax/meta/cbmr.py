"""Coordinate-based meta-regression (CBMR), specified by a formula (NiMARE 0.22.1's ``CBMR``).

``CBMR(formula).fit(dataset)`` models the foci of each experiment as an inhomogeneous Poisson
(or negative-binomial) process whose log intensity is a cubic B-spline surface, with study-level
moderators. The formula says, per term, whether its coefficient is a map or a number::

    ~ 1                       one pooled intensity map
    ~ s(diagnosis)            one map per level of diagnosis
    ~ s(diagnosis) + n        plus one scalar coefficient for the numeric column n
    ~ sz(drug) + n            a baseline map plus sum-to-zero spatial effects of drug's levels
    ~ s(diagnosis) + exposure()   conditioned on each experiment's own foci count

Terms are column names of the dataset's annotations or metadata joined by ``:``
(interactions); a text/boolean column is a factor (one indicator per sorted level, named
``col[level]`` as patsy names them), a numeric column is used as is. ``spatial(x)`` is a
synonym of ``s(x)`` and ``s(x, bs="sz")`` of ``sz(x)``. There is never a scalar intercept (the
B-spline basis is a partition of unity); ``0 +`` is accepted and ignored. Refused, as in
NiMARE: two cell-means spatial factors (``~ s(a) + s(b)``, rank deficient: use ``sz``),
an explicit ``1`` beside one, a non-spatial term beside ``exposure()``, ``offset(...)``, and the
overdispersed models with ``exposure()`` or with a pattern holding a single experiment.

The numerics (separable basis, likelihoods, Newton and L-BFGS fits, Fisher information) are in
:mod:`nimare_jax.ops.cbmr` and run in float64.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse
import scipy.stats

from nimare_jax.exceptions import DatasetError, NiMAREJaxError
from nimare_jax.ops import cbmr as ops
from nimare_jax.results import MetaResult
from nimare_jax.spatial import get_template, load_mask, mm2vox

LGR = logging.getLogger(__name__)

DEFAULT_GROUP_NAME = "Default"
INTERCEPT_COLUMN = "Intercept"
DERIVED_EXPOSURE = "_cbmr_n_foci"
SUM_TO_ZERO = "sum_to_zero"
INFORMATION_METHODS = ("closed_form", "autodiff")
CONTRAST_METHODS = ("pairwise", "reference", "consecutive", "zero")
NEWTON_MAX_PARAMS = 4000  # Poisson fits use Newton's method up to this many parameters
_CHUNK = 64  # covariance-root columns evaluated as maps at once by CBMRResult.test
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class FormulaError(NiMAREJaxError, ValueError):
    """A CBMR formula cannot be parsed, or does not fit the dataset's annotations."""


class ContrastError(NiMAREJaxError, ValueError):
    """A hypothesis cannot be interpreted against the fitted design."""


class CovarianceError(NiMAREJaxError, ValueError):
    """A covariance estimator cannot be used as requested."""


# ----------------------------------------------------------------------------- formula
@dataclass(frozen=True)
class Term:
    """One formula term: ``expr`` (column names joined by ``:``, or ``"1"``) and its kind."""

    expr: str
    spatial: bool
    constraint: str | None = None
    exposure: bool = False

    @property
    def is_intercept(self) -> bool:
        """Whether this is the spatial baseline ``1``."""
        return self.expr == "1"

    def __str__(self) -> str:
        if self.exposure:
            return "exposure()" if self.expr == DERIVED_EXPOSURE else f"exposure({self.expr})"
        if self.is_intercept:
            return "1"
        if not self.spatial:
            return self.expr
        return f"sz({self.expr})" if self.constraint == SUM_TO_ZERO else f"s({self.expr})"


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            raise FormulaError(f"unbalanced parentheses in {text!r}")
        if char == separator and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise FormulaError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(current).strip())
    return parts


def _check_expression(expr: str, piece: str) -> str:
    """Return ``expr`` if it is column names joined by ``:``, else raise."""
    names = [name.strip() for name in expr.split(":")]
    if not all(_NAME.fullmatch(name) for name in names):
        raise FormulaError(
            f"term {piece!r}: {expr!r} is not a column name or an interaction of column names "
            "(a:b); transformations such as C(x) or np.log(x) are not supported - add the "
            "transformed column to the dataset's annotations instead"
        )
    return ":".join(names)


def parse_formula(formula: str) -> tuple[tuple[Term, ...], bool]:
    """Parse a one-sided CBMR formula.

    Parameters
    ----------
    formula : str
        E.g. ``"~ s(diagnosis) + n"`` (the ``~`` is optional).

    Returns
    -------
    terms : tuple of Term
    explicit_intercept : bool
        Whether ``1`` (or ``s(1)``) was written.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    rhs = formula.split("~", 1)[-1].strip()
    if not rhs:
        raise FormulaError(f"formula {formula!r} has no terms right of '~'")
    terms, explicit = [], False
    for piece in _split_top_level(rhs, "+"):
        if not piece:
            raise FormulaError(f"formula {formula!r} has an empty term")
        if piece == "0":
            continue
        if piece == "1":
            explicit = True
            terms.append(Term("1", spatial=True))
            continue
        call = re.fullmatch(r"(\w+)\s*\((.*)\)", piece, flags=re.DOTALL)
        if call is None:
            terms.append(Term(_check_expression(piece, piece), spatial=False))
            continue
        marker, inner = call.group(1), call.group(2)
        args = [a for a in _split_top_level(inner, ",") if a]
        if marker == "offset":
            raise FormulaError(
                f"{piece!r}: CBMR writes this exposure(...), which takes the count itself and "
                "multiplies the expected value by it (offset() would take its logarithm); use "
                "exposure() for each experiment's own foci count or exposure(column)"
            )
        if marker == "exposure":
            if len(args) > 1:
                raise FormulaError(f"{piece!r} takes at most one column")
            expr = _check_expression(args[0], piece) if args else DERIVED_EXPOSURE
            terms.append(Term(expr, spatial=False, exposure=True))
            continue
        if marker not in ("s", "spatial", "sz"):
            raise FormulaError(
                f"unknown function {marker!r} in term {piece!r}; CBMR terms are column names, "
                "a:b interactions, s(...), spatial(...), sz(...) and exposure(...)"
            )
        constraint = SUM_TO_ZERO if marker == "sz" else None
        exprs = []
        for arg in args:
            basis = re.fullmatch(r"bs\s*=\s*[\"']?(\w+)[\"']?", arg)
            if basis is not None:
                if basis.group(1) != "sz":
                    raise FormulaError(f"{piece!r}: the only basis option is bs='sz'")
                constraint = SUM_TO_ZERO
            elif re.fullmatch(r"spacing\s*=.*", arg):
                raise FormulaError(
                    f"{piece!r}: a per-term spacing is not supported; set spline_spacing on CBMR"
                )
            else:
                exprs.append(arg)
        if len(exprs) != 1:
            raise FormulaError(f"{piece!r} takes one column expression, e.g. s(diagnosis)")
        if exprs[0] == "1":
            explicit = True
            terms.append(Term("1", spatial=True))
            continue
        terms.append(Term(_check_expression(exprs[0], piece), True, constraint=constraint))
    if not terms:
        raise FormulaError(f"formula {formula!r} has no terms")
    keys = [(t.expr, t.spatial, t.constraint, t.exposure) for t in terms]
    for key, term in zip(keys, terms, strict=True):
        if keys.count(key) > 1:
            raise FormulaError(f"term {term} appears more than once in {formula!r}")
    if sum(t.exposure for t in terms) > 1:
        raise FormulaError(f"{formula!r} has more than one exposure term; use one")
    return tuple(terms), explicit


@dataclass(frozen=True)
class Block:
    """A term bound to the experiments: its design columns and names.

    ``level_map`` (n_levels, n_columns) maps a hypothesis over ``level_names`` onto the
    columns (identity except for ``sz()`` terms, whose columns are contrasts among levels).
    """

    term: Term
    block: np.ndarray
    column_names: tuple
    level_names: tuple
    level_map: np.ndarray
    is_baseline: bool = False

    @property
    def n_columns(self) -> int:
        """Number of design columns."""
        return self.block.shape[1]


def sum_to_zero_basis(n_levels: int) -> np.ndarray:
    """Orthonormal basis (n_levels, n_levels - 1) of ``{v : sum(v) = 0}`` (QR of the ones)."""
    q, _ = np.linalg.qr(np.ones((n_levels, 1)), mode="complete")
    basis = q[:, 1:]
    return basis * np.where(basis[0] < 0, -1.0, 1.0)


def _factor_columns(name: str, frame: pd.DataFrame, where: str):
    """Return one factor's columns and names (indicators per level, or the numeric column)."""
    if name not in frame.columns:
        available = ", ".join(sorted(c for c in map(str, frame.columns) if not c.startswith("_")))
        raise FormulaError(
            f"{where}: no column {name!r} in the annotations; available: {available}"
        )
    series = frame[name]
    missing = series.isna().to_numpy()
    if missing.any():
        ids = ", ".join(map(str, frame["id"].to_numpy()[missing][:5]))
        raise FormulaError(f"{where}: column {name!r} has missing values (experiments {ids})")
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        try:
            return series.to_numpy(dtype=float)[:, None], [name]
        except (TypeError, ValueError) as error:
            raise FormulaError(f"{where}: column {name!r} is not numeric: {error}") from error
    if isinstance(series.dtype, pd.CategoricalDtype):
        levels = list(series.cat.categories)
    else:
        try:
            levels = sorted(series.unique())
        except TypeError as error:
            raise FormulaError(f"{where}: column {name!r} mixes value types") from error
    values = series.to_numpy()
    columns = np.stack([values == level for level in levels], axis=1).astype(float)
    return columns, [f"{name}[{level}]" for level in levels]


def _experiment_block(term: Term, frame: pd.DataFrame):
    """Return ``(block, column_names, level_names, level_map)`` of one term."""
    if term.is_intercept:
        return np.ones((len(frame), 1)), (INTERCEPT_COLUMN,), (INTERCEPT_COLUMN,), np.eye(1)
    block, names = np.ones((len(frame), 1)), [""]
    for factor in term.expr.split(":"):
        columns, labels = _factor_columns(factor, frame, f"term {term}")
        # patsy's order: the first factor varies fastest.
        block = (block[:, :, None] * columns[:, None, :]).reshape(len(frame), -1, order="F")
        names = [f"{a}:{b}" if a else b for b in labels for a in names]
    names = tuple(names)
    if term.constraint == SUM_TO_ZERO:
        if block.shape[1] < 2:
            raise FormulaError(f"term {term}: a sum-to-zero factor needs at least two levels")
        z = sum_to_zero_basis(block.shape[1])
        cols = tuple(f"{term.expr}[sz{n + 1}]" for n in range(z.shape[1]))
        return block @ z, cols, names, z
    return block, names, names, np.eye(len(names))


def _spans_intercept(block: np.ndarray) -> bool:
    """Whether indicator columns sum to one on every row (a cell-means factor)."""
    return bool(np.all((block == 0) | (block == 1)) and np.allclose(block.sum(axis=1), 1.0))


def bind(terms, explicit_intercept: bool, frame: pd.DataFrame) -> tuple[Block, ...]:
    """Resolve parsed terms against the experiments' annotations (rows of ``frame``).

    Adds the spatial baseline ``1`` when no cell-means spatial factor supplies it, and raises
    :class:`FormulaError` for NiMARE's unidentifiable designs.
    """
    blocks = []
    for term in terms:
        block, names, levels, level_map = _experiment_block(term, frame)
        if term.exposure:
            values = block[:, 0]
            if block.shape[1] != 1:
                raise FormulaError(f"{term}: an exposure must be one numeric column")
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise FormulaError(f"{term}: an exposure must be finite and non-negative")
            if not np.any(values > 0):
                raise FormulaError(f"{term} is zero for every experiment: nothing to fit")
        absorbing = term.spatial and not term.is_intercept and term.constraint is None
        baseline = term.is_intercept or (absorbing and _spans_intercept(block))
        blocks.append(Block(term, block, names, levels, level_map, baseline))
    cell_means = [b for b in blocks if b.is_baseline and not b.term.is_intercept]
    if len(cell_means) > 1:
        names = ", ".join(str(b.term) for b in cell_means)
        both = " + ".join(f"sz({b.term.expr})" for b in cell_means)
        cross = ":".join(b.term.expr for b in cell_means)
        raise FormulaError(
            f"the spatial factor terms {names} are not jointly identifiable (each one's "
            f"columns sum to the constant map); write ~ {both} for additive effects or "
            f"~ s({cross}) for one map per combination"
        )
    if explicit_intercept and cell_means:
        raise FormulaError(
            f"an explicit '1' cannot be combined with the cell-means spatial term "
            f"{cell_means[0].term}, whose levels already span the baseline map"
        )
    if not any(b.is_baseline for b in blocks):
        block, names, levels, level_map = _experiment_block(Term("1", True), frame)
        blocks.insert(0, Block(Term("1", True), block, names, levels, level_map, True))
    if any(b.term.exposure and b.term.expr == DERIVED_EXPOSURE for b in blocks):
        scalar = [str(b.term) for b in blocks if not b.term.spatial and not b.term.exposure]
        if scalar:
            raise FormulaError(
                f"{', '.join(scalar)} has no coefficient to estimate beside exposure(): "
                "conditioning on each experiment's foci count fits its total exactly, so a "
                "non-spatial term's estimate is 0 whatever the data; write it as s(...) to ask "
                "whether it changes where foci fall"
            )
    return tuple(blocks)


# ----------------------------------------------------------------------------- estimator
def _label(column: str) -> str:
    """Map label of a design column: ``diagnosis[a]:drug[b]`` -> ``a-b``; Intercept -> Default."""
    parts = []
    for piece in str(column).split(":"):
        match = re.search(r"\[(?:T\.)?([^\]]+)\]", piece)
        parts.append(match.group(1) if match else piece)
    label = "-".join(parts)
    return DEFAULT_GROUP_NAME if label in ("1", INTERCEPT_COLUMN) else label


def _table_safe(name: str) -> str:
    """Term name usable in a table key (NiMARE's rule)."""
    return name.replace(" ", "").replace("(", "-").replace(")", "").replace(":", "-")


class CBMR:
    """Coordinate-based meta-regression specified by a formula (NiMARE 0.22.1's ``CBMR``).

    Parameters
    ----------
    formula : str
        Model, e.g. ``"~ 1"``, ``"~ s(diagnosis) + sample_size"``; see the module docstring.
    distribution : {"poisson", "negativebinomial", "clusterednegativebinomial"}
        Observation model (case, ``_`` and ``-`` are ignored).
    mask : str, pathlib.Path, nibabel.Nifti1Image or None
        Region of interest; None uses the 2 mm MNI152 brain mask.
    incidence_threshold : float or None
        Keep voxels where the fraction of experiments with a focus exceeds this; None keeps
        every mask voxel. With fewer than 1,000 experiments the default keeps exactly the
        voxels holding a focus.
    spline_spacing : int
        Knot spacing (voxels) of the cubic B-splines.
    n_iter : int
        Iteration cap of the optimizer (see ``solver_``).
    lr : float
        Learning rate scaling the L-BFGS direction before the zoom line search.
    tol : float
        Stop when the log-likelihood changes by less than this between iterations (both
        optimizers; Newton's method also stops when its step falls below 1e-10).
    device : None or str
        Where the fit runs: None uses JAX's default device; ``"cpu"``, or ``"cuda"`` /
        ``"cuda:N"`` / ``"gpu"`` / ``"gpu:N"`` for a GPU. As in NiMARE, asking for a GPU that is
        not there falls back to the CPU (here with a warning).
    random_state : None or int
        Accepted for NiMARE compatibility and not used: the fit is deterministic (fixed starting
        values). NiMARE 0.22.1 seeds torch with it, but draws its starting values
        from a generator of its own with a fixed seed, so its result does not depend on it
        either.
    information_method : {"closed_form", "autodiff"}
        Observed Fisher information over the coefficients (overdispersion held at its
        estimate, as NiMARE): closed form on the separable basis (all three models) or
        automatic differentiation (batched Hessian-vector products).

    Attributes
    ----------
    solver_ : {"newton", "lbfgs"}
        The optimizer. Designs with at most ``NEWTON_MAX_PARAMS`` parameters use Newton's
        method with a backtracking line search on the closed-form gradient and information
        (:func:`nimare_jax.ops.cbmr.newton_fit`; it reaches the exact optimum in a few to a few
        tens of iterations, where L-BFGS - NiMARE's choice - stalls near it after hundreds, and
        it compiles to one program). Poisson: :func:`~nimare_jax.ops.cbmr.newton_direction`
        (the likelihood is concave). Negative binomial and clustered negative binomial:
        :func:`~nimare_jax.ops.cbmr.overdispersed_direction`, jointly over the coefficients
        and the log overdispersions (starting at 0.01), moderators included; the likelihood is
        concave in the coefficients but not jointly, so the overdispersion part of the Newton
        system is made positive definite (a step that always ascends). Larger designs use
        optax L-BFGS with a zoom line search (:func:`nimare_jax.ops.cbmr.fit`), NiMARE's
        stopping rules.
    n_iter_, converged_, log_likelihood_ : int, bool, float
        Iterations run (Newton or L-BFGS), whether the fit converged (a stopping rule fired
        before the cap), and the log-likelihood at the optimum.
    """

    def __init__(
        self,
        formula,
        distribution="poisson",
        mask=None,
        incidence_threshold=0.001,
        spline_spacing=10,
        n_iter=1000,
        lr=1.0,
        tol=1e-8,
        device=None,
        random_state=None,
        information_method="closed_form",
    ):
        self.terms, self.explicit_intercept = parse_formula(formula)
        self.formula = formula
        key = str(distribution).replace("_", "").replace("-", "").lower()
        if key not in ops.DISTRIBUTIONS:
            raise ValueError(
                f"unknown distribution {distribution!r}; expected one of {ops.DISTRIBUTIONS}"
            )
        self.distribution = key
        if incidence_threshold is not None and not 0 <= float(incidence_threshold) < 1:
            raise ValueError(
                f"incidence_threshold must be None or in [0, 1), got {incidence_threshold!r}"
            )
        if information_method not in INFORMATION_METHODS:
            raise ValueError(
                f"information_method must be one of {INFORMATION_METHODS}, "
                f"got {information_method!r}"
            )
        if int(spline_spacing) < 1 or int(n_iter) < 1:
            raise ValueError("spline_spacing and n_iter must be positive integers")
        self.mask = mask
        self.incidence_threshold = incidence_threshold
        self.spline_spacing = int(spline_spacing)
        self.n_iter = int(n_iter)
        self.lr = float(lr)
        self.tol = float(tol)
        _resolve_device(device)  # an unknown device name is an error now, not at fit
        if random_state is not None and not isinstance(random_state, (int, np.integer)):
            raise TypeError(f"random_state must be None or an int, got {random_state!r}")
        self.device = device
        self.random_state = random_state
        self.information_method = information_method

    # ------------------------------------------------------------------ inputs
    def _foci(self, dataset):
        """Return experiment ids, the analysis mask image and ijk, and the sparse foci matrix."""
        coords = dataset.coordinates
        with_coordinates = set(coords["id"])
        ids = [i for i in dataset.ids if i in with_coordinates]
        if not ids:
            raise DatasetError(f"{dataset.origin}: no experiment has coordinates")
        roi = load_mask(self.mask) if self.mask is not None else get_template("mni152_2mm")
        roi_data = np.asarray(roi.dataobj) > 0
        ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(float), roi.affine)
        inside = np.all((ijk >= 0) & (ijk < roi_data.shape), axis=1)
        inside[inside] = roi_data[tuple(ijk[inside].T)]
        n_dropped = int((~inside).sum())
        if n_dropped:
            LGR.info("%d/%d coordinates fall outside the mask; removed", n_dropped, len(ijk))
        lookup = np.full(roi_data.shape, -1, dtype=np.int64)
        lookup[roi_data] = np.arange(int(roi_data.sum()))
        row_of = {ident: n for n, ident in enumerate(ids)}
        rows = coords["id"].map(row_of).to_numpy()[inside].astype(np.int64)
        cols = lookup[tuple(ijk[inside].T)]
        n_exp, n_roi = len(ids), int(roi_data.sum())
        counts = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_exp, n_roi))
        incidence = np.asarray((counts > 0).sum(axis=0)).ravel() / n_exp
        if self.incidence_threshold is None:
            keep = np.ones(n_roi, dtype=bool)
        else:
            keep = incidence > float(self.incidence_threshold)
        if not keep.any():
            raise DatasetError(
                f"{dataset.origin}: no voxel survived the CBMR incidence filter "
                f"(incidence_threshold={self.incidence_threshold}, {n_exp} experiments, "
                f"{rows.size} foci inside the mask); lower incidence_threshold or pass None"
            )
        analysis = np.zeros(roi_data.size, dtype=bool)
        analysis[np.flatnonzero(roi_data.ravel())[keep]] = True
        analysis = analysis.reshape(roi_data.shape)
        mask_img = nib.Nifti1Image(analysis.astype(np.uint8), roi.affine)
        return ids, mask_img, np.argwhere(analysis), counts[:, keep].tocsr()

    def _annotations(self, dataset, ids, totals) -> pd.DataFrame:
        """Return metadata and annotations of the experiments, in foci-matrix row order."""
        frame = pd.DataFrame({"id": ids})
        for table in (dataset.metadata, dataset.annotations):
            extra = [c for c in table.columns if c not in frame.columns]
            frame = frame.merge(table[["id", *extra]], on="id", how="left")
        frame[DERIVED_EXPOSURE] = totals
        return frame

    # ------------------------------------------------------------------ fit
    def fit(self, dataset) -> CBMRResult:
        """Fit the model to a dataset's coordinates and annotations.

        Parameters
        ----------
        dataset : nimare_jax.dataset.Dataset

        Returns
        -------
        CBMRResult
            Maps over the analysis voxels (``spatialIntensity_group-<label>``,
            ``logSpatialIntensity_group-<label>``, ``spatialFactorEffect_*``,
            ``voxelwiseModeratorEffect_*``) and tables (``moderatorEffect_*``,
            ``spatialCoefficient_*``, ``spatialCoefficientSE_*``, ``overdispersion``).
        """
        ids, mask_img, ijk, foci = self._foci(dataset)
        totals = np.asarray(foci.sum(axis=1)).ravel()
        self.annotations_ = self._annotations(dataset, ids, totals)
        self.blocks_ = bind(self.terms, self.explicit_intercept, self.annotations_)
        spatial = np.hstack([b.block for b in self.blocks_ if b.term.spatial])
        moderators = [b.block for b in self.blocks_ if not b.term.spatial and not b.term.exposure]
        moderators = np.hstack(moderators) if moderators else np.zeros((len(ids), 0))
        exposure = np.ones(len(ids))
        for b in self.blocks_:
            if b.term.exposure:
                exposure = exposure * b.block[:, 0]
        loadings, assignment = np.unique(spatial, axis=0, return_inverse=True)
        assignment = np.asarray(assignment).reshape(-1)
        self._check_distribution(assignment, loadings.shape[0])
        membership = scipy.sparse.csr_matrix(
            (np.ones(len(ids)), (np.arange(len(ids)), assignment)),
            shape=(len(ids), loadings.shape[0]),
        )
        marginal = np.asarray((membership.T @ foci).todense())
        basis = ops.spline_basis(ijk, self.spline_spacing)
        if ops.prefer_dense(ijk.shape[0], basis.kept.size):
            basis = ops.dense_basis(basis)
        self.n_bases_ = int(basis.kept.size)
        self.mask_img_, self.ijk_, self.foci_ = mask_img, ijk, foci
        with jax.enable_x64(True):
            # converted on the host: a dtype conversion on the device is a program to compile
            data = jax.device_put(
                ops.CBMRData(
                    basis=basis,
                    marginal=np.asarray(marginal, np.float64),
                    totals=np.asarray(totals, np.float64),
                    assignment=np.asarray(assignment, np.int32),
                    loadings=np.asarray(loadings, np.float64),
                    moderators=np.asarray(moderators, np.float64),
                    exposure=np.asarray(exposure, np.float64),
                ),
                _resolve_device(self.device, warn=True),
            )
            self._covariance = {}
            n_params = ops.n_params(data, self.distribution)
            if n_params <= NEWTON_MAX_PARAMS:
                start = ops.constant_start(data)
                program = ops.newton_direction
                if self.distribution != "poisson":
                    nuisance = np.full(loadings.shape[0], np.log(ops.INITIAL_OVERDISPERSION))
                    start = np.concatenate([start, nuisance])
                    program = ops.overdispersed_direction
                    if isinstance(data.basis, ops.DenseBasis):
                        program = ops.overdispersed_direction_dense
                    program = functools.partial(program, distribution=self.distribution)
                fitted = ops.newton_fit(data, start, self.n_iter, self.tol, program)
                self.solver_ = "newton"
                if self.information_method == "closed_form":
                    self._covariance["information"] = np.asarray(fitted.information)
                    self._covariance["factor"] = np.asarray(fitted.factor)
            else:
                start = ops.initial_params(data, self.distribution)
                fitted = ops.fit(
                    data, start, self.n_iter, self.tol, distribution=self.distribution, lr=self.lr
                )
                self.solver_ = "lbfgs"
            self.params_ = np.asarray(fitted.params)
            self.data_ = data
            self.log_likelihood_ = float(fitted.log_likelihood)
        self.n_iter_ = int(fitted.n_iter)
        self.converged_ = bool(fitted.converged)
        if not np.isfinite(self.log_likelihood_):
            raise DatasetError(
                f"{dataset.origin}: the {self.distribution} log-likelihood became "
                f"{self.log_likelihood_} during optimization; try a smaller lr or a coarser "
                "spline_spacing"
            )
        if not self.converged_:
            warnings.warn(
                f"CBMR stopped at the iteration cap (n_iter={self.n_iter}) before converging "
                f"(tol={self.tol}); raise n_iter",
                stacklevel=2,
            )
        self.loadings_, self.assignment_ = loadings, assignment
        maps, tables = self._summarize()
        return CBMRResult(
            maps=maps,
            mask=mask_img,
            tables=tables,
            description=self._description(len(ids), ijk.shape[0], loadings.shape[0]),
            estimator=self,
        )

    def _check_distribution(self, assignment, n_patterns):
        """Refuse the overdispersed models where NiMARE does."""
        if self.distribution == "poisson":
            return
        if any(b.term.exposure and b.term.expr == DERIVED_EXPOSURE for b in self.blocks_):
            raise FormulaError(
                f"{self.distribution} cannot be combined with exposure(): conditioning on each "
                "experiment's total leaves no between-experiment variation to estimate; use "
                "Poisson with exposure(), or drop exposure()"
            )
        counts = np.bincount(assignment, minlength=n_patterns)
        if np.any(counts < 2):
            raise FormulaError(
                f"{self.distribution} estimates one overdispersion per group of experiments "
                f"sharing a spatial map, and {int((counts < 2).sum())} of {n_patterns} groups "
                "hold a single experiment (a continuous s() term or a one-experiment factor "
                "level); use Poisson or make the term non-spatial"
            )

    # ------------------------------------------------------------------ inference
    @property
    def n_coefficients(self) -> int:
        """Number of regression coefficients (spatial and scalar)."""
        return self.loadings_.shape[1] * self.n_bases_ + self.data_.moderators.shape[1]

    def information_matrix(self) -> np.ndarray:
        """Observed Fisher information over the coefficients, shape (n_coef, n_coef)."""
        if "information" not in self._covariance:  # keyed apart from the covariances' tuples
            with jax.enable_x64(True):
                params = jnp.asarray(self.params_)
                if self.information_method == "closed_form" and self.distribution == "poisson":
                    info = ops.poisson_information(params, self.data_)
                elif self.information_method == "closed_form":
                    info = ops.overdispersed_information(params, self.data_, self.distribution)
                else:
                    info = ops.autodiff_information(params, self.data_, self.distribution)
                self._covariance["information"] = np.asarray(info)
        return self._covariance["information"]

    def covariance(
        self, cov_type: str = "fisher", meat: str = "cluster", correction="hc1", ridge=0.0
    ) -> np.ndarray:
        """Coefficient covariance: inverse information, or a cluster sandwich.

        Parameters
        ----------
        cov_type : {"fisher", "sandwich"}
            ``"fisher"``: the inverse of the observed information. ``"sandwich"``:
            ``H^-1 M H^-1`` with ``M`` the sum over experiments of their Poisson score
            outer products (robust to overdispersion and to correlation among an experiment's
            foci), as NiMARE's ``meat="cluster"``.
        meat : {"cluster"}
            Only the experiment-clustered meat is implemented.
        correction : {None, "hc0", "hc1"}
            ``"hc1"`` scales the meat by ``n / (n - p)`` (n experiments, p coefficients) and
            needs ``n > p``.
        ridge : float
            Added to the information's diagonal before it is inverted (sandwich only).

        Returns
        -------
        numpy.ndarray, shape (n_coef, n_coef)
        """
        key = (cov_type, meat, correction, float(ridge))
        if key in self._covariance:
            return self._covariance[key]
        if cov_type == "fisher":
            cov = _inverse(self.information_matrix(), self._covariance.get("factor"))
        elif cov_type == "sandwich":
            if meat != "cluster":
                raise CovarianceError(f"meat={meat!r}: only meat='cluster' is implemented")
            if correction not in (None, "hc0", "hc1"):
                raise CovarianceError(
                    f"correction must be None, 'hc0' or 'hc1' with meat='cluster', "
                    f"got {correction!r}"
                )
            n_obs, n_coef = self.foci_.shape[0], self.n_coefficients
            if correction == "hc1" and n_obs <= n_coef:
                raise CovarianceError(
                    f"hc1 scales by n / (n - p), but this design has {n_coef} parameters and "
                    f"only {n_obs} experiments to fit them. Use correction='hc0', a coarser "
                    "spline_spacing, or fewer s() terms."
                )
            with jax.enable_x64(True):
                counts = jnp.asarray(self.foci_.toarray(), jnp.float64)
                scores = np.asarray(
                    ops.cluster_scores(jnp.asarray(self.params_), self.data_, counts)
                )
            meat_matrix = scores.T @ scores
            if correction == "hc1":
                meat_matrix *= n_obs / (n_obs - n_coef)
            bread = _inverse(self.information_matrix() + ridge * np.eye(n_coef))
            cov = bread @ meat_matrix @ bread
        else:
            raise ValueError(f"cov_type must be 'fisher' or 'sandwich', got {cov_type!r}")
        self._covariance[key] = 0.5 * (cov + cov.T)
        return self._covariance[key]

    def _slices(self) -> dict:
        """Slice of the flat coefficient vector owned by each non-exposure term."""
        slices, spatial, scalar = {}, 0, self.loadings_.shape[1] * self.n_bases_
        for b in self.blocks_:
            if b.term.exposure:
                continue
            if b.term.spatial:
                width = b.n_columns * self.n_bases_
                slices[str(b.term)] = slice(spatial, spatial + width)
                spatial += width
            else:
                slices[str(b.term)] = slice(scalar, scalar + b.n_columns)
                scalar += b.n_columns
        return slices

    def coefficient_maps(self, rows: np.ndarray) -> np.ndarray:
        """Evaluate basis coefficient rows (n, n_bases) as maps (n, n_voxels)."""
        with jax.enable_x64(True):
            # a NumPy argument: jnp.asarray would compile a small program of its own
            rows = np.asarray(rows, np.float64)
            return np.asarray(ops.coefficient_maps(self.data_.basis, rows))

    def _summarize(self):
        """NiMARE's maps and tables from the fitted coefficients and their standard errors."""
        maps, tables = {}, {}
        errors = np.sqrt(np.maximum(np.diag(self.covariance()), 0.0))
        slices = self._slices()
        for b in self.blocks_:
            if b.term.exposure:
                continue
            name, where = str(b.term), slices[str(b.term)]
            values = self.params_[where].reshape(b.n_columns, -1)
            se = errors[where].reshape(b.n_columns, -1)
            if not b.term.spatial:
                tables[f"moderatorEffect_{_table_safe(name)}"] = pd.DataFrame(
                    {"column": list(b.column_names), "est": values[:, 0], "se": se[:, 0]}
                )
                continue
            log_maps = self.coefficient_maps(values)
            for n, column in enumerate(b.column_names):
                label = _label(column)
                if b.is_baseline:
                    maps[f"spatialIntensity_group-{label}"] = np.exp(log_maps[n])
                    maps[f"logSpatialIntensity_group-{label}"] = log_maps[n]
                elif b.term.constraint == SUM_TO_ZERO:
                    factor = b.term.expr.replace(":", "-")
                    maps[f"spatialFactorEffect_{factor}-{label}"] = log_maps[n]
                else:
                    maps[f"voxelwiseModeratorEffect_{label}"] = log_maps[n]
            index = list(b.column_names)
            tables[f"spatialCoefficient_{_table_safe(name)}"] = pd.DataFrame(values, index=index)
            tables[f"spatialCoefficientSE_{_table_safe(name)}"] = pd.DataFrame(se, index=index)
        if self.distribution != "poisson":
            tables["overdispersion"] = pd.DataFrame(
                {"overdispersion": np.exp(self.params_[self.n_coefficients :])}
            )
        return maps, tables

    def describe_terms(self) -> str:
        """Per-term parameter budget of the fitted design."""
        lines = []
        for b in self.blocks_:
            if b.term.exposure:
                lines.append(f"  {str(b.term):32}      fixed at 1")
                continue
            width = self.n_bases_ if b.term.spatial else 1
            lines.append(
                f"  {str(b.term):32} {b.n_columns:>4} column(s) x {width:>5} = "
                f"{b.n_columns * width:>7} parameters"
            )
        lines.append(f"  {'total':32} {self.n_coefficients:>32}")
        return "\n".join(lines)

    def _description(self, n_exp: int, n_vox: int, n_patterns: int) -> str:
        """Methods paragraph, including how the optimizer ended."""
        names = {
            "poisson": "a Poisson model",
            "negativebinomial": "a negative binomial model",
            "clusterednegativebinomial": "a clustered negative binomial model",
        }
        if self.solver_ == "newton":
            solver, unit = "Newton's method on the closed-form information", "Newton iterations"
        else:
            solver = f"optax L-BFGS with a zoom line search, tolerance {self.tol:g}"
            unit = "L-BFGS iterations"
        stop = (
            f"converged after {self.n_iter_} {unit}"
            if self.converged_
            else f"stopped after {self.n_iter_} {unit} without converging"
        )
        return (
            f"A coordinate-based meta-regression with the design ~ "
            f"{' + '.join(str(b.term) for b in self.blocks_)} was fitted with nimare_jax, using "
            f"{names[self.distribution]} (as in NiMARE 0.22.1's CBMR). Spatial intensity was "
            f"parameterized by cubic B-splines at spacing {self.spline_spacing} ("
            f"{self.n_bases_} bases over {n_vox} analysis voxels, {self.n_coefficients} "
            f"coefficients, {n_exp} experiments, {n_patterns} distinct spatial map(s)). The "
            f"fit (float64, {solver}) {stop}, log-likelihood {self.log_likelihood_:.6g}."
        )


# ----------------------------------------------------------------------------- results
def _parse_side(text: str, levels: dict, statement: str) -> tuple[np.ndarray, float]:
    """Parse ``[c *] name (+|-) ...`` into a vector over levels and a constant."""
    vector, constant = np.zeros(len(levels)), 0.0
    text = text.replace(" ", "")
    if not text:
        return vector, constant
    if text[0] not in "+-":
        text = "+" + text
    for sign, body in re.findall(r"([+-])([^+-]+)", text):
        factor = -1.0 if sign == "-" else 1.0
        parts = body.split("*")
        number = 1.0
        names = []
        for part in parts:
            try:
                number *= float(part)
            except ValueError:
                names.append(part)
        if len(names) > 1:
            raise ContrastError(f"{statement!r}: {body!r} multiplies two coefficients")
        if not names:
            constant += factor * number
            continue
        if names[0] not in levels:
            raise ContrastError(
                f"{statement!r}: unknown coefficient {names[0]!r}; this design has "
                f"{', '.join(levels)}"
            )
        vector[levels[names[0]]] += factor * number
    return vector, constant


class CBMRResult(MetaResult):
    """Result of :meth:`CBMR.fit`; tests hypotheses over the fitted design's levels."""

    def _levels(self):
        """Return ``{name: (block, index)}`` over level names and their bare labels."""
        names, aliases = {}, {}
        for b in self.estimator.blocks_:
            if b.term.exposure:
                continue
            for n, level in enumerate(b.level_names):
                names[level] = (b, n)
                aliases.setdefault(_label(level), []).append((b, n))
        for alias, found in aliases.items():
            if len(found) == 1 and alias not in names:
                names[alias] = found[0]
        return names

    def _contrast(self, statements):
        """Return ``(block, contrast over its columns, constants, label)``."""
        statements = [statements] if isinstance(statements, str) else list(statements)
        if not statements:
            raise ContrastError("no hypotheses given")
        index = self._levels()
        names = list(index)
        lookup = {name: n for n, name in enumerate(names)}
        rows, constants = [], []
        for statement in statements:
            sides = str(statement).split("=")
            if len(sides) > 2:
                raise ContrastError(f"{statement!r} has more than one '='")
            left, c_left = _parse_side(sides[0], lookup, statement)
            right, c_right = (
                _parse_side(sides[1], lookup, statement) if len(sides) == 2 else (0 * left, 0.0)
            )
            rows.append(left - right)
            constants.append(c_right - c_left)
        rows = np.array(rows)
        used = {id(index[names[j]][0]) for j in np.flatnonzero(rows.any(axis=0))}
        if len(used) != 1:
            raise ContrastError(
                f"{statements}: a contrast must involve the levels of exactly one term"
            )
        block = next(index[names[j]][0] for j in np.flatnonzero(rows.any(axis=0)))
        over_levels = np.zeros((rows.shape[0], len(block.level_names)))
        for j in np.flatnonzero(rows.any(axis=0)):
            over_levels[:, index[names[j]][1]] += rows[:, j]
        if len(statements) == 1 and statements[0].count("=") == 1:
            left, right = (side.strip() for side in statements[0].split("="))
            label = left if right in ("0", "0.0") else f"{left}_vs_{right}"
        else:
            label = ";".join(statements)
        return block, over_levels @ block.level_map, np.array(constants), label.replace(" ", "")

    def test(self, hypotheses=None, name=None, inplace=False, *, term=None, method=None,
             **covariance_kwargs):  # fmt: skip
        """Wald tests of linear hypotheses over the fitted levels (Fisher covariance by default).

        Parameters
        ----------
        hypotheses : str or list of str
            E.g. ``"schizophrenia = depression"``, ``"2 * a = b + c"``, ``"n = 0"``; a list is
            tested jointly (chi-square with one degree of freedom per statement).
        name : str, optional
            Label of the outputs (default: derived from the hypothesis, ``a_vs_b``).
        inplace : bool
            Add the outputs to this result instead of a copy.
        term, method : str, optional
            A family of contrasts over one term: ``"pairwise"``, ``"reference"``,
            ``"consecutive"`` or ``"zero"``.
        **covariance_kwargs
            ``cov_type``, ``meat``, ``correction``, ``ridge`` of :meth:`CBMR.covariance`
            (default: Fisher).

        Returns
        -------
        CBMRResult
            With maps ``est_*``, ``se_*`` (one-row spatial contrasts) or ``chiSquare_*``, and
            ``z_*``, ``p_*``, ``logp_*``; or a table ``contrast_*`` for scalar terms.
        """
        if (term is None) != (method is None):
            raise ContrastError("term and method must be given together")
        if (term is None) == (hypotheses is None):
            raise ContrastError("give either hypotheses, or term and method")
        requested = [(name, hypotheses)] if term is None else self._family(term, method)
        cov = self.estimator.covariance(**covariance_kwargs)
        slices = self.estimator._slices()
        target = self if inplace else self.copy()
        for label, statement in requested:
            block, contrast, constants, derived = self._contrast(statement)
            key = label or derived
            where = slices[str(block.term)]
            coef = self.estimator.params_[where].reshape(block.n_columns, -1)
            sigma = cov[where, where]
            if block.term.spatial:
                stats = self._spatial_test(key, block, contrast, constants, coef, sigma)
                target.maps.update(stats)
            else:
                target.tables[f"contrast_{key}"] = _scalar_test(contrast, constants, coef, sigma)
        return target

    def _family(self, term, method):
        """Hypotheses of a named contrast family over one term."""
        if method not in CONTRAST_METHODS:
            raise ContrastError(f"method must be one of {CONTRAST_METHODS}, got {method!r}")
        blocks = [b for b in self.estimator.blocks_ if term in (str(b.term), b.term.expr)]
        if not blocks:
            available = ", ".join(str(b.term) for b in self.estimator.blocks_)
            raise ContrastError(f"no term named {term!r}; this design has {available}")
        levels = list(blocks[0].level_names)
        if method == "zero":
            return [(_label(v), f"{v} = 0") for v in levels]
        if len(levels) < 2:
            raise ContrastError(f"method={method!r} needs a term with at least two levels")
        if method == "pairwise":
            pairs = [(a, b) for n, a in enumerate(levels) for b in levels[n + 1 :]]
        elif method == "reference":
            pairs = [(v, levels[0]) for v in levels[1:]]
        else:
            pairs = list(zip(levels[1:], levels[:-1], strict=True))
        return [(f"{_label(a)}_vs_{_label(b)}", f"{a} = {b}") for a, b in pairs]

    def _spatial_test(self, key, block, contrast, constants, coef, sigma):
        """Voxelwise Wald statistics of a contrast over a spatial term's coefficient maps."""
        n_rows, k = contrast.shape[0], coef.shape[1]
        estimate = self.estimator.coefficient_maps(contrast @ coef) - constants[:, None]
        # Var of rows r, s at voxel v: phi_v^T C_r Sigma C_s^T phi_v. With Sigma = R R^T and
        # M_r = (C_r (x) I) R (k x m), it is sum_j u_rj(v) u_sj(v), u_rj the map of column j of
        # M_r: evaluated in chunks of columns, so no n_vox x m array is held.
        root = _psd_root(sigma).reshape(block.n_columns, k, -1)
        factors = np.einsum("rc,ckm->rkm", contrast, root)
        var = np.zeros((estimate.shape[1], n_rows, n_rows))
        for start in range(0, factors.shape[2], _CHUNK):
            chunk = factors[:, :, start : start + _CHUNK]
            maps = self.estimator.coefficient_maps(
                chunk.transpose(0, 2, 1).reshape(-1, k)
            ).reshape(n_rows, chunk.shape[2], -1)
            var += np.einsum("rjv,sjv->vrs", maps, maps)
        out = {}
        if n_rows == 1:
            se = np.sqrt(np.maximum(var[:, 0, 0], 0.0))
            z = estimate[0] / np.where(se > 0, se, np.inf)
            logp = np.log(2.0) + scipy.stats.norm.logsf(np.abs(z))
            out[f"est_{key}"], out[f"se_{key}"] = estimate[0], se
        else:
            solved = np.linalg.solve(var, estimate.T[..., None])[..., 0]
            chi2 = np.einsum("vr,vr->v", estimate.T, solved)
            logp = scipy.stats.chi2.logsf(chi2, n_rows)
            z = -scipy.stats.norm.ppf(np.exp(logp) / 2)
            out[f"chiSquare_{key}"] = chi2
        out[f"z_{key}"] = z
        out[f"p_{key}"] = np.exp(logp)
        out[f"logp_{key}"] = logp
        return out

    def describe_terms(self) -> str:
        """Per-term parameter budget of the fitted design."""
        return self.estimator.describe_terms()

    def moderator_effect_maps(self, moderators=None, unit_change=1.0, inplace=False):
        """Relative-intensity and intensity-difference maps of the spatial moderators.

        For a spatial moderator column with coefficient map ``b`` and a change ``u`` in it:
        ``relativeIntensity_<label>_unit-<u> = exp(u b)`` and, against every baseline map
        ``lambda_g``, ``intensityDifference_<label>_unit-<u>_group-<g> = lambda_g (exp(u b) - 1)``.

        Parameters
        ----------
        moderators : str, list of str or None
            Spatial terms or column labels to use (default: every non-baseline spatial term).
        unit_change : float
            Change in the moderator, in its own units.
        inplace : bool
            Add the maps to this result instead of a copy.

        Returns
        -------
        CBMRResult
        """
        est = self.estimator
        candidates = [b for b in est.blocks_ if b.term.spatial and not b.is_baseline]
        if moderators is not None:
            wanted = {moderators} if isinstance(moderators, str) else set(moderators)
            candidates = [
                b
                for b in candidates
                if {str(b.term), b.term.expr} & wanted or set(b.column_names) & wanted
            ]
        if not candidates:
            raise ValueError(
                "no spatial moderator to describe: mark a moderator with s() (available "
                f"spatial terms: {', '.join(str(b.term) for b in est.blocks_ if b.term.spatial)})"
            )
        slices, unit = est._slices(), f"{float(unit_change):g}"
        baselines = {}
        for b in est.blocks_:
            if b.is_baseline:
                values = est.params_[slices[str(b.term)]].reshape(b.n_columns, -1)
                for n, column in enumerate(b.column_names):
                    baselines[_label(column)] = np.exp(est.coefficient_maps(values[n : n + 1])[0])
        target = self if inplace else self.copy()
        for b in candidates:
            values = est.params_[slices[str(b.term)]].reshape(b.n_columns, -1)
            maps = est.coefficient_maps(values)
            for n, column in enumerate(b.column_names):
                label = _label(column)
                relative = np.exp(np.clip(float(unit_change) * maps[n], -100, 100))
                target.maps[f"relativeIntensity_{label}_unit-{unit}"] = relative
                for group, baseline in baselines.items():
                    key = f"intensityDifference_{label}_unit-{unit}_group-{group}"
                    target.maps[key] = baseline * (relative - 1.0)
        return target

    @property
    def n_iter(self) -> int:
        """Iterations run by the fit's optimizer (Newton or L-BFGS, ``estimator.solver_``)."""
        return self.estimator.n_iter_

    @property
    def converged(self) -> bool:
        """Whether the fit stopped by a convergence rule before the iteration cap."""
        return self.estimator.converged_


def _resolve_device(device, warn: bool = False):
    """Return the JAX device a ``device`` argument names (None: JAX's default placement)."""
    if device is None:
        return None
    name = str(device).lower()
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "gpu") or (index and not index.isdigit()):
        raise ValueError(f"device must be None, 'cpu', 'cuda[:N]' or 'gpu[:N]', got {device!r}")
    platform = "cpu" if kind == "cpu" else "gpu"
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if not devices:
        if warn:
            warnings.warn(
                f"device={device!r}: no GPU is available; running on the CPU", stacklevel=3
            )
        return jax.devices("cpu")[0]
    number = int(index or 0)
    if number >= len(devices):
        raise ValueError(f"device={device!r}: only {len(devices)} {platform} device(s) exist")
    return devices[number]


def _inverse(info: np.ndarray, factor: np.ndarray | None = None) -> np.ndarray:
    """Invert a symmetric positive definite matrix (Cholesky; pseudo-inverse with a warning).

    ``factor``, its lower Cholesky factor if known (the Newton program's), saves the host's
    LAPACK factorization, whose OpenBLAS threads spin on a busy machine (0.1-0.4 s for a
    300 x 300 matrix at load 6, against 1-2 ms single-threaded); a triangular solve and a
    product remain.
    """
    try:
        if factor is None or not np.all(np.isfinite(factor)):
            factor = scipy.linalg.cholesky(info, lower=True)
        inverse_factor = scipy.linalg.solve_triangular(
            factor, np.eye(info.shape[0]), lower=True, check_finite=False
        )
        return inverse_factor.T @ inverse_factor
    except np.linalg.LinAlgError:
        warnings.warn(
            "the Fisher information is not positive definite; using its pseudo-inverse, so "
            "standard errors should not be trusted",
            stacklevel=3,
        )
        return np.linalg.pinv(info, hermitian=True)


def _psd_root(sigma: np.ndarray) -> np.ndarray:
    """Return ``R`` with ``R R^T = sigma`` (eigen-decomposition, negative eigenvalues clipped)."""
    values, vectors = np.linalg.eigh(0.5 * (sigma + sigma.T))
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _scalar_test(contrast, constants, coef, sigma) -> pd.DataFrame:
    """Wald test of a contrast over a scalar term's coefficients."""
    estimate = contrast @ coef[:, 0] - constants
    var = contrast @ sigma @ contrast.T
    if contrast.shape[0] == 1:
        se = float(np.sqrt(max(var[0, 0], 0.0)))
        z = float(estimate[0] / se) if se > 0 else 0.0
        logp = float(np.log(2.0) + scipy.stats.norm.logsf(abs(z)))
        return pd.DataFrame(
            {"z": [z], "p": [np.exp(logp)], "logp": [logp], "est": [estimate[0]], "se": [se]}
        )
    chi2 = float(estimate @ np.linalg.solve(var, estimate))
    logp = float(scipy.stats.chi2.logsf(chi2, contrast.shape[0]))
    z = float(-scipy.stats.norm.ppf(np.exp(logp) / 2))
    return pd.DataFrame({"z": [z], "p": [np.exp(logp)], "logp": [logp], "chiSquare": [chi2]})
