"""Generalized correspondence LDA (GC-LDA) topic model of words and foci (Rubin et al. 2017).

:class:`GCLDAModel` prepares the tokens of a corpus and keeps the model's state in NiMARE's
dictionaries (``data``, ``topics``, ``params``, ``loglikelihood``); the sampling and every
distribution are computed by :mod:`nimare_jax.ops.gclda`, in float64.

The sampler is the exact sequential collapsed Gibbs sampler of NiMARE 0.22.1, driven by
JAX's counter-based PRNG instead of numba's Mersenne Twister: the same ``seed_init`` gives
the same model on any machine, but not the same model as NiMARE's (parity is statistical).
"""

from __future__ import annotations

import logging
import warnings

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pandas as pd

from nimare_jax.exceptions import DatasetError
from nimare_jax.ops import gclda as ops_gclda
from nimare_jax.spatial import load_mask

LGR = logging.getLogger(__name__)


def _require_columns(df, columns, name):
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DatasetError(f"{name} lacks column(s) {missing}; it has {list(df.columns)[:10]}")


class GCLDAModel:
    """Generalized correspondence latent Dirichlet allocation (GC-LDA) topic model.

    Each topic is a distribution over words and a mixture of ``n_regions`` spatial Gaussians
    over foci; documents mix topics (Rubin et al. 2017). The model is fitted by collapsed
    Gibbs sampling (:meth:`fit`).

    Parameters
    ----------
    count_df : pandas.DataFrame
        Word counts, one row per study (index: study id) and one column per term.
    coordinates_df : pandas.DataFrame
        Foci with columns ``x``, ``y``, ``z`` (mm) and the study id in column ``id`` (or as
        the index).
    mask : str, path or nibabel.Nifti1Image, optional
        Template name or mask image whose voxels the spatial distributions are evaluated on.
        Default ``"mni152_2mm"``.
    n_topics : int, optional
        Number of topics. Default 100.
    n_regions : int, optional
        Subregions (Gaussians) per topic. Default 2.
    symmetric : bool, optional
        Pair subregions ``2k``/``2k+1`` as mirror images across ``x = 0`` (needs an even
        ``n_regions``). Default True (NiMARE's docstring says False; its code uses True).
    alpha : float, optional
        Prior count on topics per document. Default 0.1.
    beta : float, optional
        Prior count on words per topic. Default 0.01.
    gamma : float, optional
        Prior count added to the peak counts when sampling word topics. Default 0.01.
    delta : float, optional
        Prior count on subregions per topic. Default 1.0.
    dobs : int, optional
        Pseudo-observations weighting the default covariance in each estimate. Default 25.
    roi_size : float, optional
        Diagonal (mm^2) of the default covariance the estimates are shrunk towards.
        Default 50.0.
    seed_init : int, optional
        Seed of the model's JAX PRNG key; initialisation and every iteration derive their
        draws from it, so the same seed and data give the same model. Default 1.

    Attributes
    ----------
    p_topic_g_voxel_, p_voxel_g_topic_ : numpy.ndarray, shape (n_voxels, n_topics)
        ``p(topic | voxel)`` and ``p(voxel | topic)`` over the mask voxels (set by :meth:`fit`).
    p_topic_g_word_, p_word_g_topic_ : numpy.ndarray, shape (n_words, n_topics)
        ``p(topic | word)`` and ``p(word | topic)`` (set by :meth:`fit`).
    vocabulary : list of str
        Terms with at least one occurrence, in ``count_df``'s column order.
    ids : list of str
        Studies present in both inputs, sorted; document ``d`` is ``ids[d]``.
    mask : nibabel.Nifti1Image
        The mask.
    params, data, topics, loglikelihood : dict
        Hyperparameters; token arrays and ``mask_xyz``; assignments, count matrices and
        spatial parameters (keys as NiMARE's); log-likelihood history.

    Raises
    ------
    DatasetError
        If the inputs share no study, lack ``x``/``y``/``z``, or hold invalid counts or
        coordinates.
    ValueError
        If ``symmetric`` is True and ``n_regions`` is odd, or a size is below 1.

    References
    ----------
    Rubin TN, Koyejo O, Gorgolewski KJ, Jones MN, Poldrack RA, Yarkoni T (2017). Decoding
    brain activity using a large-scale probabilistic functional-anatomical atlas of human
    cognition. PLoS Comput Biol 13:e1005649.
    """

    def __init__(
        self,
        count_df,
        coordinates_df,
        mask="mni152_2mm",
        n_topics=100,
        n_regions=2,
        symmetric=True,
        alpha=0.1,
        beta=0.01,
        gamma=0.01,
        delta=1.0,
        dobs=25,
        roi_size=50.0,
        seed_init=1,
    ):
        if int(n_topics) < 1 or int(n_regions) < 1:
            raise ValueError(f"n_topics and n_regions must be >= 1, got {n_topics}, {n_regions}")
        if symmetric and n_regions % 2 != 0:
            raise ValueError(f"A symmetric model needs an even n_regions, got {n_regions}.")
        if not isinstance(count_df, pd.DataFrame) or not isinstance(coordinates_df, pd.DataFrame):
            raise TypeError("count_df and coordinates_df must be pandas DataFrames")
        count_df = count_df.copy()
        count_df.index = count_df.index.astype(str)
        coordinates_df = coordinates_df.copy()
        if "id" not in coordinates_df.columns:
            coordinates_df["id"] = coordinates_df.index
        coordinates_df["id"] = coordinates_df["id"].astype(str)
        _require_columns(coordinates_df, ["x", "y", "z"], "coordinates_df")

        count_ids, coord_ids = set(count_df.index), set(coordinates_df["id"])
        ids = sorted(count_ids & coord_ids)
        if not ids:
            raise DatasetError(
                "count_df and coordinates_df share no study id: count_df's index has "
                f"{sorted(count_ids)[:3]}..., coordinates_df's 'id' has {sorted(coord_ids)[:3]}..."
            )
        if len(ids) != len(count_ids | coord_ids):
            warnings.warn(
                f"GCLDAModel: {len(ids)} of {len(count_ids | coord_ids)} study ids are in both "
                "count_df and coordinates_df; the others are dropped.",
                stacklevel=2,
            )
        self.ids = ids
        count_df = count_df.loc[count_df.index.isin(ids)]
        coordinates_df = coordinates_df.loc[coordinates_df["id"].isin(ids)]

        values = count_df.to_numpy()
        if not np.issubdtype(values.dtype, np.number):
            raise DatasetError("count_df must hold numbers (word counts) only")
        bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise DatasetError(
                f"count_df must hold non-negative integer counts; study {count_df.index[row]!r}, "
                f"term {count_df.columns[col]!r} has {values[row, col]!r}"
            )
        xyz = coordinates_df[["x", "y", "z"]].to_numpy(dtype=np.float64)
        if not np.isfinite(xyz).all():
            row = int(np.argwhere(~np.isfinite(xyz))[0, 0])
            raise DatasetError(
                f"coordinates_df has a non-finite coordinate for study "
                f"{coordinates_df['id'].iloc[row]!r}"
            )
        present = (values != 0).any(axis=0)
        if not present.all():
            LGR.warning(
                f"Retaining {present.sum()} of {present.size} terms present in the corpus."
            )
        counts = values[:, present].astype(np.int64)
        self.vocabulary = [str(c) for c in count_df.columns[present]]

        self.params = {
            "n_topics": int(n_topics),
            "n_regions": int(n_regions),
            "alpha": alpha,
            "beta": beta,
            "gamma": gamma,
            "delta": delta,
            "roi_size": roi_size,
            "dobs": dobs,
            "symmetric": bool(symmetric),
            "seed_init": seed_init,
        }
        self.iter = 0
        self.mask = load_mask(mask)
        doc_of = {id_: i for i, id_ in enumerate(ids)}
        docs = count_df.index.map(doc_of).to_numpy(dtype=np.int64)
        nz_docs, nz_words = np.nonzero(counts)
        repeats = counts[nz_docs, nz_words]
        self.data = {
            "mask_xyz": nib.affines.apply_affine(
                self.mask.affine, np.argwhere(np.asarray(self.mask.dataobj) > 0)
            ),
            "wtoken_doc_idx": np.repeat(docs[nz_docs], repeats),
            "wtoken_word_idx": np.repeat(nz_words, repeats),
            "ptoken_doc_idx": coordinates_df["id"].map(doc_of).to_numpy(dtype=np.int64),
            "ptoken_coords": xyz,
        }
        self.loglikelihood = {"iter": [], "x": [], "w": [], "total": []}
        self._key = jax.random.key(seed_init)
        with jax.enable_x64(True):
            state = ops_gclda.initialize(
                jax.random.fold_in(self._key, 0),
                self._corpus(),
                self._priors(),
                len(self.vocabulary),
                len(ids),
                self.params["n_topics"],
                self.params["n_regions"],
                self.params["symmetric"],
            )
            self.topics = {}
            self._store(state)

    # ------------------------------------------------------------------ state conversion
    def _corpus(self, model=None):
        data = (model or self).data
        return ops_gclda.Corpus(
            wtoken_word=jnp.asarray(data["wtoken_word_idx"], jnp.int32),
            wtoken_doc=jnp.asarray(data["wtoken_doc_idx"], jnp.int32),
            ptoken_doc=jnp.asarray(data["ptoken_doc_idx"], jnp.int32),
            ptoken_coords=jnp.asarray(data["ptoken_coords"], jnp.float64),
        )

    def _priors(self):
        p = self.params
        names = ops_gclda.Priors._fields
        return ops_gclda.Priors(*(jnp.asarray(p[name], jnp.float64) for name in names))

    def _state(self):
        t = self.topics
        return ops_gclda.State(
            wtoken_topic=jnp.asarray(t["wtoken_topic_idx"], jnp.int32),
            peak_topic=jnp.asarray(t["peak_topic_idx"], jnp.int32),
            peak_region=jnp.asarray(t["peak_region_idx"], jnp.int32),
            word_by_topic=jnp.asarray(t["n_word_tokens_word_by_topic"], jnp.int32),
            word_doc_by_topic=jnp.asarray(t["n_word_tokens_doc_by_topic"], jnp.int32),
            peak_doc_by_topic=jnp.asarray(t["n_peak_tokens_doc_by_topic"], jnp.int32),
            region_by_topic=jnp.asarray(t["n_peak_tokens_region_by_topic"], jnp.int32),
            regions_mu=jnp.asarray(t["regions_mu"][:, :, 0, :], jnp.float64),
            regions_sigma=jnp.asarray(t["regions_sigma"], jnp.float64),
        )

    def _store(self, state):
        """Copy an ops state into ``self.topics`` (NumPy arrays, NiMARE's keys and shapes)."""
        precision, log_norm = ops_gclda.precision_and_log_norm(state.regions_sigma)
        word_by_topic = np.asarray(state.word_by_topic, np.int64)
        self.topics.update(
            {
                "wtoken_topic_idx": np.asarray(state.wtoken_topic, np.int64),
                "peak_topic_idx": np.asarray(state.peak_topic, np.int64),
                "peak_region_idx": np.asarray(state.peak_region, np.int64),
                "n_word_tokens_word_by_topic": word_by_topic,
                "total_n_word_tokens_by_topic": word_by_topic.sum(axis=0),
                "n_word_tokens_doc_by_topic": np.asarray(state.word_doc_by_topic, np.int64),
                "n_peak_tokens_doc_by_topic": np.asarray(state.peak_doc_by_topic, np.int64),
                "n_peak_tokens_region_by_topic": np.asarray(state.region_by_topic, np.int64),
                "regions_mu": np.asarray(state.regions_mu)[:, :, None, :],
                "regions_sigma": np.asarray(state.regions_sigma),
                "regions_precision": np.asarray(precision),
                "regions_log_norm": np.asarray(log_norm),
            }
        )

    # ------------------------------------------------------------------ public API
    def fit(self, n_iters=5000, loglikely_freq=10):
        """Run Gibbs iterations until the model has run ``n_iters`` in total.

        As in NiMARE, ``n_iters`` counts from the model's creation: a second ``fit`` with a
        larger value continues the chain, one with a value already reached runs nothing.
        The first call estimates the spatial parameters from the initial assignments and
        records the initial log-likelihood. The ``p_*_`` attributes are set at the end.

        Parameters
        ----------
        n_iters : int, optional
            Total number of iterations. Default 5000.
        loglikely_freq : int, optional
            Record the log-likelihood (:attr:`loglikelihood`) after every iteration that is a
            multiple of this. Default 10.
        """
        if int(loglikely_freq) < 1:
            raise ValueError(f"loglikely_freq must be >= 1, got {loglikely_freq}")
        sym = self.params["symmetric"]
        with jax.enable_x64(True):
            corpus, priors, state = self._corpus(), self._priors(), self._state()
            if self.iter == 0:
                state = ops_gclda.update_regions_jit(state, corpus, priors, sym=sym)
                self._record(state, corpus, priors)
            while self.iter < n_iters:
                stop = min(n_iters, (self.iter // loglikely_freq + 1) * loglikely_freq)
                state = ops_gclda.run_iterations(
                    self._key, self.iter, stop, state, corpus, priors, sym=sym
                )
                self.iter = stop
                if stop % loglikely_freq == 0:
                    self._record(state, corpus, priors)
            self._store(state)
        (
            self.p_topic_g_voxel_,
            self.p_voxel_g_topic_,
            self.p_topic_g_word_,
            self.p_word_g_topic_,
        ) = self.get_probability_distributions()

    def _record(self, state, corpus, priors):
        x_ll, w_ll, total = (float(v) for v in ops_gclda.log_likelihood(state, corpus, priors))
        self.loglikelihood["iter"].append(self.iter)
        self.loglikelihood["x"].append(x_ll)
        self.loglikelihood["w"].append(w_ll)
        self.loglikelihood["total"].append(total)
        LGR.info(f"Iter {self.iter:04d} log-likelihood x={x_ll:.1f} w={w_ll:.1f} tot={total:.1f}")

    def compute_log_likelihood(self, model=None, update_vectors=True):
        """Posterior-predictive log-likelihood of the foci and word tokens (Newman et al. 2009).

        Parameters
        ----------
        model : GCLDAModel, optional
            Model whose tokens are evaluated under this model's distributions (they must be
            the same documents, as document-topic proportions are this model's). Default:
            this model.
        update_vectors : bool, optional
            Append the values to :attr:`loglikelihood` (only when ``model`` is this model).

        Returns
        -------
        x_loglikely, w_loglikely, tot_loglikely : float
            Log-likelihood of the foci, of the word tokens, and their sum.
        """
        if model is not None and model is not self:
            if list(model.ids) != list(self.ids):
                raise DatasetError("compute_log_likelihood: model must have the same study ids")
            update_vectors = False
        with jax.enable_x64(True):
            corpus, priors, state = self._corpus(model), self._priors(), self._state()
            if update_vectors:
                self._record(state, corpus, priors)
                return tuple(self.loglikelihood[k][-1] for k in ("x", "w", "total"))
            return tuple(float(v) for v in ops_gclda.log_likelihood(state, corpus, priors))

    def get_probability_distributions(self):
        """Conditional distributions of topics, voxels and words under the current state.

        Returns
        -------
        p_topic_g_voxel : numpy.ndarray, shape (n_voxels, n_topics)
            ``p(topic | voxel)``: each topic's summed subregion densities at the voxel,
            normalised over topics.
        p_voxel_g_topic : numpy.ndarray, shape (n_voxels, n_topics)
            ``p(voxel | topic)``: the same densities normalised over the mask voxels.
        p_topic_g_word : numpy.ndarray, shape (n_words, n_topics)
            ``p(topic | word)`` from the word-token counts.
        p_word_g_topic : numpy.ndarray, shape (n_words, n_topics)
            ``p(word | topic)`` from the word-token counts.
        """
        with jax.enable_x64(True):
            out = ops_gclda.probability_distributions(
                jnp.asarray(self.data["mask_xyz"], jnp.float64),
                jnp.asarray(self.topics["n_word_tokens_word_by_topic"], jnp.int32),
                jnp.asarray(self.topics["regions_mu"][:, :, 0, :], jnp.float64),
                jnp.asarray(self.topics["regions_sigma"], jnp.float64),
            )
            return tuple(np.asarray(a) for a in out)
