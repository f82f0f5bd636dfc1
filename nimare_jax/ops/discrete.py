"""Statistics of discrete (study-selection) decoding: BrainMap and Neurosynth.

A decoder compares how often each label (feature) is carried by a *selected* set of studies
(e.g. those reporting a focus in an ROI) and by an *unselected* set. NiMARE 0.22.1 gathers
the counts label by label; here one product of the binary label matrix (labels x studies)
with a few study vectors (selection, non-selection, foci per study) yields every count at
once (:func:`label_counts`), and the statistics of all labels are elementwise
(:func:`brainmap_statistics`, :func:`neurosynth_statistics`).

These run on the host in NumPy and SciPy, not as compiled JAX programs: the work is a
few thousand labels (one matrix-vector product and some special functions, well under a
millisecond on laird's 728 labels), while tracing, lowering and compiling the equivalent XLA
program (the incomplete beta function's continued fraction, log-space normal quantiles,
the FDR step-up) cost 1-1.5 s in every new process, even with the persistent compilation
cache, which stores only the compiled program. On the host the first selection costs what
every later one does.

Everything is float64 and p-values are carried as natural logarithms (``nlogp = log(p) <=
0``), so no tail underflows before the multiple-comparisons correction; the caller
exponentiates at the end.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

#: Corrections accepted by the decoders (NiMARE's ``correction`` argument).
CORRECTIONS = (None, "bh", "by", "bonferroni")

#: BrainMap ignores labels carried by fewer selected studies than this (p set to 1).
BRAINMAP_MIN_SELECTED = 5


#: Largest count a float32 product of 0/1 labels with whole-number weights holds exactly.
FLOAT32_EXACT = 2**24


def label_counts(labels, selected, unselected, foci):
    """Count, for every label, its selected and unselected studies and its foci.

    Parameters
    ----------
    labels : array-like, shape (n_labels, n_studies)
        1 where a study carries a label (value at or above the frequency threshold), else 0.
        The product runs in this array's dtype: float32 is exact while every count (here,
        the total number of foci) stays below :data:`FLOAT32_EXACT`, and halves the memory
        of float64.
    selected, unselected : array-like, shape (n_studies,)
        Indicators of the selected and the unselected studies.
    foci : array-like, shape (n_studies,)
        Number of foci reported by each study.

    Returns
    -------
    n_selected_term, n_unselected_term, n_term_foci : numpy.ndarray of float64, (n_labels,)
        Selected and unselected studies carrying each label, and the foci of all studies
        carrying it.
    n_labelled : float
        Number of (study, label) pairs with the label, over all studies.

    Notes
    -----
    One (n_labels x n_studies) @ (n_studies x 4) product.
    """
    labels = np.asarray(labels)
    dtype = labels.dtype if np.issubdtype(labels.dtype, np.floating) else np.float64
    studies = np.stack(
        [
            np.asarray(selected, dtype),
            np.asarray(unselected, dtype),
            np.asarray(foci, dtype),
            np.ones(labels.shape[1], dtype),
        ],
        axis=1,
    )
    counts = (labels.astype(dtype, copy=False) @ studies).astype(np.float64)
    return counts[:, 0], counts[:, 1], counts[:, 2], float(counts[:, 3].sum())


def chi2_to_logp(chi2) -> np.ndarray:
    """Upper-tail ``log(p)`` of chi-square statistics on one degree of freedom.

    Parameters
    ----------
    chi2 : array-like of float, any shape
        Non-negative statistics.

    Returns
    -------
    numpy.ndarray, same shape
        ``log P(X >= chi2)``: a chi-square on one degree of freedom is a squared standard
        normal, so this is the two-sided normal tail at ``sqrt(chi2)``, finite far beyond
        where ``p`` itself underflows.
    """
    tail = math.log(2.0) + special.log_ndtr(-np.sqrt(np.asarray(chi2, np.float64)))
    return np.minimum(tail, 0.0)


def binomial_logsf(k, n, p) -> np.ndarray:
    """``log P(X >= k)`` for ``X ~ Binomial(n, p)``, elementwise.

    Parameters
    ----------
    k, n : array-like of float
        Observed count and number of trials (whole numbers, ``n >= 0``).
    p : array-like of float
        Success probability in [0, 1].

    Returns
    -------
    numpy.ndarray
        0 for ``k <= 0``; ``-inf`` for ``k > n``; otherwise the log of the regularized
        incomplete beta function ``I_p(k, n - k + 1)``, which equals the binomial upper tail.
    """
    k, n, p = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (k, n, p)))
    valid = (k > 0) & (k <= n)
    tail = special.betainc(np.where(valid, k, 1.0), np.where(valid, n - k + 1.0, 1.0), p)
    with np.errstate(divide="ignore"):
        logtail = np.log(tail)
    return np.where(k <= 0, 0.0, np.where(k > n, -np.inf, logtail))


def logp_to_z(logp, tail: str) -> np.ndarray:
    """Unsigned z of natural-log p-values (``"one"``- or ``"two"``-sided), at any depth.

    Parameters
    ----------
    logp : array-like of float
        ``log(p)``.
    tail : {"one", "two"}
        Whether ``p`` is one- or two-sided.

    Returns
    -------
    numpy.ndarray
        ``z >= 0`` (0 for a one-sided ``p >= 0.5``): SciPy's ``ndtri_exp`` inverts
        ``log_ndtr`` directly in log space, so no tail underflows.
    """
    logp = np.asarray(logp, np.float64)
    if tail == "two":
        logp = logp - math.log(2.0)
    return np.maximum(-special.ndtri_exp(np.minimum(logp, 0.0)), 0.0) + 0.0  # no -0.0


def fdr_logp(logp, method: str) -> np.ndarray:
    """Benjamini-Hochberg or Benjamini-Yekutieli adjustment of one family of ``log(p)``.

    Parameters
    ----------
    logp : array-like of float, shape (n_tests,)
        Natural logs of the p-values (no NaN).
    method : {"bh", "by"}
        Benjamini & Hochberg (1995) or Benjamini & Yekutieli (2001).

    Returns
    -------
    numpy.ndarray, shape (n_tests,)
        Natural logs of the adjusted p-values (at most 0), the step-up minimum taken in
        log space, so it is exact however small ``p`` is. The same procedure as
        :func:`nimare_jax.ops.stats.fdr_logp`, on the host.
    """
    logp = np.asarray(logp, np.float64)
    n = logp.size
    order = np.argsort(logp, kind="stable")
    log_factor = np.log(np.arange(1, n + 1, dtype=np.float64)) - math.log(max(n, 1))
    if method == "by":
        log_factor = log_factor - math.log(float(np.sum(1.0 / np.arange(1, n + 1))))
    adjusted = np.minimum.accumulate((logp[order] - log_factor)[::-1])[::-1]
    out = np.empty_like(logp)
    out[order] = np.minimum(adjusted, 0.0)
    return out


def correct_logp(logp, correction):
    """Adjust families of ``log(p)`` for multiple comparisons, each separately.

    Parameters
    ----------
    logp : numpy.ndarray, shape (n_families, n_tests)
        Natural logs of the p-values; each row is one family.
    correction : {None, "bh", "by", "bonferroni"}
        None leaves them; "bh"/"by" are Benjamini-Hochberg and Benjamini-Yekutieli FDR
        adjusted p-values; "bonferroni" multiplies by the number of tests (capped at 1).

    Returns
    -------
    numpy.ndarray, shape of ``logp``
        Adjusted ``log(p)``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(
            f"correction must be one of None, 'bh', 'by' or 'bonferroni', got {correction!r}"
        )
    logp = np.asarray(logp, np.float64)
    if correction is None:
        return logp
    if correction == "bonferroni":
        return np.minimum(logp + math.log(logp.shape[-1]), 0.0)
    return np.stack([fdr_logp(row, correction) for row in logp])


def _one_way(data, n) -> np.ndarray:
    """One-way chi-square of counts against their mean (:func:`ops.stats.one_way`'s rule)."""
    expected = data.mean()
    denominator = expected * (n - expected)
    if denominator == 0:
        return np.zeros_like(data)
    return (data - expected) ** 2 * n / denominator


def _two_way(a, b, n_a, n_b) -> np.ndarray:
    """2x2 Pearson chi-square per label (:func:`ops.stats.two_way_counts`'s rule)."""
    total = n_a + n_b
    active = a + b
    denominator = active * (total - active) * n_a * n_b
    empty = denominator == 0
    chi2 = total * (a * n_b - b * n_a) ** 2 / np.where(empty, 1.0, denominator)
    return np.where(empty, 2.0, chi2)


def brainmap_statistics(
    n_selected_term,
    n_unselected_term,
    n_term_foci,
    n_foci_labelled,
    n_labelled,
    n_selected,
    n_unselected,
    n_foci,
    correction="bh",
):
    """BrainMap forward and reverse inference for every label (Amft et al. 2015).

    Parameters
    ----------
    n_selected_term, n_unselected_term : array-like, shape (n_labels,)
        Selected and unselected studies carrying each label.
    n_term_foci : array-like, shape (n_labels,)
        Foci of all studies carrying each label.
    n_foci_labelled : float
        Foci of all studies of the label table (so the foci of studies *without* a label are
        ``n_foci_labelled - n_term_foci``).
    n_labelled : float
        Number of (study, label) pairs with the label, over all studies and labels.
    n_selected, n_unselected : float
        Sizes of the two groups of studies.
    n_foci : float
        Foci in the whole database.
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparisons correction across labels, separately for each inference.

    Returns
    -------
    logp_forward : numpy.ndarray, shape (n_labels,)
        Corrected ``log(p)`` of the one-sided binomial test that the label's foci fall in
        the selection more often than the selection's share of all foci.
    z_forward : numpy.ndarray, shape (n_labels,)
        One-tailed, non-negative z of ``logp_forward``.
    likelihood_forward : numpy.ndarray, shape (n_labels,)
        ``P(selected | label) / P(selected)``.
    logp_reverse : numpy.ndarray, shape (n_labels,)
        Corrected ``log(p)`` of the 2x2 chi-square test of label against selection.
    z_reverse : numpy.ndarray, shape (n_labels,)
        Two-tailed z of ``logp_reverse``, signed by ``P(selected | label) - P(selected | no
        label)``.
    prob_reverse : numpy.ndarray, shape (n_labels,)
        ``P(label | selected)``, normalized to sum to one over the labels.

    Notes
    -----
    As NiMARE 0.22.1 implements the method, the "probabilities" mix units: ``P(selected)`` is
    selected studies over foci in the database and ``P(selected | label)`` selected labelled
    studies over the labelled studies' foci. Labels carried by fewer than
    :data:`BRAINMAP_MIN_SELECTED` selected studies get ``p = 1`` in both tests (they still
    count as tests in the correction).
    """
    nst = np.asarray(n_selected_term, np.float64)
    nut = np.asarray(n_unselected_term, np.float64)
    n_term_foci = np.asarray(n_term_foci, np.float64)
    p_term = (nst + nut) / n_labelled
    p_selected = n_selected / n_foci
    p_sel_g_term = nst / n_term_foci
    p_sel_g_noterm = (n_selected - nst) / (n_foci_labelled - n_term_foci)
    likelihood = p_sel_g_term / p_selected
    prob_reverse = p_sel_g_term * p_term / p_selected
    prob_reverse = prob_reverse / np.nansum(prob_reverse)

    rare = nst < BRAINMAP_MIN_SELECTED
    logp_fi = binomial_logsf(nst, n_term_foci, p_selected)
    logp_ri = chi2_to_logp(_two_way(nst, nut, n_selected, n_unselected))
    logp = correct_logp(np.where(rare, 0.0, np.stack([logp_fi, logp_ri])), correction)
    z_fi = logp_to_z(logp[0], tail="one")
    z_ri = logp_to_z(logp[1], tail="two") * np.sign(p_sel_g_term - p_sel_g_noterm)
    return logp[0], z_fi, likelihood, logp[1], z_ri, prob_reverse


def neurosynth_statistics(
    n_selected_term,
    n_unselected_term,
    n_selected,
    n_unselected,
    prior=0.5,
    correction="bh",
    empirical_prior=False,
):
    """Neurosynth uniformity and association tests for every label (Yarkoni et al. 2011).

    Parameters
    ----------
    n_selected_term, n_unselected_term : array-like, shape (n_labels,)
        Selected and unselected studies carrying each label (only the labels under test: the
        uniformity test compares each with their mean).
    n_selected, n_unselected : float
        Sizes of the two groups of studies.
    prior : float
        Prior probability of a label; ignored if ``empirical_prior``.
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparisons correction across labels, separately for each test.
    empirical_prior : bool
        Use each label's frequency among the studies of both groups as its prior.

    Returns
    -------
    logp_forward, z_forward : numpy.ndarray, shape (n_labels,)
        Corrected ``log(p)`` of the one-way chi-square test of the label's selected count
        against the mean over labels, and its two-tailed z signed by the difference.
    prob_forward : numpy.ndarray, shape (n_labels,)
        ``P(selected | label)`` under the prior: ``prior * P(sel | label) + (1 - prior) *
        P(sel | no label)``.
    logp_reverse, z_reverse : numpy.ndarray, shape (n_labels,)
        Corrected ``log(p)`` of the 2x2 chi-square test of label against selection, and its
        two-tailed z signed by ``P(sel | label) - P(sel | no label)``.
    prob_reverse : numpy.ndarray, shape (n_labels,)
        ``P(label | selected)`` under the prior (Bayes' rule with ``prob_forward``).
    """
    nst = np.asarray(n_selected_term, np.float64)
    nut = np.asarray(n_unselected_term, np.float64)
    n_term = nst + nut
    n_noterm = n_selected + n_unselected - n_term
    p_sel_g_term = nst / n_term
    p_sel_g_noterm = (n_selected - nst) / n_noterm
    if empirical_prior:
        prior = n_term / (n_selected + n_unselected)

    chi2 = np.stack([_one_way(nst, n_selected), _two_way(nst, nut, n_selected, n_unselected)])
    logp = correct_logp(chi2_to_logp(chi2), correction)
    z = logp_to_z(logp, tail="two")
    z_fi = z[0] * np.sign(nst - nst.mean())
    z_ri = z[1] * np.sign(p_sel_g_term - p_sel_g_noterm)
    logp_fi, logp_ri = logp[0], logp[1]
    prob_forward = prior * p_sel_g_term + (1.0 - prior) * p_sel_g_noterm
    prob_reverse = p_sel_g_term * prior / prob_forward
    return logp_fi, z_fi, prob_forward, logp_ri, z_ri, prob_reverse
