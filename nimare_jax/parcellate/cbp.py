"""Coordinate-based coactivation-based parcellation (CBP).

Bzdok et al. (2013) HBM 34:3247; Clos et al. (2013) NeuroImage 83:174; Chase et al. (2020)
HBM 41:3266. Every voxel of a target region gets a meta-analytic coactivation map (MACM):
the meta-analysis (ALE or MKDA density) of the experiments reporting a focus within ``r`` mm
of it (or of its ``n`` nearest experiments). Voxels are then clustered by the similarity
(Pearson correlation over the brain) of their MACM maps.

All the MACMs are computed together (:mod:`nimare_jax.ops.parcellate`): each experiment's
additive term (MA value, or ``-log(1 - MA)`` for ALE) is made once; a chunk of brain voxels
of every MACM is then a gather-and-add over the selected experiments followed by a lookup
in the selection's own null distribution (exactly the estimator's, so each map equals
``meta_estimator.fit(dataset.slice(selected)).get_map(target_image)``), and the chunk
updates the cross-products of the correlation matrix before the next one. Identical
selections (neighbouring voxels often select the same experiments) are computed once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nimare_jax import stats
from nimare_jax.docstrings import fill_doc
from nimare_jax.exceptions import DatasetError
from nimare_jax.meta.cbma.ale import ALE
from nimare_jax.meta.cbma.kernel import ALEKernel, MKDAKernel
from nimare_jax.meta.cbma.mkda import MKDADensity, bernoulli_sum_null
from nimare_jax.ops import nulls
from nimare_jax.ops import parcellate as ops
from nimare_jax.parcellate.base import Parcellator, RegionOfInterest

__all__ = ["CoordCBP", "batched_macm_maps", "check_selection", "select_experiments"]

#: Brain voxels per chunk of the batched MACMs.
VOXEL_CHUNK = 4096
#: Experiments whose MA maps are made per call.
EXPERIMENT_CHUNK = 64
#: Subsets are grouped by their number of experiments rounded up to a multiple of this.
WIDTH_STEP = 8
#: Each group of subsets is padded to a multiple of this many rows (fewer distinct shapes).
ROW_STEP = 64
#: Rows of a similarity matrix per block of its triangular update (``ops.gram_update``).
GRAM_BLOCK = 256
#: ROI voxels per call of the distance computation.
ROI_CHUNK = 256
#: Target maps the batched MACMs can make.
TARGETS = ("stat", "p", "z", "logp")


@fill_doc
def check_selection(r=None, n=None) -> tuple[float | None, int | None]:
    """Check the experiment selection of a seed voxel: exactly one of ``r`` and ``n``.

    Parameters
    ----------
    %(parcellation_selection)s

    Returns
    -------
    r : float or None
        The radius.
    n : int or None
        The number of experiments, as an int.

    Raises
    ------
    ValueError
        If both or neither are given, ``r`` is not a finite positive distance or ``n`` not
        a positive integer.
    """
    if (r is None) == (n is None):
        raise ValueError("give exactly one of r (mm) and n (number of experiments)")
    if r is not None and not (np.isfinite(r) and r > 0):
        raise ValueError(f"r must be a positive distance in mm, got {r!r}")
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return r, None if n is None else int(n)


@fill_doc
def select_experiments(dataset, xyz, r=None, n=None) -> np.ndarray:
    """Experiments selected for each seed voxel: a focus within ``r`` mm, or the ``n`` nearest.

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        Experiments with coordinates.
    xyz : array-like, shape (n_seeds, 3)
        Seed coordinates in mm.
    %(parcellation_selection)s

    Returns
    -------
    numpy.ndarray of bool, shape (n_seeds, n_experiments)
        Selection, experiments in ``dataset.ids`` order.
    """
    r, n = check_selection(r, n)
    ids = list(dataset.ids)
    order = {k: i for i, k in enumerate(ids)}
    coords = dataset.coordinates
    foci = coords[["x", "y", "z"]].to_numpy(np.float64)
    exp = coords["id"].map(order).to_numpy(np.int32)
    xyz = np.atleast_2d(np.asarray(xyz, np.float64))
    n_seeds = xyz.shape[0]
    d2 = np.empty((n_seeds, len(ids)))
    with jax.enable_x64(True):
        for lo in range(0, n_seeds, ROI_CHUNK):
            block = np.zeros((ROI_CHUNK, 3))
            part = xyz[lo : lo + ROI_CHUNK]
            block[: part.shape[0]] = part
            out = ops.selection_distances(block, foci, exp, np.zeros(len(ids)))
            d2[lo : lo + part.shape[0]] = np.asarray(out)[: part.shape[0]]
    if r is not None:
        return d2 <= float(r) ** 2
    if n > len(ids):
        raise ValueError(f"n={n} nearest experiments asked for, the dataset has {len(ids)}")
    rank = np.argsort(np.argsort(d2, axis=1, kind="stable"), axis=1, kind="stable")
    return rank < n


def _check_estimator(meta_estimator, target_image: str):
    if meta_estimator is None:
        meta_estimator = ALE()
    if isinstance(meta_estimator, type):
        meta_estimator = meta_estimator()
    if type(meta_estimator) not in (ALE, MKDADensity):
        raise TypeError(
            f"meta_estimator must be ALE or MKDADensity (or None for ALE), got {meta_estimator!r}"
        )
    kt = meta_estimator.kernel_transformer
    if type(kt) not in (ALEKernel, MKDAKernel):
        raise TypeError(f"CoordCBP needs an ALEKernel or MKDAKernel, got {kt!r}")
    if target_image not in TARGETS:
        raise ValueError(f"target_image must be one of {TARGETS}, got {target_image!r}")
    if target_image != "stat" and meta_estimator.null_method != "approximate":
        raise ValueError(
            f"target_image={target_image!r} needs the estimator's approximate null "
            f"(null_method='approximate'), got {meta_estimator.null_method!r}"
        )
    if isinstance(meta_estimator, MKDADensity) and meta_estimator.weighting not in (
        None,
        "uniform",
    ):
        raise ValueError("CoordCBP supports unweighted MKDADensity only (weighting=None)")
    return meta_estimator


def _survival(null: np.ndarray) -> np.ndarray:
    """Return the p-value of each bin of a null: normalised upper tail, floored, p(0) = 1."""
    tail = np.cumsum((null / null.sum())[::-1])[::-1]
    tail = tail / tail.max()
    tail[0] = 1.0  # a statistic of 0 has p = 1
    return np.clip(tail, tail[tail > 0].min(), 1.0)


class _Terms:
    """Every experiment's additive term over the mask, its MA histogram and maximum."""

    def __init__(self, estimator, dataset):
        kt = estimator.kernel_transformer
        arrays = kt.prepare(dataset)
        self.is_ale = isinstance(estimator, ALE)
        self.value = 1.0 if self.is_ale else float(kt.value)
        self.n_vox = arrays.mask_index.shape[0]
        n_exp = len(arrays.ids)
        if self.is_ale:
            inv_step = 1.0 / nulls.STEP
            n_bins = int(nulls.nearest_bin(arrays.windows.max(), inv_step, 10**9)) + 2
        else:
            inv_step, n_bins = 1.0 / self.value, 2
        self.terms = np.zeros((n_exp + 1, self.n_vox), np.float32)  # last row: padding
        self.hist = np.zeros((n_exp, n_bins))
        self.ma_max = np.zeros(n_exp)
        union = "probabilistic" if self.is_ale else "sum"
        for lo, m, ma in arrays.ma_chunks(EXPERIMENT_CHUNK):
            terms, hist, ma_max = ops.experiment_terms(ma, union, n_bins, inv_step)
            self.terms[lo : lo + m] = np.asarray(terms)[:m]
            self.hist[lo : lo + m] = np.asarray(hist)[:m]
            self.ma_max[lo : lo + m] = np.asarray(ma_max)[:m]
        self.n_histogram_bins = getattr(estimator, "n_histogram_bins", None)

    def survivals(self, subsets: np.ndarray):
        """Yield ``(row, p table)`` of every selection (see ``macm_chunk``), in fold order.

        The estimator's null (:func:`nimare_jax.ops.nulls.fold_union_histograms` for ALE,
        :func:`nimare_jax.meta.cbma.mkda.bernoulli_sum_null` for MKDA) read as
        :func:`nimare_jax.stats.nullhist_to_p` reads it: normalised upper tail, floored at
        its smallest non-zero value. No experiment: one bin, p = 1.
        """
        if not self.is_ale:
            for row, selected in enumerate(subsets):
                if not selected.any():
                    yield row, np.ones(1)
                    continue
                weights = np.full(int(selected.sum()), self.value)
                _, null = bernoulli_sum_null(
                    weights, self.hist[selected, 1] / self.n_vox, self.n_histogram_bins
                )
                # unweighted: the null's bins are the sums 0, value, 2 value, ... themselves
                yield row, _survival(null)
            return
        for row, null in self._ale_nulls([np.flatnonzero(s) for s in subsets]):
            yield row, np.ones(1) if null is None else _survival(null)

    def _ale_nulls(self, chosen: list[np.ndarray]):
        """Yield ``(row, ALE null)`` of each selection (None if empty), sharing prefixes.

        The null folds a selection's experiments in ascending order, and the fold is not
        associative at the bin level, so only a common *prefix* of two selections can be
        folded once for both. The selections are visited in lexicographic order (a trie
        walk, depth first); the running null is kept at the trie's branch points (the
        common prefix of each pair of neighbours in that order) and each selection
        continues from the deepest kept prefix (``initial=``), with the same arithmetic as
        a fold of the whole selection (the grid grows with the prefix).
        """
        order = sorted(range(len(chosen)), key=lambda row: chosen[row].tolist())
        shared = np.zeros(len(order), int)
        for k in range(1, len(order)):
            a, b = chosen[order[k - 1]], chosen[order[k]]
            m = min(a.size, b.size)
            differ = np.flatnonzero(a[:m] != b[:m])
            shared[k] = differ[0] if differ.size else m
        branch = {chosen[order[k]][: shared[k]].tobytes() for k in range(1, len(order))}
        stack = [(0, None)]  # kept prefixes of the current selection: (length, null)
        for k, row in enumerate(order):
            exps = chosen[row]
            if exps.size == 0:
                yield row, None
                continue
            while stack[-1][0] > shared[k]:
                stack.pop()
            depth, null = stack[-1]
            stops = [d for d in range(depth + 1, exps.size) if exps[:d].tobytes() in branch]
            for d in [*stops, exps.size]:
                grid = nulls.ale_histogram_bins(self.ma_max[exps[:d]])
                probs = self.hist[exps[depth:d], : min(self.hist.shape[1], grid.size)]
                null = nulls.fold_union_histograms(probs / self.n_vox, grid, initial=null)
                depth = d
                stack.append((d, null))
            yield row, null

    @property
    def inv_step(self) -> float:
        if self.is_ale:
            grid = nulls.ale_histogram_bins(self.ma_max[:1])
            return 1.0 / (grid[1] - grid[0])
        return 1.0 / self.value


def _tables(terms: _Terms, subsets: np.ndarray, target: str):
    """Every subset's target-map table, concatenated (float32 beyond 2**24 entries)."""
    parts, total = [None] * len(subsets), 0
    length = np.zeros(len(subsets), np.int32)
    for row, tail in terms.survivals(subsets):  # the p tables, one subset at a time
        parts[row] = tail.astype(np.float32 if total > 2**24 else np.float64)
        length[row] = tail.size
        total += tail.size
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    table = np.empty(total, np.float64 if total <= 2**24 else np.float32)
    for row in range(len(parts)):  # moved into place and freed as we go
        table[offset[row] : offset[row] + length[row]] = parts[row]
        parts[row] = None
    step = 2**20  # transformed in fixed blocks: one compiled program, no full-size copy
    for lo in range(0, total, step):
        p = np.ones(step)
        p[: min(step, total - lo)] = table[lo : lo + step]
        if target == "z":
            p = np.asarray(stats.p_to_z(p, tail="one"))
        elif target == "logp":
            p = -np.log10(p)
        table[lo : lo + step] = p[: min(step, total - lo)]
    return table, offset, length


def _macm_chunks(terms: _Terms, subsets: np.ndarray, target: str, voxel_chunk: int):
    """Every subset's map, one chunk of brain voxels at a time (on device).

    The subsets are grouped by their number of experiments (rounded up to
    :data:`WIDTH_STEP`), so that each group's gather-and-add runs only as many steps as its
    largest subset has experiments, not the largest of all.

    Returns
    -------
    position : numpy.ndarray of int, shape (n_subsets,)
        Row of each subset in the chunks' maps.
    chunks : generator of ``(lo, hi, maps)``
        The maps of brain voxels ``lo:hi`` (columns beyond ``hi - lo`` are padding).
    """
    n_exp = terms.terms.shape[0] - 1
    if target == "stat":
        table, offset = np.zeros(1), np.zeros(len(subsets), np.int32)
        length = np.ones(len(subsets), np.int32)
    else:
        table, offset, length = _tables(terms, subsets, target)
    counts = subsets.sum(1)
    width = WIDTH_STEP * np.maximum(1, -(-counts // WIDTH_STEP))
    position = np.empty(len(subsets), np.int64)
    groups, start = [], 0
    for w in np.unique(width):
        rows = np.flatnonzero(width == w)
        n_rows = ROW_STEP * -(-rows.size // ROW_STEP)
        index = np.full((n_rows, w), n_exp, np.int32)
        for i, row in enumerate(rows):
            chosen = np.flatnonzero(subsets[row])
            index[i, : chosen.size] = chosen
        off, size = np.zeros(n_rows, np.int32), np.ones(n_rows, np.int32)  # padding: bin 0
        off[: rows.size], size[: rows.size] = offset[rows], length[rows]
        groups.append(tuple(jnp.asarray(a) for a in (index, off, size)))
        position[rows] = start + np.arange(rows.size)
        start += n_rows
    kind = ("ale_" if terms.is_ale else "sum_") + ("stat" if target == "stat" else "table")
    table = jnp.asarray(table)

    def chunks():
        for lo in range(0, terms.n_vox, voxel_chunk):
            hi = min(lo + voxel_chunk, terms.n_vox)
            # a new buffer per chunk: the device array may alias it while still in use
            block = np.zeros((n_exp + 1, voxel_chunk), np.float32)
            block[:, : hi - lo] = terms.terms[:, lo:hi]
            on_device = jnp.asarray(block)
            maps = [
                ops.macm_chunk(on_device, index, table, off, size, terms.inv_step, kind)
                for index, off, size in groups
            ]
            yield lo, hi, maps[0] if len(maps) == 1 else jnp.concatenate(maps)

    return position, chunks()


def batched_macm_maps(meta_estimator, dataset, selection, target_image: str = "z"):
    """Meta-analytic map of each selection of experiments, all computed together.

    Parameters
    ----------
    meta_estimator : ALE or MKDADensity
        Estimator (approximate null unless ``target_image="stat"``).
    dataset : nimare_jax.dataset.Dataset
        The experiments.
    selection : array-like of bool, shape (n_maps, n_experiments)
        Experiments of each map, in ``dataset.ids`` order.
    target_image : {"stat", "p", "z", "logp"}
        Map returned.

    Returns
    -------
    numpy.ndarray of float64, shape (n_maps, n_voxels)
        Each map, equal to ``meta_estimator.fit(dataset.slice(selected)).get_map(
        target_image, return_type="array")``. A selection without experiments gives 0
        (``p``: 1).
    """
    estimator = _check_estimator(meta_estimator, target_image)
    selection = np.asarray(selection, bool)
    with jax.enable_x64(True):
        terms = _Terms(estimator, dataset)
        out = np.empty((selection.shape[0], terms.n_vox))
        position, chunks = _macm_chunks(terms, selection, target_image, VOXEL_CHUNK)
        for lo, hi, maps in chunks:
            out[:, lo:hi] = np.asarray(maps)[position, : hi - lo]
    return out


@fill_doc
class CoordCBP(Parcellator):
    """Coactivation-based parcellation of a region from coordinates.

    Parameters
    ----------
    %(parcellation_region)s
    %(parcellation_selection)s
    meta_estimator : ALE, MKDADensity or None
        Estimator of the MACMs, each the meta-analysis of a voxel's experiments (None:
        ``ALE()``). Unweighted, approximate null.
    target_image : {"z", "stat", "p", "logp"}
        Map of each MACM that is correlated. ``"z"`` uses each MACM's own null (for ALE
        the null depends on the experiments selected, so every distinct selection's null
        is computed; ``"stat"`` skips that).
    n_splits, method, n_init, random_state
        See :class:`~nimare_jax.parcellate.base.Parcellator`.
    voxel_chunk : int
        Brain voxels per batched step (bounds memory: about ``16 * n_selections *
        voxel_chunk`` bytes).

    Notes
    -----
    A voxel that selects no experiment (``r`` too small) is an error; in a split half it is
    allowed and its MACM, constant, gets correlation 0 with every other voxel.
    """

    _citations = ("Bzdok2013", "Clos2013", "Chase2020", "Robinson2010")

    def __init__(
        self,
        target_mask,
        n_clusters,
        r=None,
        n=None,
        meta_estimator=None,
        target_image: str = "z",
        n_splits: int = 2,
        method: str = "kmeans",
        n_init: int = 50,
        random_state: int = 0,
        voxel_chunk: int = VOXEL_CHUNK,
    ):
        super().__init__(target_mask, n_clusters, n_splits, method, n_init, random_state)
        self.r, self.n = check_selection(r, n)
        self.meta_estimator = _check_estimator(meta_estimator, target_image)
        self.target_image = target_image
        self.voxel_chunk = int(voxel_chunk)

    def _profiles(self, dataset, roi: RegionOfInterest, groups) -> list[np.ndarray]:
        selection = select_experiments(dataset, roi.xyz, self.r, self.n)
        self.selection_ = selection
        empty = ~selection.any(1)
        if empty.any():
            where = ", ".join(f"({x:g}, {y:g}, {z:g})" for x, y, z in roi.xyz[empty][:3])
            raise DatasetError(
                f"{int(empty.sum())} of the {len(roi)} target voxels select no experiment "
                f"within r={self.r} mm (e.g. at {where} mm); increase r or give n instead"
            )
        # every group's selections, identical ones computed once
        keys, rows = {}, []
        for g in groups:
            sel = selection & g[None, :]
            packed = np.packbits(sel, axis=1)
            rows.append(np.array([keys.setdefault(p.tobytes(), len(keys)) for p in packed]))
        subsets = np.zeros((len(keys), selection.shape[1]), bool)
        for g, row in zip(groups, rows, strict=True):
            subsets[row] = selection & g[None, :]
        self.n_macms_ = len(keys)
        with jax.enable_x64(True):
            terms = _Terms(self.meta_estimator, dataset)
            uniq = [np.unique(r, return_inverse=True) for r in rows]
            position, chunks = _macm_chunks(terms, subsets, self.target_image, self.voxel_chunk)
            blocks, grams, totals, pick = [], [], [], []
            for u, _ in uniq:
                n_blocks = max(1, min(4, u.size // GRAM_BLOCK))
                padded = n_blocks * -(-u.size // n_blocks)  # padding rows repeat row 0
                rows_of = np.concatenate([position[u], np.full(padded - u.size, position[u[0]])])
                blocks.append(n_blocks)
                pick.append(jnp.asarray(rows_of))
                grams.append(jnp.zeros((padded, padded)))
                totals.append(jnp.zeros(padded))
            for lo, hi, maps in chunks:
                valid = jnp.asarray(np.arange(self.voxel_chunk) < hi - lo, maps.dtype)
                for i in range(len(groups)):
                    grams[i], totals[i] = ops.gram_update(
                        grams[i], totals[i], maps, pick[i], valid, blocks[i]
                    )
            profiles = []
            for (u, inverse), gram, total, n_blocks in zip(
                uniq, grams, totals, blocks, strict=True
            ):
                gram = ops.symmetric_from_blocks(gram, n_blocks)[: u.size, : u.size]
                corr = ops.correlation_from_gram(gram, np.asarray(total)[: u.size], terms.n_vox)
                profiles.append(corr[np.ix_(inverse, inverse)])
        profiles = [np.nan_to_num(c, nan=0.0) for c in profiles]
        for c in profiles:
            np.fill_diagonal(c, 1.0)
        return profiles

    def _description(self, roi: RegionOfInterest) -> str:
        how = (
            f"all experiments reporting a focus within {self.r:g} mm of it"
            if self.r is not None
            else f"its {self.n} nearest experiments (distance to their nearest focus)"
        )
        est = "activation likelihood estimation (ALE) [Turkeltaub2012; Eickhoff2012]"
        if isinstance(self.meta_estimator, MKDADensity):
            est = "multilevel kernel density analysis (MKDA) [Wager2007]"
        return (
            "A coactivation-based parcellation (CBP) [Bzdok2013; Clos2013; Chase2020] was "
            f"performed with nimare_jax on {len(self.dataset_.ids)} experiments. For each of "
            f"the {len(roi)} voxels of the target region, a meta-analytic coactivation map "
            f"(MACM) [Robinson2010] was computed by {est} of {how} "
            f"({self.n_macms_} distinct experiment selections over the full data and the "
            f"split halves). The MACMs' {self.target_image} maps were correlated (Pearson) "
            "over the brain mask, giving a voxel x voxel similarity matrix. "
            + super()._description(roi)
        )
