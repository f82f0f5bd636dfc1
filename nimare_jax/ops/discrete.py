"""Pure JAX statistics of discrete (study-selection) decoding: BrainMap and Neurosynth.

A decoder compares how often each label (feature) is carried by a *selected* set of studies
(e.g. those reporting a focus in an ROI) and by an *unselected* set. NiMARE 0.22.1 gathers
the counts label by label; here one product of the binary label matrix (labels x studies)
with a few study vectors (selection, non-selection, foci per study) yields every count at
once (:func:`label_counts`), and the statistics of all labels are elementwise
(:func:`brainmap_statistics`, :func:`neurosynth_statistics`).

Everything is carried in float64 (call under ``jax.enable_x64``) and p-values as natural
logarithms (``nlogp = log(p) <= 0``), so no tail underflows before the multiple-comparisons
correction; the caller exponentiates at the end.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import betainc

from nimare_jax.ops.stats import fdr_logp, logp_to_z, one_way, two_way_counts, z_to_logp

#: Corrections accepted by the decoders (NiMARE's ``correction`` argument).
CORRECTIONS = (None, "bh", "by", "bonferroni")

#: BrainMap ignores labels carried by fewer selected studies than this (p set to 1).
BRAINMAP_MIN_SELECTED = 5


#: Largest count a float32 product of 0/1 labels with whole-number weights holds exactly.
FLOAT32_EXACT = 2**24


@jax.jit
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
    n_selected_term, n_unselected_term, n_term_foci : jax.Array, shape (n_labels,)
        Selected and unselected studies carrying each label, and the foci of all studies
        carrying it (in the default float dtype).
    n_labelled : jax.Array, scalar
        Number of (study, label) pairs with the label, over all studies.

    Notes
    -----
    One (n_labels x n_studies) @ (n_studies x 4) product.
    """
    labels = jnp.asarray(labels)
    dtype = labels.dtype if jnp.issubdtype(labels.dtype, jnp.floating) else float
    studies = jnp.stack(
        [
            jnp.asarray(selected, dtype),
            jnp.asarray(unselected, dtype),
            jnp.asarray(foci, dtype),
            jnp.ones(labels.shape[1], dtype),
        ],
        axis=1,
    )
    counts = (labels.astype(dtype) @ studies).astype(float)
    return counts[:, 0], counts[:, 1], counts[:, 2], counts[:, 3].sum()


def chi2_to_logp(chi2) -> jax.Array:
    """Upper-tail ``log(p)`` of chi-square statistics on one degree of freedom.

    Parameters
    ----------
    chi2 : array-like of float, any shape
        Non-negative statistics.

    Returns
    -------
    jax.Array, same shape
        ``log P(X >= chi2)``: a chi-square on one degree of freedom is a squared standard
        normal, so this is the two-sided normal tail at ``sqrt(chi2)``, finite far beyond
        where ``p`` itself underflows.
    """
    return z_to_logp(jnp.sqrt(chi2), tail="two")


def binomial_logsf(k, n, p) -> jax.Array:
    """``log P(X >= k)`` for ``X ~ Binomial(n, p)``, elementwise.

    Parameters
    ----------
    k, n : array-like of float
        Observed count and number of trials (whole numbers, ``n >= 0``).
    p : array-like of float
        Success probability in [0, 1].

    Returns
    -------
    jax.Array
        0 for ``k <= 0``; ``-inf`` for ``k > n``; otherwise the log of the regularized
        incomplete beta function ``I_p(k, n - k + 1)``, which equals the binomial upper tail.
    """
    k, n, p = jnp.asarray(k, float), jnp.asarray(n, float), jnp.asarray(p, float)
    valid = (k > 0) & (k <= n)
    tail = betainc(jnp.where(valid, k, 1.0), jnp.where(valid, n - k + 1.0, 1.0), p)
    return jnp.where(k <= 0, 0.0, jnp.where(k > n, -jnp.inf, jnp.log(tail)))


def correct_logp(logp, correction):
    """Adjust families of ``log(p)`` for multiple comparisons, each separately.

    Parameters
    ----------
    logp : jax.Array, shape (..., n_tests)
        Natural logs of the p-values; each row along the last axis is one family.
    correction : {None, "bh", "by", "bonferroni"}
        None leaves them; "bh"/"by" are Benjamini-Hochberg and Benjamini-Yekutieli FDR
        adjusted p-values; "bonferroni" multiplies by the number of tests (capped at 1).

    Returns
    -------
    jax.Array, shape of ``logp``
        Adjusted ``log(p)``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(
            f"correction must be one of None, 'bh', 'by' or 'bonferroni', got {correction!r}"
        )
    if correction is None:
        return logp
    if correction == "bonferroni":
        return jnp.minimum(logp + math.log(logp.shape[-1]), 0.0)
    families = logp.reshape(-1, logp.shape[-1])
    adjusted = jax.vmap(functools.partial(fdr_logp, method=correction))(families)
    return adjusted.reshape(logp.shape)


@functools.partial(jax.jit, static_argnames=("correction",))
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
    logp_forward : jax.Array, shape (n_labels,)
        Corrected ``log(p)`` of the one-sided binomial test that the label's foci fall in
        the selection more often than the selection's share of all foci.
    z_forward : jax.Array, shape (n_labels,)
        One-tailed, non-negative z of ``logp_forward``.
    likelihood_forward : jax.Array, shape (n_labels,)
        ``P(selected | label) / P(selected)``.
    logp_reverse : jax.Array, shape (n_labels,)
        Corrected ``log(p)`` of the 2x2 chi-square test of label against selection.
    z_reverse : jax.Array, shape (n_labels,)
        Two-tailed z of ``logp_reverse``, signed by ``P(selected | label) - P(selected | no
        label)``.
    prob_reverse : jax.Array, shape (n_labels,)
        ``P(label | selected)``, normalized to sum to one over the labels.

    Notes
    -----
    As NiMARE 0.22.1 implements the method, the "probabilities" mix units: ``P(selected)`` is
    selected studies over foci in the database and ``P(selected | label)`` selected labelled
    studies over the labelled studies' foci. Labels carried by fewer than
    :data:`BRAINMAP_MIN_SELECTED` selected studies get ``p = 1`` in both tests (they still
    count as tests in the correction).
    """
    nst = jnp.asarray(n_selected_term, float)
    nut = jnp.asarray(n_unselected_term, float)
    n_term_foci = jnp.asarray(n_term_foci, float)
    p_term = (nst + nut) / n_labelled
    p_selected = n_selected / n_foci
    p_sel_g_term = nst / n_term_foci
    p_sel_g_noterm = (n_selected - nst) / (n_foci_labelled - n_term_foci)
    likelihood = p_sel_g_term / p_selected
    prob_reverse = p_sel_g_term * p_term / p_selected
    prob_reverse = prob_reverse / jnp.nansum(prob_reverse)

    rare = nst < BRAINMAP_MIN_SELECTED
    logp_fi = binomial_logsf(nst, n_term_foci, p_selected)
    logp_ri = chi2_to_logp(two_way_counts(nst, nut, n_selected, n_unselected))
    logp = correct_logp(jnp.where(rare, 0.0, jnp.stack([logp_fi, logp_ri])), correction)
    # one-tailed z of the forward p; two-tailed z of the reverse p = one-tailed z of p / 2
    z = logp_to_z(logp - jnp.array([[0.0], [math.log(2.0)]]), tail="one")
    z_ri = z[1] * jnp.sign(p_sel_g_term - p_sel_g_noterm)
    return logp[0], z[0], likelihood, logp[1], z_ri, prob_reverse


@functools.partial(jax.jit, static_argnames=("correction", "empirical_prior"))
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
    logp_forward, z_forward : jax.Array, shape (n_labels,)
        Corrected ``log(p)`` of the one-way chi-square test of the label's selected count
        against the mean over labels, and its two-tailed z signed by the difference.
    prob_forward : jax.Array, shape (n_labels,)
        ``P(selected | label)`` under the prior: ``prior * P(sel | label) + (1 - prior) *
        P(sel | no label)``.
    logp_reverse, z_reverse : jax.Array, shape (n_labels,)
        Corrected ``log(p)`` of the 2x2 chi-square test of label against selection, and its
        two-tailed z signed by ``P(sel | label) - P(sel | no label)``.
    prob_reverse : jax.Array, shape (n_labels,)
        ``P(label | selected)`` under the prior (Bayes' rule with ``prob_forward``).
    """
    nst = jnp.asarray(n_selected_term, float)
    nut = jnp.asarray(n_unselected_term, float)
    n_term = nst + nut
    n_noterm = n_selected + n_unselected - n_term
    p_sel_g_term = nst / n_term
    p_sel_g_noterm = (n_selected - nst) / n_noterm
    if empirical_prior:
        prior = n_term / (n_selected + n_unselected)

    chi2 = jnp.stack(
        [one_way(nst, n_selected), two_way_counts(nst, nut, n_selected, n_unselected)]
    )
    logp = correct_logp(chi2_to_logp(chi2), correction)
    z = logp_to_z(logp, tail="two")
    z_fi = z[0] * jnp.sign(nst - nst.mean())
    z_ri = z[1] * jnp.sign(p_sel_g_term - p_sel_g_noterm)
    logp_fi, logp_ri = logp[0], logp[1]
    prob_forward = prior * p_sel_g_term + (1.0 - prior) * p_sel_g_noterm
    prob_reverse = p_sel_g_term * prior / prob_forward
    return logp_fi, z_fi, prob_forward, logp_ri, z_ri, prob_reverse
