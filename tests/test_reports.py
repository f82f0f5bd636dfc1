"""The HTML report (reports.run_reports / Report).

Runs: ALE + Monte Carlo FWE (few iterations) + FocusCounter on the bundled laird dataset,
and Stouffers + FDR + Jackknife on the cropped IBMA test set (tests/data/ibma).

Checked: the four sections; no external reference (no ``http://`` or ``https://``
anywhere in the page, the bibliography included: its DOIs are written ``doi:10...``, not
as links); one inline style sheet and no script; the size limit (2 MB for the ALE report;
NiMARE 0.22.1's is 5 MB plus figure files); the summary numbers against counts made here
from the dataset with nibabel; the cluster and contribution tables against the result's;
uncorrected results and results without diagnostics (NiMARE's report raises
AttributeError on the first). The browser test renders the page in headless Chromium
(Debian's ``chromium`` package).
"""

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from nibabel.affines import apply_affine

from nimare_jax.cli import main
from nimare_jax.correct import FDRCorrector, FWECorrector
from nimare_jax.dataset import Dataset
from nimare_jax.meta.cbma import ALE
from nimare_jax.meta.ibma import Stouffers
from nimare_jax.reports import Report, run_reports
from nimare_jax.workflows import CBMAWorkflow, IBMAWorkflow

DATA = Path(__file__).parent / "data"
IBMA = DATA / "ibma"
MASS = "z_desc-mass_level-cluster_corr-FWE_method-montecarlo"
FDR = "z_corr-FDR_method-indep"
SECTIONS = ("Summary", "Meta-analysis", "Diagnostics", "Methods")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def ale_result(laird):
    wf = CBMAWorkflow(
        corrector=FWECorrector(method="montecarlo", n_iters=30), diagnostics="focuscounter"
    )
    return wf.fit(laird)


@pytest.fixture(scope="module")
def ale_page(ale_result, tmp_path_factory):
    return run_reports(ale_result, tmp_path_factory.mktemp("ale"))


@pytest.fixture(scope="module")
def ibma_dset():
    return Dataset(IBMA / "inputs" / "ibma_sim_dataset.json", mask=IBMA / "mask.nii.gz")


@pytest.fixture(scope="module")
def ibma_result(ibma_dset):
    return IBMAWorkflow(voxel_thresh=0.3).fit(ibma_dset)  # Stouffers, FDR, Jackknife


def _summary_value(text, label, column=0):
    row = re.search(rf"<th>{re.escape(label)}</th>((?:\s*<td>[^<]*</td>)+)", text)
    assert row is not None, label
    return int(re.findall(r"<td>([^<]*)</td>", row.group(1))[column])


def _section(text, title):
    anchor = title.lower()
    match = re.search(rf'<section id="{anchor}"><h2>{title}</h2>(.*?)</section>', text, re.S)
    assert match is not None, title
    return match.group(1)


def _assert_offline_page(text):
    for title in SECTIONS:
        _section(text, title)
    assert "http://" not in text and "https://" not in text
    assert text.count("<style>") == 1 and "<script" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def _foci_outside(dataset, mask):
    inside = np.asanyarray(mask.dataobj) > 0
    ijk = np.rint(apply_affine(np.linalg.inv(mask.affine), dataset.coordinates[["x", "y", "z"]]))
    ijk = ijk.astype(int)
    ok = np.all((ijk >= 0) & (ijk < inside.shape), axis=1)
    return int(len(ijk) - inside[tuple(ijk[ok].T)].sum())


@pytest.mark.slow
def test_ale_report_sections_offline_and_small(ale_page):
    text = ale_page.read_text()
    _assert_offline_page(text)
    assert ale_page.stat().st_size <= 2 * 1024**2
    assert len(re.findall(r"<img ", text)) >= 4  # foci, z, corrected z, contribution heat map


@pytest.mark.slow
def test_ale_report_summary_counts_the_dataset(ale_page, ale_result, laird):
    summary = _section(ale_page.read_text(), "Summary")
    assert _summary_value(summary, "studies") == laird.coordinates["study_id"].nunique()
    assert _summary_value(summary, "experiments") == len(laird.ids) == 17
    assert _summary_value(summary, "foci") == len(laird.coordinates) == 1117
    outside = _foci_outside(laird, ale_result.mask)
    assert _summary_value(summary, "foci outside the mask") == outside > 0


@pytest.mark.slow
def test_ale_report_shows_parameters_clusters_and_counts(ale_page, ale_result):
    text = ale_page.read_text()
    meta = _section(text, "Meta-analysis")
    assert "Estimator: ALE" in meta and "Corrector: FWECorrector" in meta
    assert re.search(r"<td>n_iters</td>\s*<td>30</td>", meta)
    assert re.search(r"<td>kernel_transformer</td>\s*<td>ALEKernel</td>", meta)
    clusters = ale_result.tables[f"{MASS}_tab-clust"]
    assert len(clusters) > 0
    for row in clusters.itertuples(index=False):
        assert f"<td>{row[0]}</td>" in meta  # Cluster ID
        assert f"<td>{html.escape(row[-1])}</td>" in meta  # Peak Label
    diag = _section(text, "Diagnostics")
    counts = ale_result.tables[f"{MASS}_diag-FocusCounter_tab-counts_tail-positive"]
    assert f"{MASS}_diag-FocusCounter_tab-counts_tail-positive" in diag
    first = counts.iloc[0]
    cells = "".join(rf"\s*<td>{int(v)}</td>" for v in first.iloc[1:])
    assert re.search(rf"<td>{first['id']}</td>{cells}", diag)
    assert "FocusCounter" in diag and "target_threshold" in diag


@pytest.mark.slow
def test_ale_report_methods_hold_boilerplate_and_bibtex(ale_page, ale_result):
    methods = _section(ale_page.read_text(), "Methods")
    first = ale_result.boilerplate().split("\n\n")[0].strip()
    assert html.escape(first) in methods
    assert "doi:10." in methods
    for key in ("Turkeltaub2002", "Eickhoff2012"):
        assert f"{{{key}," in methods


@pytest.mark.slow
def test_ibma_report(ibma_result, ibma_dset, tmp_path):
    page = run_reports(ibma_result, tmp_path)
    text = page.read_text()
    _assert_offline_page(text)
    summary = _section(text, "Summary")
    for kind in ("z", "beta", "varcope"):
        assert _summary_value(summary, f"{kind} images") == len(ibma_dset.ids) == 20
    assert _summary_value(summary, "foci") == 0
    assert "Estimator: Stouffers" in text and "Corrector: FDRCorrector" in text
    diag = _section(text, "Diagnostics")
    assert f"{FDR}_diag-Jackknife_tab-counts" in diag  # one table: both tails have clusters
    assert "<img " in diag  # the contribution heat map
    table = ibma_result.tables[f"{FDR}_tab-clust"]
    meta = _section(text, "Meta-analysis")
    assert all(f"<td>{cid}</td>" in meta for cid in table["Cluster ID"])


def test_uncorrected_result_without_diagnostics(laird, tmp_path):
    result = ALE().fit(laird)  # NiMARE 0.22.1's report raises AttributeError here
    text = Report(result, tmp_path).render()
    _assert_offline_page(text)
    assert "No multiple-comparison correction was applied" in _section(text, "Meta-analysis")
    assert "No diagnostics were run" in _section(text, "Diagnostics")
    # without a cluster table from diagnostics, cluster_table lists the z map's clusters
    assert "Clusters of at least 10 voxels with |value| &gt; 3.09" in text


def test_corrected_result_without_diagnostics(ibma_dset, tmp_path):
    result = FDRCorrector().transform(Stouffers().fit(ibma_dset))
    text = run_reports(result, tmp_path, out_filename="r.html").read_text()
    _assert_offline_page(text)
    assert "corr-FDR_method-indep" in _section(text, "Meta-analysis")
    assert "No diagnostics were run" in _section(text, "Diagnostics")


def test_report_refuses_what_it_cannot_describe(tmp_path):
    with pytest.raises(TypeError, match="MetaResult"):
        run_reports({"z": 1}, tmp_path)


@pytest.mark.slow
def test_ale_command_writes_cluster_tables_and_report(tmp_path):
    out = tmp_path / "out"
    sleuth = DATA / "sleuth" / "test_sleuth_file.txt"
    assert main(["ale", str(sleuth), "--output_dir", str(out), "--n_iters", "20"]) == 0
    stem = sleuth.stem
    text = (out / f"{stem}_report.html").read_text()
    _assert_offline_page(text)
    table = (out / f"{stem}_{MASS}_tab-clust.tsv").read_text().splitlines()
    header = "Cluster ID\tX\tY\tZ\tPeak Stat\tCluster Size (mm3)\tPeak Label"
    assert table[0] == header
    for line in table[1:]:
        assert f"<td>{line.split(chr(9))[0]}</td>" in text


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(ale_page, tmp_path):
    shot = tmp_path / "report.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    url = ale_page.resolve().as_uri()
    subprocess.run(
        [*flags, "--window-size=1280,2400", f"--screenshot={shot}", url],
        check=True,
        capture_output=True,
        timeout=180,
    )
    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    header = np.round(pixels[:20, :200] * 255).reshape(-1, 3)
    assert (np.abs(header - [44, 62, 80]).max(axis=1) <= 2).mean() > 0.5  # #2c3e50 banner
    colours = np.unique(np.round(pixels * 31).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # figures drawn, not a blank page
    dom = subprocess.run(
        [*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=180
    ).stdout
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in dom
