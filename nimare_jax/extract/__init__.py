"""Download databases, ontologies and abstracts (NiMARE 0.22.1's ``nimare.extract``).

See :mod:`nimare_jax.extract.extract` for what each fetcher returns and how it differs from
NiMARE's, and :mod:`nimare_jax.io.download` for how files are downloaded and where they are
kept (``$NIMARE_JAX_DATA`` or ``~/.nimare_jax``).
"""

from nimare_jax.extract import utils
from nimare_jax.extract.extract import (
    download_abstracts,
    download_cognitive_atlas,
    download_nidm_pain,
    fetch_neuroquery,
    fetch_neurostore,
    fetch_neurostore_releases,
    fetch_neurosynth,
)

__all__ = [
    "download_abstracts",
    "download_cognitive_atlas",
    "download_nidm_pain",
    "fetch_neuroquery",
    "fetch_neurostore",
    "fetch_neurostore_releases",
    "fetch_neurosynth",
    "utils",
]
