"""Record NiMARE 0.22.1's workflow output names (maps, tables, table columns).

Run with the oracle environment (NiMARE 0.22.1, numpy 2.4, nilearn 0.13):

    /work/venv-nimare/bin/python tests/data/workflows/make_reference.py

Writes ``names.json``: for each run, the sorted map names, and every table's name with its
columns (None for a table NiMARE leaves empty as None). Runs, on the bundled laird dataset
(``nimare_jax/resources/data/laird_n20_dataset.json``) and the cropped IBMA test set
(``tests/data/ibma``):

- ``cbma_defaults``: ``CBMAWorkflow`` with NiMARE's defaults (ALE, Monte Carlo FWE,
  Jackknife with ``voxel_thresh=1.65``, ``cluster_threshold=10``), except that the Monte Carlo
  correction runs 50 iterations instead of 5000 (names do not depend on the count);
- ``cbma_focuscounter``: the same with ``diagnostics="focuscounter"``;
- ``pairwise_defaults``: ``PairwiseCBMAWorkflow`` with NiMARE's defaults (MKDAChi2, Monte
  Carlo FWE with 50 iterations, Jackknife) on the ``laird_split.json`` groups;
- ``ibma_defaults``: ``IBMAWorkflow`` with NiMARE's defaults (Stouffers, FDR ``indep``,
  Jackknife).
"""

import json
import warnings
from pathlib import Path

from nimare.correct import FWECorrector
from nimare.dataset import Dataset
from nimare.workflows import CBMAWorkflow, IBMAWorkflow, PairwiseCBMAWorkflow

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
LAIRD = ROOT / "nimare_jax" / "resources" / "data" / "laird_n20_dataset.json"
IBMA = ROOT / "tests" / "data" / "ibma"


def names(result):
    tables = {
        name: None if table is None else [str(c) for c in table.columns]
        for name, table in result.tables.items()
    }
    return {"maps": sorted(result.maps), "tables": dict(sorted(tables.items()))}


def main():
    warnings.simplefilter("ignore")
    out = {"nimare_version": __import__("nimare").__version__}
    laird = Dataset(str(LAIRD))
    fwe = FWECorrector(method="montecarlo", n_iters=50, n_cores=1)
    out["cbma_defaults"] = names(CBMAWorkflow(corrector=fwe).fit(laird))
    out["cbma_focuscounter"] = names(
        CBMAWorkflow(corrector=fwe, diagnostics="focuscounter").fit(laird)
    )
    split = json.loads((ROOT / "tests" / "data" / "reference" / "laird_split.json").read_text())
    g1, g2 = (laird.slice(ids) for ids in split.values())
    out["pairwise_defaults"] = names(PairwiseCBMAWorkflow(corrector=fwe).fit(g1, g2))
    ibma = Dataset(str(IBMA / "inputs" / "ibma_sim_dataset.json"), mask=str(IBMA / "mask.nii.gz"))
    ibma.update_path(str(IBMA / "inputs"))
    out["ibma_defaults"] = names(IBMAWorkflow().fit(ibma))
    (HERE / "names.json").write_text(json.dumps(out, indent=1) + "\n")
    print({k: len(v["maps"]) for k, v in out.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
