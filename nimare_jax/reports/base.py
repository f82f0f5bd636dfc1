"""One self-contained HTML report of a meta-analytic result: :class:`Report`, :func:`run_reports`.

The page has four sections: Summary (studies, experiments, foci and foci outside the mask;
image counts for image-based analyses), Meta-analysis (estimator and corrector parameters,
brain figures and cluster tables), Diagnostics (heat maps of each experiment's contribution
to each cluster) and Methods (the result's boilerplate and its BibTeX references).

Unlike NiMARE 0.22.1's report, the page works offline and stands alone: one inline style
sheet, no script, figures embedded as base64 PNG (no ``figures/`` folder), and no ``http``
or ``https`` reference anywhere (the references' DOIs are written ``doi:10...``). It also
describes uncorrected results and results without diagnostics (NiMARE's raises
``AttributeError`` on the first).
"""

from __future__ import annotations

import base64
import html
import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from nimare_jax import __version__
from nimare_jax.reports.clusters import cluster_table
from nimare_jax.reports.figures import plot_coordinates, plot_heatmap, plot_static_brain
from nimare_jax.results import MetaResult
from nimare_jax.spatial import mm2vox

__all__ = ["SECTIONS", "Report", "run_reports"]

#: Section titles, in page order (also the ``id`` of each section, lower-cased).
SECTIONS = ("Summary", "Meta-analysis", "Diagnostics", "Methods")

#: Uncorrected maps shown first, whichever the result has.
_UNCORRECTED = ("z", "z_desc-association", "z_desc-group1MinusGroup2")
#: Image types counted in the summary of an image-based analysis.
_IMAGE_TYPES = ("z", "t", "p", "beta", "varcope", "se")
#: Threshold of uncorrected z maps in figures and cluster tables (one-tailed p < 0.001).
_Z_UNCORRECTED = float(norm.isf(0.001))
#: Threshold of corrected z maps (one-tailed p < 0.05).
_MIN_SIZE = 10  # smallest cluster listed when the diagnostics gave no table (voxels)
_Z_CORRECTED = float(norm.isf(0.05))

_DOI_URL = re.compile(r"https?://(?:dx\.)?doi\.org/")

_STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#2c3e50;color:#fff;padding:12px 24px}
header h1{margin:0;font-size:22px}
nav{background:#34495e;padding:6px 24px}
nav a{color:#ecf0f1;margin-right:18px;text-decoration:none}
main{padding:0 24px 24px}
section{background:#fff;border:1px solid #ddd;border-radius:4px;margin:16px 0;padding:8px 16px}
h2{border-bottom:2px solid #2c3e50;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#ecf0f1}
img{max-width:100%;display:block;margin:8px 0}
pre{background:#f4f4f4;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
p.note{color:#666;font-style:italic}
"""


def run_reports(results, out_dir, out_filename: str = "report.html") -> Path:
    """Write the HTML report of a result (``Report(results, out_dir).generate_report()``).

    Parameters
    ----------
    results : MetaResult
        A fitted (and possibly corrected and diagnosed) result; ``results.estimator`` must
        be the estimator that produced it.
    out_dir : str or os.PathLike
        Folder (created if needed).
    out_filename : str
        File name of the page.

    Returns
    -------
    pathlib.Path
        The written page.
    """
    return Report(results, out_dir, out_filename).generate_report()


class Report:
    """Build the report page of a result.

    Parameters
    ----------
    results : MetaResult
        The result (see :func:`run_reports`).
    out_dir : str or os.PathLike
        Folder of the page.
    out_filename : str
        File name of the page.
    """

    def __init__(self, results, out_dir, out_filename: str = "report.html"):
        if not isinstance(results, MetaResult):
            raise TypeError(f"results must be a MetaResult, got {type(results).__name__}")
        if results.estimator is None:
            raise ValueError("the result has no estimator: the report describes its inputs")
        self.results = results
        self.out_dir = Path(out_dir)
        self.out_filename = out_filename

    def generate_report(self) -> Path:
        """Render the page and write it.

        Returns
        -------
        pathlib.Path
            The written page.
        """
        page = self.render()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / self.out_filename
        path.write_text(page, encoding="utf-8")
        return path

    def render(self) -> str:
        """Return the page's HTML text.

        Returns
        -------
        str
            A complete HTML document.
        """
        bodies = (self._summary(), self._meta_analysis(), self._diagnostics(), self._methods())
        nav = "".join(f'<a href="#{_anchor(t)}">{t}</a>' for t in SECTIONS)
        sections = "".join(
            f'<section id="{_anchor(t)}"><h2>{t}</h2>{body}</section>'
            for t, body in zip(SECTIONS, bodies, strict=True)
        )
        title = html.escape(f"{type(self.results.estimator).__name__} meta-analysis report")
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<header><h1>{title}</h1><div>nimare_jax {html.escape(__version__)}</div></header>"
            f"<nav>{nav}</nav><main>{sections}</main></body></html>\n"
        )

    # ------------------------------------------------------------------- summary
    def _summary(self) -> str:
        estimator = self.results.estimator
        groups = [(f"Group {g}", getattr(estimator, f"dataset{g}_", None)) for g in (1, 2)]
        groups = [(label, d) for label, d in groups if d is not None]
        if not groups:
            groups = [("Dataset", getattr(estimator, "dataset_", None))]
        if groups[0][1] is None:
            inputs = getattr(estimator, "inputs_", None)
            ids = inputs.get("id") if isinstance(inputs, dict) else None
            n = "unknown" if ids is None else len(ids)
            return f"<p>The estimator was fitted to arrays ({n} experiments), not a dataset.</p>"
        rows = [summary_counts(d, self.results.mask) for _, d in groups]
        table = pd.DataFrame(rows, index=[label for label, _ in groups]).T
        parts = [_table(table, index=True)]
        if len(groups[0][1].coordinates):
            coords = pd.concat([d.coordinates for _, d in groups])
            xyz = coords[["x", "y", "z"]].to_numpy(float)
            parts.append("<h3>Foci</h3>" + _img(plot_coordinates(xyz), "foci on a glass brain"))
        return "".join(parts)

    # ------------------------------------------------------------- meta-analysis
    def _meta_analysis(self) -> str:
        res = self.results
        est = res.estimator
        parts = [f"<h3>Estimator: {html.escape(type(est).__name__)}</h3>"]
        parts.append(_table(_params_frame(est)))
        corrector = getattr(res, "corrector", None)
        corrected = [n for n in res.maps if n.startswith("z_") and "_corr-" in n]
        if corrector is not None:
            parts.append(f"<h3>Corrector: {html.escape(type(corrector).__name__)}</h3>")
            parts.append(_table(_params_frame(corrector)))
        elif corrected:
            methods = sorted({n.split("_corr-", 1)[1] for n in corrected})
            parts.append(
                "<h3>Correction</h3><p>Corrected maps: "
                + ", ".join(f"<code>corr-{html.escape(m)}</code>" for m in methods)
                + "</p>"
            )
        else:
            parts.append(
                '<h3>Correction</h3><p class="note">No multiple-comparison correction was '
                "applied; the maps below are uncorrected.</p>"
            )
        uncorrected = next((n for n in _UNCORRECTED if n in res.maps), None)
        shown = [(name, _Z_CORRECTED) for name in self._corrected_maps(corrected)]
        if uncorrected is not None:
            shown.insert(0, (uncorrected, _Z_UNCORRECTED))
        suffix = "_tab-clust"
        tables = {n[: -len(suffix)]: t for n, t in res.tables.items() if n.endswith(suffix)}
        for name, threshold in shown:
            img = res.get_map(name)
            parts.append(f"<h3>{html.escape(name)}</h3>")
            what = f"{name}, |value| > {threshold:.2f}"
            parts.append(_img(plot_static_brain(img, threshold=threshold), what))
            if name in tables:
                parts.append("<p>Clusters (from the diagnostics):</p>")
                parts.append(_table(tables[name]) if len(tables[name]) else "<p>No cluster.</p>")
            else:
                two_sided = bool((np.asarray(res.maps[name]) < -threshold).any())
                clusters = cluster_table(img, threshold, min_size=_MIN_SIZE, two_sided=two_sided)
                parts.append(
                    f"<p>Clusters of at least {_MIN_SIZE} voxels with |value| &gt; "
                    f"{threshold:.2f} (6-connected):</p>"
                )
                parts.append(_table(clusters) if len(clusters) else "<p>No cluster.</p>")
        return "".join(parts)

    def _corrected_maps(self, corrected: list[str]) -> list[str]:
        """Diagnosed maps; without diagnostics, the first corrected z map by preference."""
        applied = getattr(self.results, "diagnostics", None) or []
        diagnosed = [getattr(d, "target_image", None) for d in applied]
        diagnosed = [n for n in diagnosed if n in self.results.maps]
        diagnosed += [
            n[: -len("_tab-clust")]
            for n in self.results.tables
            if n.endswith("_tab-clust") and n[: -len("_tab-clust")] in self.results.maps
        ]
        diagnosed = list(dict.fromkeys(diagnosed))
        if diagnosed:
            return diagnosed
        for key in ("desc-mass", "Mass", "desc-size", "Size", "level-voxel", "corr-"):
            found = sorted(n for n in corrected if key in n)
            if found:
                return found[:1]
        return []

    # --------------------------------------------------------------- diagnostics
    def _diagnostics(self) -> str:
        tables = [(name, t) for name, t in sorted(self.results.tables.items()) if "_diag-" in name]
        if not tables:
            return '<p class="note">No diagnostics were run on this result.</p>'
        parts = []
        for diag in getattr(self.results, "diagnostics", None) or []:
            parts.append(_table(_params_frame(diag, title=type(diag).__name__)))
        for name, table in tables:
            parts.append(f"<h3>{html.escape(name)}</h3>")
            if table is None or len(table) == 0 or table.shape[1] < 2:
                parts.append('<p class="note">No cluster: nothing to attribute.</p>')
                continue
            what = "contribution of each experiment (rows) to each cluster (columns)"
            parts.append(_img(plot_heatmap(table), what))
            parts.append(f"<details><summary>Table</summary>{_table(table)}</details>")
        return "".join(parts)

    # ------------------------------------------------------------------- methods
    def _methods(self) -> str:
        # DOIs as "doi:10..." text: the page holds no http(s) reference, not even a link
        text = _DOI_URL.sub("doi:", self.results.boilerplate())
        paragraphs = "".join(  # the references come one per line
            "<p>" + "<br>".join(html.escape(line) for line in p.strip().splitlines()) + "</p>"
            for p in text.split("\n\n")
            if p.strip()
        )
        bib = self.results.bibtex()
        return f"{paragraphs}<h3>BibTeX</h3><pre>{html.escape(bib)}</pre>"


def summary_counts(dataset, mask) -> dict:
    """Count a dataset's studies, experiments, foci and foci outside a mask (and images).

    Parameters
    ----------
    dataset : nimare_jax.dataset.Dataset
        The experiments.
    mask : nibabel.Nifti1Image
        Analysis mask; a focus is outside when its nearest voxel is outside the volume or
        has a mask value of 0.

    Returns
    -------
    dict
        ``studies``, ``experiments``, ``foci``, ``foci outside the mask`` and, for each
        image type present, ``{type} images`` (experiments with such an image).
    """
    meta = dataset.metadata
    if "study_id" in meta.columns:
        studies = meta["study_id"].nunique()
    else:
        studies = len({str(i).rsplit("-", 1)[0] for i in dataset.ids})
    coords = dataset.coordinates
    out = {"studies": int(studies), "experiments": len(dataset.ids), "foci": len(coords)}
    inside = np.asanyarray(mask.dataobj) > 0
    ijk = mm2vox(coords[["x", "y", "z"]].to_numpy(float), mask.affine)
    ok = np.all((ijk >= 0) & (ijk < np.asarray(inside.shape)), axis=1)
    hit = np.zeros(len(ijk), bool)
    hit[ok] = inside[tuple(ijk[ok].T)]
    out["foci outside the mask"] = int((~hit).sum())
    images = dataset.images
    for kind in _IMAGE_TYPES:
        if images is not None and kind in images.columns:
            out[f"{kind} images"] = int(images[kind].notna().sum())
    return out


def _params_frame(obj, title=None) -> pd.DataFrame:
    """Parameter names and values of an estimator, kernel, corrector or diagnostic."""
    rows = []
    for name, value in _params(obj).items():
        if hasattr(value, "__dict__") and not isinstance(value, type) and _params(value):
            rows.append((name, type(value).__name__))
            rows += [(f"{name}__{k}", _show(v)) for k, v in _params(value).items()]
        else:
            rows.append((name, _show(value)))
    frame = pd.DataFrame(rows, columns=["parameter", "value"])
    if title is not None:
        frame.insert(0, "diagnostic", title)
    return frame


def _params(obj) -> dict:
    """Return the constructor parameters ``obj`` keeps as attributes (NiMARE's get_params)."""
    getter = getattr(obj, "get_params", None)
    if callable(getter):
        try:
            return dict(getter(deep=False))
        except TypeError:
            pass
    out = {}
    for klass in reversed(inspect.getmro(type(obj))):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if name in vars(obj):
                out[name] = vars(obj)[name]
    extra = vars(obj).get("kwargs")
    if isinstance(extra, dict):
        out.pop("kwargs", None)
        out.update(extra)
    return out


def _show(value) -> str:
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}"
    if hasattr(value, "get_fdata"):
        return f"image of shape {value.shape}"
    return repr(value)


def _anchor(title: str) -> str:
    return title.lower().replace(" ", "-")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    """HTML of a table (text columns left-aligned, floats with 4 significant digits)."""
    frame = frame.copy()
    for col in frame.columns:
        if pd.api.types.is_float_dtype(frame[col]):
            frame[col] = frame[col].map(lambda v: f"{v:.4g}")
    return frame.to_html(index=index, border=0, escape=True, na_rep="")
