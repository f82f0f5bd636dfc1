"""The fetchers, offline: a local HTTP server stands in for every remote source.

The server (127.0.0.1, a free port, one thread) serves the bundled Neurosynth v7 sample under
its real file names, a NeuroStore release index with a release archive NiMARE 0.22.1 wrote
(tests/data/extract/make_extract_fixtures.py), and recorded answers of the Cognitive Atlas,
NeuroVault and PubMed APIs (tests/data/extract, written by hand after their formats). Results
are compared with nimare_jax's converters on the same files and with NiMARE's own
``download_cognitive_atlas`` fed the same answers.
"""

import gzip
import hashlib
import io
import json
import socket
import threading
import urllib.parse
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimare_jax import extract
from nimare_jax.annotate.cogat import extract_cogat
from nimare_jax.dataset import Dataset
from nimare_jax.exceptions import DatasetError, DownloadError
from nimare_jax.extract import extract as extract_module
from nimare_jax.extract.utils import get_data_dirs
from nimare_jax.io import (
    convert_neurosynth_to_dataset,
    convert_neurovault_to_dataset,
    fetch_neurostore_studyset,
)
from nimare_jax.io import neurostore as neurostore_module
from nimare_jax.studyset import Studyset

DATA = Path(__file__).parent / "data"
NS = DATA / "neurosynth"
FIXTURES = DATA / "extract"
NIMADS = DATA / "nimads"
# properties of the sample data, not of the fetchers: 5 Neurosynth studies give space
# "UNKNOWN", and the NIMADS studyset's points give none
pytestmark = [
    pytest.mark.filterwarnings("ignore:dataset dict.*unknown space:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*give no space for their foci:UserWarning"),
]
NS_FILES = sorted(p.name for p in NS.glob("data-neurosynth_version-7_*"))


class _State:
    def __init__(self):
        self.routes = {}  # path (with query) -> bytes, or (bytes, "half")
        self.hits = Counter()
        self.posts = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.state.posts.append((self.path, urllib.parse.parse_qs(body.decode())))
        self._answer()

    def _answer(self):
        state = self.server.state
        state.hits[self.path] += 1
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not found")
            return
        data, mode = route if isinstance(route, tuple) else (route, "full")
        if mode == "busy-once":  # a transient failure: 503 now, the data next time
            state.routes[self.path] = data
            self.send_error(503, "Service Unavailable")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "half":  # the server dies mid-body
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()
    httpd.state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port_url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


def _serve_neurosynth(server):
    for name in NS_FILES:
        server.routes[f"/ns/{name}"] = (NS / name).read_bytes()
    return f"{server.base}/ns/"


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _assert_same_dataset(a, b):
    assert list(a.ids) == list(b.ids)
    for table in ("coordinates", "metadata", "annotations", "texts", "images"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), obj=table)


# ------------------------------------------------------------------------------ Neurosynth
def _reference_dataset():
    prefix = NS / "data-neurosynth_version-7_"
    return convert_neurosynth_to_dataset(
        prefix.with_name(prefix.name + "coordinates.tsv.gz"),
        prefix.with_name(prefix.name + "metadata.tsv.gz"),
        annotations_files=[
            {
                "features": prefix.with_name(
                    prefix.name + "vocab-terms_source-abstract_type-tfidf_features.npz"
                ),
                "vocabulary": prefix.with_name(prefix.name + "vocab-terms_vocabulary.txt"),
            }
        ],
    )


def test_fetch_neurosynth_dataset_equals_the_converter_on_the_same_files(server, tmp_path):
    url = _serve_neurosynth(server)
    (dset,) = extract.fetch_neurosynth(
        data_dir=tmp_path,
        version="7",
        source="abstract",
        vocab="terms",
        return_type="dataset",
        url=url,
    )
    reference = _reference_dataset()
    _assert_same_dataset(dset, reference)
    assert (len(dset.ids), len(dset.coordinates)) == (20, 1420)
    assert len([c for c in dset.annotations if c.startswith("terms_abstract_tfidf__")]) == 100
    # the default return type: nimare_jax's Studyset of the same tables
    (studyset,) = extract.fetch_neurosynth(
        data_dir=tmp_path, source="abstract", vocab="terms", url=url
    )
    assert isinstance(studyset, Studyset)
    pd.testing.assert_frame_equal(
        studyset.coordinates, Studyset.from_dataset(reference).coordinates
    )


def test_fetch_neurosynth_files_layout_and_cache(server, tmp_path):
    url = _serve_neurosynth(server)
    (files,) = extract.fetch_neurosynth(
        data_dir=tmp_path,
        source="abstract",
        vocab="terms",
        type="tfidf",
        return_type="files",
        url=url,
    )
    folder = tmp_path / "neurosynth"
    prefix = str(folder / "data-neurosynth_version-7_")
    assert files == {
        "coordinates": prefix + "coordinates.tsv.gz",
        "metadata": prefix + "metadata.tsv.gz",
        "features": [
            {
                "features": prefix + "vocab-terms_source-abstract_type-tfidf_features.npz",
                "vocabulary": prefix + "vocab-terms_vocabulary.txt",
            }
        ],
    }
    assert _files_in(folder) == NS_FILES
    for name in NS_FILES:
        assert (folder / name).read_bytes() == (NS / name).read_bytes()
    assert sum(server.hits.values()) == 4
    extract.fetch_neurosynth(
        data_dir=tmp_path, source="abstract", vocab="terms", return_type="files", url=url
    )
    assert sum(server.hits.values()) == 4  # cached: nothing asked
    extract.fetch_neurosynth(
        data_dir=tmp_path,
        source="abstract",
        vocab="terms",
        return_type="files",
        url=url,
        overwrite=True,
    )
    assert sum(server.hits.values()) == 8


def test_fetch_neurosynth_invalid_queries_list_the_valid_options(server, tmp_path):
    url = _serve_neurosynth(server)
    with pytest.raises(ValueError, match=r"vocab: .*LDA100.*terms") as info:
        extract.fetch_neurosynth(data_dir=tmp_path, vocab="words", url=url)
    assert "version: 3, 4, 5, 6, 7" in str(info.value)
    with pytest.raises(ValueError, match=r"vocb.*\['source', 'vocab', 'type'\]"):
        extract.fetch_neurosynth(data_dir=tmp_path, vocb="terms", url=url)
    with pytest.raises(  # LDA only for versions 6 and 7
        ValueError, match=r"with version='3': source=abstract vocab=terms type=tfidf$"
    ):
        extract.fetch_neurosynth(data_dir=tmp_path, version="3", vocab="LDA50", url=url)
    with pytest.raises(ValueError, match=r"\['studyset', 'dataset', 'files'\]"):
        extract.fetch_neurosynth(data_dir=tmp_path, vocab="terms", return_type="json", url=url)
    with pytest.raises(ValueError, match="neuroquery6308"):
        extract.fetch_neuroquery(data_dir=tmp_path, vocab="terms", url=url)
    assert not server.hits  # nothing was downloaded


def test_download_cut_short_leaves_no_file_and_the_next_call_succeeds(server, tmp_path):
    url = _serve_neurosynth(server)
    name = "data-neurosynth_version-7_coordinates.tsv.gz"
    server.routes[f"/ns/{name}"] = ((NS / name).read_bytes(), "half")
    folder = tmp_path / "neurosynth"
    with pytest.raises(DownloadError) as info:
        extract.fetch_neurosynth(
            data_dir=tmp_path, source="abstract", vocab="terms", return_type="dataset", url=url
        )
    assert f"{url}{name}" in str(info.value)
    assert str(folder) in str(info.value)
    assert _files_in(folder) == []  # no partial file, no temporary file
    server.routes[f"/ns/{name}"] = (NS / name).read_bytes()  # the server is back
    (dset,) = extract.fetch_neurosynth(
        data_dir=tmp_path, source="abstract", vocab="terms", return_type="dataset", url=url
    )
    _assert_same_dataset(dset, _reference_dataset())
    assert _files_in(folder) == NS_FILES


def test_offline_failure_names_the_url_and_the_cache_folder(closed_port_url, tmp_path):
    with pytest.raises(DownloadError, match="offline") as info:
        extract.fetch_neurosynth(data_dir=tmp_path, vocab="terms", url=closed_port_url)
    message = str(info.value)
    assert closed_port_url + "data-neurosynth_version-7_coordinates.tsv.gz" in message
    assert str(tmp_path / "neurosynth") in message
    assert _files_in(tmp_path / "neurosynth") == []


def test_fetch_neuroquery_reads_its_files(server, tmp_path):
    # the Neurosynth sample served under NeuroQuery's names (the same file format)
    rename = {
        "coordinates.tsv.gz": "coordinates.tsv.gz",
        "metadata.tsv.gz": "metadata.tsv.gz",
        "vocab-terms_source-abstract_type-tfidf_features.npz": (
            "vocab-neuroquery7547_source-abstract_type-count_features.npz"
        ),
        "vocab-terms_vocabulary.txt": "vocab-neuroquery7547_vocabulary.txt",
    }
    for old, new in rename.items():
        data = (NS / f"data-neurosynth_version-7_{old}").read_bytes()
        server.routes[f"/nq/data-neuroquery_version-1_{new}"] = data
    (dset,) = extract.fetch_neuroquery(
        data_dir=tmp_path,
        vocab="neuroquery7547",
        source="abstract",
        return_type="dataset",
        url=f"{server.base}/nq",  # no trailing slash: still the folder
    )
    reference = _reference_dataset()
    pd.testing.assert_frame_equal(dset.coordinates, reference.coordinates)
    labels = reference.annotations.filter(like="terms_abstract_tfidf__")
    ours = dset.annotations.filter(like="neuroquery7547_abstract_count__")
    assert ours.columns.str.removeprefix("neuroquery7547_abstract_count__").tolist() == (
        labels.columns.str.removeprefix("terms_abstract_tfidf__").tolist()
    )
    np.testing.assert_array_equal(ours.to_numpy(), labels.to_numpy())
    assert _files_in(tmp_path / "neuroquery") == sorted(
        f"data-neuroquery_version-1_{new}" for new in rename.values()
    )


def test_an_empty_file_left_by_nimare_is_downloaded_again(server, tmp_path):
    url = _serve_neurosynth(server)
    folder = tmp_path / "neurosynth"
    folder.mkdir()
    (folder / "data-neurosynth_version-7_coordinates.tsv.gz").touch()
    (dset,) = extract.fetch_neurosynth(
        data_dir=tmp_path, vocab="terms", return_type="dataset", url=url
    )
    assert len(dset.coordinates) == 1420


def test_data_dirs_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NIMARE_JAX_SHARED_DATA", raising=False)
    monkeypatch.setenv("NIMARE_JAX_DATA", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert get_data_dirs() == [
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        str(Path("~/.nimare_jax").expanduser()),
    ]
    assert get_data_dirs(tmp_path / "c") == [str(tmp_path / "c")]
    assert extract.utils.get_dataset_dir("x") == str(tmp_path / "a" / "x")


# ------------------------------------------------------------------------------ NeuroStore
def _serve_releases(server, checksum=None, archive=None):
    archive = (FIXTURES / "neurostore-release.tar.gz").read_bytes() if archive is None else archive
    digest = hashlib.sha256(archive).hexdigest() if checksum is None else checksum
    releases = [
        {
            "version": "2026-08",
            "release_type": "monthly",
            "built_at": "2026-08-01T00:00:00Z",
            "download_path": "/files/missing.tar.gz",
        },
        {
            "version": "2026-09",
            "release_type": "monthly",
            "built_at": "2026-09-01T00:00:00Z",
            "study_count": 38,
            "download_path": "/files/neurostore-studyset-2026-09.tar.gz",
            "archive_checksum": digest,
        },
        {
            "version": "nightly",
            "release_type": "nightly",
            "built_at": "2026-11-28T00:00:00Z",
            "download_path": "/files/neurostore-studyset-2026-09.tar.gz",
            "archive_checksum": digest,
        },
    ]
    server.routes["/api/releases/"] = json.dumps({"results": releases}).encode()
    server.routes["/files/neurostore-studyset-2026-09.tar.gz"] = archive
    return f"{server.base}/api/releases/"


def test_fetch_neurostore_release_equals_nimare_reading_it(server, tmp_path):
    url = _serve_releases(server)
    assert [r["version"] for r in extract.fetch_neurostore_releases(url=url)] == [
        "2026-08",
        "2026-09",
        "nightly",
    ]
    studyset = extract.fetch_neurostore(data_dir=tmp_path, url=url)
    expected = json.loads((FIXTURES / "neurostore-release-expected.json").read_text())
    cols = ["id", "x", "y", "z", "z_stat"]
    reference = pd.DataFrame(expected["coordinates"], columns=cols).astype({"id": object})
    got = studyset.coordinates[cols].astype({"id": object, "z_stat": float})
    pd.testing.assert_frame_equal(
        got.sort_values(cols[:4]).reset_index(drop=True),
        reference.sort_values(cols[:4]).reset_index(drop=True),
    )
    document = json.loads((NIMADS / "nimads_studyset.json").read_text())
    first = next(s for s in document["studies"] if s["analyses"])["analyses"][0]
    assert reference["z_stat"].notna().sum() == len(first["points"])  # the fixture's Z values
    sizes = studyset.metadata.set_index("id")["sample_sizes"]
    assert {i: list(v) for i, v in sizes.items()} == expected["sample_sizes"]
    include = studyset.annotations_df.set_index("id").filter(like="include").iloc[:, 0]
    assert include.astype(float).to_dict() == expected["include"]
    # NiMARE 0.22.1 writes the T map as a "t" column and reads only "t__source": kept here
    images = studyset.images.set_index("id")["t"].dropna()
    assert images.to_dict() == {
        "4gjJHCEboH8f-7jAUMpYv9brz": "https://neurovault.org/media/images/1/tstat.nii.gz"
    }
    # what is kept: the extracted tables, not the archive
    assert _files_in(tmp_path / "neurostore") == ["2026-09"]
    assert _files_in(tmp_path / "neurostore" / "2026-09") == ["neurostore-studyset-2026-09"]


def test_fetch_neurostore_real_release_equals_nimare_reading_it(server, tmp_path):
    # NiMARE's packaged NeuroStore release (cut): Talairach foci, point kinds, "<type>__source"
    archive = (FIXTURES / "neurostore-real-release.tar.gz").read_bytes()
    release = {
        "version": "2026-10",
        "release_type": "monthly",
        "built_at": "2026-10-01T00:00:00Z",
        "download_path": "2026-10/download",  # relative to the index
        "archive_checksum": "sha256:" + hashlib.sha256(archive).hexdigest(),
    }
    server.routes["/api/releases/"] = json.dumps([release]).encode()  # a bare list
    server.routes["/api/releases/2026-10/download"] = archive
    studyset = extract.fetch_neurostore(data_dir=tmp_path, url=f"{server.base}/api/releases/")
    expected = json.loads((FIXTURES / "neurostore-real-release-expected.json").read_text())
    cols = ["id", "x", "y", "z"]
    reference = pd.DataFrame(expected["coordinates"], columns=cols).astype({"id": object})
    got = studyset.coordinates[cols].astype({"id": object})
    pd.testing.assert_frame_equal(
        got.sort_values(cols).reset_index(drop=True),
        reference.sort_values(cols).reset_index(drop=True),
        rtol=1e-12,  # Talairach -> MNI in both
    )
    notes = studyset.annotations_df.set_index("id")
    assert len(expected["annotations"]) == 6
    for column, values in expected["annotations"].items():
        assert notes[column].dropna().astype(float).to_dict() == values


def test_fetch_neurostore_reuses_a_cached_release(server, tmp_path):
    url = _serve_releases(server)
    first = extract.fetch_neurostore(
        version="2026-09", data_dir=tmp_path, url=url, return_type="files"
    )
    assert Path(first, "studyset.json").is_file()
    archive = "/files/neurostore-studyset-2026-09.tar.gz"
    assert server.hits[archive] == 1
    assert extract.fetch_neurostore(data_dir=tmp_path, url=url, return_type="files") == first
    assert server.hits[archive] == 1  # "latest" asks the index, not the archive again
    server.routes.clear()  # offline: an explicit version on disk needs no server
    dset = extract.fetch_neurostore(
        version="2026-09", data_dir=tmp_path, url=url, return_type="dataset"
    )
    assert isinstance(dset, Dataset) and len(dset.ids) == 27
    studyset = extract.fetch_neurostore(version="2026-09", data_dir=tmp_path, url=url)
    _assert_same_dataset(dset, studyset.to_dataset())
    assert server.hits["/api/releases/"] == 2


def test_fetch_neurostore_offline(closed_port_url, tmp_path):
    url = closed_port_url + "api/releases/"
    with pytest.raises(DownloadError, match="offline") as info:
        extract.fetch_neurostore(data_dir=tmp_path, url=url)
    assert url in str(info.value) and str(tmp_path / "neurostore") in str(info.value)
    with pytest.raises(DownloadError, match=url):
        extract.fetch_neurostore_releases(url=url)


def test_fetch_neurostore_selects_versions(server, tmp_path):
    url = _serve_releases(server)
    nightly = extract.fetch_neurostore(
        version="nightly", data_dir=tmp_path, url=url, return_type="files"
    )
    assert Path(nightly).parent.name == "nightly"
    with pytest.raises(ValueError, match=r"2027-01.*\['2026-08', '2026-09', 'nightly'\]"):
        extract.fetch_neurostore(version="2027-01", data_dir=tmp_path, url=url)
    with pytest.raises(ValueError, match="return_type"):
        extract.fetch_neurostore(data_dir=tmp_path, url=url, return_type="table")


def test_fetch_neurostore_rejects_a_wrong_checksum(server, tmp_path):
    url = _serve_releases(server, checksum="0" * 64)
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        extract.fetch_neurostore(data_dir=tmp_path, url=url)
    assert "neurostore-studyset-2026-09.tar.gz" in str(info.value)
    assert _files_in(tmp_path / "neurostore") == []
    path = extract.fetch_neurostore(
        data_dir=tmp_path, url=url, return_type="files", verify_checksum=False
    )
    assert Path(path, "studyset.json").is_file()


def test_fetch_neurostore_cut_short_leaves_nothing(server, tmp_path):
    url = _serve_releases(server)
    archive = (FIXTURES / "neurostore-release.tar.gz").read_bytes()
    server.routes["/files/neurostore-studyset-2026-09.tar.gz"] = (archive, "half")
    with pytest.raises(DownloadError, match="neurostore-studyset-2026-09.tar.gz"):
        extract.fetch_neurostore(data_dir=tmp_path, url=url)
    assert _files_in(tmp_path / "neurostore") == []
    server.routes["/files/neurostore-studyset-2026-09.tar.gz"] = archive
    assert len(extract.fetch_neurostore(data_dir=tmp_path, url=url).ids) == 27


def test_reading_a_release_without_pyarrow_names_it(server, tmp_path, monkeypatch):
    url = _serve_releases(server)
    path = extract.fetch_neurostore(data_dir=tmp_path, url=url, return_type="files")
    monkeypatch.setattr(neurostore_module, "pyarrow", None)
    with pytest.raises(ImportError, match=r"nimare_jax\[parquet\]"):
        extract.fetch_neurostore(data_dir=tmp_path, url=url)
    assert Path(path, "studies.parquet").is_file()


def test_fetch_neurostore_studyset_reads_the_api(server):
    document = (NIMADS / "nimads_studyset.json").read_bytes()
    annotation = (NIMADS / "nimads_annotation.json").read_bytes()
    server.routes["/api/studysets/Cv2LLUqG76W9?nested=true"] = document
    server.routes["/api/annotations/76PyNqoTNEsE"] = annotation
    got = fetch_neurostore_studyset(
        "Cv2LLUqG76W9", annotation_id="76PyNqoTNEsE", url=f"{server.base}/api"
    )
    expected = Studyset(json.loads(document), annotations=[json.loads(annotation)])
    pd.testing.assert_frame_equal(got.coordinates, expected.coordinates)
    pd.testing.assert_frame_equal(got.annotations_df, expected.annotations_df)
    with pytest.raises(DownloadError, match=r"HTTP 404.*|.*/api/studysets/nope\?nested=true"):
        fetch_neurostore_studyset("nope", url=f"{server.base}/api")


# -------------------------------------------------------------------------- Cognitive Atlas
def test_download_cognitive_atlas_equals_nimare_on_recorded_answers(server, tmp_path):
    responses = json.loads((FIXTURES / "cogat_responses.json").read_text())
    for key, payload in responses.items():
        server.routes[f"/api/v-alpha/{key}"] = json.dumps(payload).encode()
    out = extract.download_cognitive_atlas(data_dir=tmp_path, url=f"{server.base}/api/v-alpha")
    folder = tmp_path / "cognitive_atlas"
    assert out == {
        "ids": str(folder / "cogat_aliases.csv"),
        "relationships": str(folder / "cogat_relationships.csv"),
    }
    rels = pd.read_csv(out["relationships"])
    pd.testing.assert_frame_equal(rels, pd.read_csv(FIXTURES / "cogat_relationships.csv"))
    aliases = pd.read_csv(out["ids"])
    # NiMARE 0.22.1 drops a lone alias (no comma in the field): "RS" of response selection
    lone = (aliases["id"] == "trm_rs") & (aliases["alias"] == "rs")
    assert lone.sum() == 1
    assert aliases.loc[lone, ["length", "ratio"]].values.tolist() == [[2, 20]]
    cols = list(aliases.columns)
    pd.testing.assert_frame_equal(
        aliases[~lone].sort_values(cols).reset_index(drop=True),
        pd.read_csv(FIXTURES / "cogat_aliases.csv").sort_values(cols).reset_index(drop=True),
    )
    lengths = aliases["length"].to_numpy()
    assert (np.diff(lengths) <= 0).all()  # longest first, as the annotator needs them
    hits = sum(server.hits.values())
    extract.download_cognitive_atlas(data_dir=tmp_path, url=f"{server.base}/api/v-alpha")
    assert sum(server.hits.values()) == hits  # on disk: not asked again


def test_the_annotator_reads_the_download(server, tmp_path, monkeypatch):
    responses = json.loads((FIXTURES / "cogat_responses.json").read_text())
    for key, payload in responses.items():
        server.routes[f"/api/v-alpha/{key}"] = json.dumps(payload).encode()
    monkeypatch.delenv("NIMARE_JAX_SHARED_DATA", raising=False)
    monkeypatch.setenv("NIMARE_JAX_DATA", str(tmp_path))
    extract.download_cognitive_atlas(url=f"{server.base}/api/v-alpha")
    text = "Working memory (WM) was tested with an n-back task; response selection (RS) and "
    text_df = pd.DataFrame({"id": ["a"], "abstract": [text + "the stop signal task."]})
    counts, _ = extract_cogat(text_df)
    # by hand: each alias counted once, longest first; "RS" is found thanks to the lone alias
    assert counts.loc["a"].to_dict() == {
        "dso_adhd": 0,
        "trm_att": 0,
        "trm_bi": 0,
        "trm_rs": 2,
        "trm_wm": 2,
        "tsk_nback": 1,
        "tsk_sst": 1,
    }


def test_download_cognitive_atlas_failure_writes_nothing(server, tmp_path):
    responses = json.loads((FIXTURES / "cogat_responses.json").read_text())
    for key, payload in responses.items():
        if key != "task?id=tsk_sst":
            server.routes[f"/api/v-alpha/{key}"] = json.dumps(payload).encode()
    with pytest.raises(DownloadError, match=r"task\?id=tsk_sst.*HTTP 404"):
        extract.download_cognitive_atlas(data_dir=tmp_path, url=f"{server.base}/api/v-alpha")
    assert _files_in(tmp_path / "cognitive_atlas") == []


# ------------------------------------------------------------------------------ NeuroVault
def _image_bytes(value):
    img = nib.Nifti1Image(np.full((2, 3, 2), value, dtype=np.float32), np.eye(4))
    return gzip.compress(img.to_bytes(), mtime=0)  # the same bytes at every call


def _serve_neurovault(server):
    listings = json.loads((FIXTURES / "neurovault_images.json").read_text())
    images = {}
    for path, page in listings.items():
        if path.startswith("/"):
            text = json.dumps(page).replace("{base}", server.base)
            server.routes[path] = text.encode()
            for record in json.loads(text)["results"]:
                images[record["id"]] = _image_bytes(record["id"])
                server.routes[urllib.parse.urlparse(record["file"]).path] = images[record["id"]]
    return images


def test_convert_neurovault_to_dataset_with_recorded_listings(server, tmp_path):
    images = _serve_neurovault(server)
    contrasts = {"animal": "as-Animal", "tool": "as-Tool"}
    with pytest.warns(UserWarning, match=r"sample sizes \[20, 21\]; the most common, 20"):
        dset = convert_neurovault_to_dataset(
            {"one": 1000, "two": 2000}, contrasts, img_dir=tmp_path, url=server.base
        )
    folder = tmp_path / "animal_tool"
    assert list(dset.ids) == [
        "study-one-animal",
        "study-one-tool",
        "study-two-animal",
        "study-two-tool",
    ]
    table = dset.images.set_index("id")
    expected = {
        ("study-one-animal", "t"): (1000, 11, "animal_tstat.nii.gz"),
        ("study-one-animal", "varcope"): (1000, 13, "animal_var.nii.gz"),
        ("study-one-animal", "beta"): (1000, 14, "animal_beta.nii.gz"),
        ("study-one-tool", "z"): (1000, 15, "tool_zstat.nii.gz"),
        ("study-two-animal", "t"): (2000, 21, "animal_tstat.nii.gz"),
        ("study-two-tool", "z"): (2000, 22, "tool_zstat.nii.gz"),
    }
    for (exp_id, column), (collection, image_id, name) in expected.items():
        path = Path(table.loc[exp_id, column])
        assert path == folder / f"collection-{collection}_id-{image_id}_{name}"
        assert path.read_bytes() == images[image_id]
    assert table.loc["study-one-tool", ["t", "varcope", "beta"]].isna().all()
    sizes = dset.metadata.set_index("id")["sample_sizes"]
    assert [list(sizes[i]) for i in dset.ids] == [[20], [18], [30], [30]]
    # the single-subject map and the mask were not downloaded
    assert server.hits["/media/images/1000/animal_sub01.nii.gz"] == 0
    assert server.hits["/media/images/1000/tool_mask.nii.gz"] == 0
    hits = server.hits["/media/images/1000/animal_tstat.nii.gz"]
    with pytest.warns(UserWarning, match="most common"):
        convert_neurovault_to_dataset([1000], contrasts, img_dir=tmp_path, url=server.base)
    assert server.hits["/media/images/1000/animal_tstat.nii.gz"] == hits  # reused


def test_convert_neurovault_to_dataset_equals_nimare_on_one_page(server, tmp_path):
    _serve_neurovault(server)
    expected = json.loads((FIXTURES / "neurovault-expected.json").read_text())
    dset = convert_neurovault_to_dataset(
        {"two": 2000},
        {"animal": "as-Animal", "tool": "as-Tool"},
        img_dir=tmp_path,
        url=server.base,
    )
    assert list(dset.ids) == expected["ids"]
    images = dset.images.set_index("id")
    for exp_id, columns in expected["images"].items():
        assert {
            c: Path(v).name
            for c, v in images.loc[exp_id].items()
            if isinstance(v, str)
            and c not in ("study_id", "contrast_id")
            and not c.endswith("__relative")  # as the fixture script records them
        } == columns
    sizes = dset.metadata.set_index("id")["sample_sizes"]
    assert {i: list(v) for i, v in sizes.items()} == expected["sample_sizes"]


def test_convert_neurovault_to_dataset_errors(server, tmp_path):
    _serve_neurovault(server)
    with pytest.raises(DownloadError, match=r"/api/collections/3000/images/\?format=json.*404"):
        convert_neurovault_to_dataset(
            [3000], {"animal": "as-Animal"}, img_dir=tmp_path, url=server.base
        )
    assert server.hits["/api/collections/3000/images/?format=json"] == 1  # 404: not retried
    listing = "/api/collections/2000/images/?format=json"
    server.routes[listing] = (server.routes[listing], "busy-once")
    dset = convert_neurovault_to_dataset(
        [2000], {"animal": "as-Animal"}, img_dir=tmp_path, url=server.base
    )
    assert server.hits[listing] == 2 and list(dset.ids) == ["study-2000-animal"]  # retried
    with pytest.raises(DatasetError, match=r"collection 2000.*'face'"):
        convert_neurovault_to_dataset(
            [2000], {"face": "as-Face"}, img_dir=tmp_path, url=server.base
        )


# -------------------------------------------------------------------------------- PubMed
EXPECTED_ABSTRACTS = {
    "9065511": "We used fMRI to study environmental knowledge.",
    "9084599": "BACKGROUND: Motor learning engages frontal cortex. "
    "RESULTS: PET showed changes with practice.",
}


def test_download_abstracts_reads_efetch_records(server, monkeypatch):
    server.routes["/efetch"] = (FIXTURES / "pubmed_efetch.xml").read_bytes()
    pmids = ["9065511", "9084599", "9114263"]
    table = extract.download_abstracts(pmids, "me@example.org", url=f"{server.base}/efetch")
    assert dict(zip(table["study_id"], table["abstract"], strict=True)) == EXPECTED_ABSTRACTS
    ((path, form),) = server.posts
    assert form["db"] == ["pubmed"] and form["retmode"] == ["xml"]
    assert form["id"] == [",".join(pmids)] and form["email"] == ["me@example.org"]
    monkeypatch.setattr(extract_module, "PUBMED_CHUNK", 2)
    extract.download_abstracts(pmids, "me@example.org", url=f"{server.base}/efetch")
    assert [f["id"] for _, f in server.posts[1:]] == [["9065511,9084599"], ["9114263"]]


def test_download_abstracts_adds_a_texts_column(server):
    server.routes["/efetch"] = (FIXTURES / "pubmed_efetch.xml").read_bytes()
    dset = _reference_dataset()
    out = extract.download_abstracts(dset, "me@example.org", url=f"{server.base}/efetch")
    assert out is dset
    abstracts = dset.texts.set_index("study_id")["abstract"]
    assert abstracts.dropna().to_dict() == EXPECTED_ABSTRACTS
    assert abstracts.isna().sum() == 18
    studyset = extract.download_abstracts(
        Studyset.from_dataset(_reference_dataset()), "me@example.org", url=f"{server.base}/efetch"
    )
    texts = studyset.texts.set_index("study_id")["abstract"]
    assert texts.dropna().to_dict() == EXPECTED_ABSTRACTS
    with pytest.raises(TypeError, match="list of PMIDs"):
        extract.download_abstracts("9065511", "me@example.org", url=f"{server.base}/efetch")


# ------------------------------------------------------------------------------ NIDM pain
def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_download_nidm_pain_unpacks_the_packs(server, tmp_path):
    packs = {
        f"collection_1425/pain_{i:02d}.nidm.zip": _zip({"TStatistic.nii.gz": _image_bytes(i)})
        for i in (1, 2)
    }
    server.routes["/collections/1425/download"] = _zip(packs)
    url = f"{server.base}/collections/1425/download"
    folder = extract.download_nidm_pain(data_dir=tmp_path, url=url)
    assert folder == str(tmp_path / "nidm_21pain")
    assert _files_in(Path(folder)) == ["description.txt", "pain_01.nidm", "pain_02.nidm"]
    assert Path(folder, "pain_02.nidm", "TStatistic.nii.gz").read_bytes() == _image_bytes(2)
    assert extract.download_nidm_pain(data_dir=tmp_path, url=url) == folder
    assert server.hits["/collections/1425/download"] == 1


def test_download_nidm_pain_bad_archive_keeps_nothing(server, tmp_path):
    server.routes["/collections/1425/download"] = b"<html>maintenance</html>"
    with pytest.raises(DownloadError, match="not a valid zip file"):
        extract.download_nidm_pain(
            data_dir=tmp_path, url=f"{server.base}/collections/1425/download"
        )
    assert _files_in(tmp_path / "nidm_21pain") == []
