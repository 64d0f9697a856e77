"""``POST /validate`` single-file mode and malformed text over HTTP (review D6, D10): the result
itself is narrowed before it is rendered in any format or recorded; a string that is not valid
Unicode is a 400, never a 500."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .docs_helpers import REPO, repo_files
from .test_http_validate import client, scope_files, token

MD = {"content-type": "text/markdown"}


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    with client(tmp_path_factory.mktemp("single")) as c:
        yield c


def post_one(c, name, text, fmt="json"):
    return c.post(f"/validate?file={name}&format={fmt}", content=text.encode(), headers=MD)


@pytest.mark.parametrize("name", ["CANON.md", "LEARNING.md", "VOCAB.md", "VASTAI.md", "README.md"])
def test_single_valid_file_is_consistent(c, name):
    body = post_one(c, name, repo_files()[name]).json()
    assert body["mode"] == "single-file" and "single-file" in body["note"]
    assert body["valid"] is True and body["score"] == 255 and all(body["bits"].values()), body["findings"]
    assert all(f["file"] == name for f in body["findings"])
    assert not [f for f in body["findings"] if f["severity"] == "error"]


def test_single_spec_file_takes_its_scope_name(c):
    body = post_one(c, "VASTAI.md", repo_files()["VASTAI.md"]).json()
    assert body["scope"] == "VASTAI"
    assert not [f for f in body["findings"] if f["code"] == "LITERAL_ENDPOINT"]


def test_every_format_renders_the_narrowed_result(c):
    canon = repo_files()["CANON.md"]
    assert post_one(c, "CANON.md", canon, "github").text.strip().endswith(
        "(single-file: findings, valid, score and bits judge this one file's own findings)"
    )
    gh = post_one(c, "CANON.md", canon, "github").text
    assert "::error" not in gh and "score 255/255, 0 error(s)" in gh
    txt = post_one(c, "CANON.md", canon, "text").text
    assert "score: 255/255" in txt and "mode: single-file" in txt and txt.rstrip().endswith("valid")
    sarif = json.loads(post_one(c, "CANON.md", canon, "sarif").text)
    run = sarif["runs"][0]
    assert run["properties"]["mode"] == "single-file" and run["properties"]["score"] == 255
    assert all(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "CANON.md" for r in run["results"]
    )
    assert 'failures="0"' in post_one(c, "CANON.md", canon, "junit").text


def test_invalid_single_file_score_matches_its_bits_in_every_format(c):
    bad = repo_files()["CANON.md"].replace("MUST: Route through governed gateway (check: route_declared)", "MUST:")
    body = post_one(c, "CANON.md", bad).json()
    errs = [f for f in body["findings"] if f["severity"] == "error"]
    assert body["valid"] is False and [f["code"] for f in errs] == ["MALFORMED_CONSTRAINT"]
    values = {"DECLARE": 1, "VOCAB": 2, "TEMPORAL": 4, "RELATIONAL": 8, "OPERATIONS": 16, "STRUCTURE": 32,
              "LEARNING": 64, "INHERITED": 128}
    assert body["score"] == sum(v for k, v in values.items() if body["bits"][k]) < 255
    txt = post_one(c, "CANON.md", bad, "text").text
    assert f"score: {body['score']}/255" in txt and "INVALID" in txt
    assert txt.count(" error ") == 1
    gh = post_one(c, "CANON.md", bad, "github").text
    assert gh.count("::error") == 1 and f"score {body['score']}/255, 1 error(s)" in gh


def test_single_file_validation_is_recorded_narrowed(c):
    post_one(c, "LEARNING.md", repo_files()["LEARNING.md"])
    summary = c.get("/governance", headers=token(c)).json()
    rec = summary["last_request_validation"]
    assert rec["mode"] == "single-file" and rec["valid"] is True and rec["counts"]["error"] == 0
    assert summary["last_validation"]["mode"] == "scope" and summary["last_validation"]["score"] == 255


@pytest.mark.parametrize(
    "body",
    [
        b'{"files": {"CANON.md": "\\ud800"}}',
        b'{"files": {"CANON.md": "ok \\udfff MUST: x"}}',
        b'{"files": {"CANON.md": "x"}, "previous": {"LEARNING.md": "\\udfff"}}',
    ],
)
def test_lone_surrogate_is_400(c, body):
    r = c.post("/validate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_encoding", r.text


NAMES = st.sampled_from(["CANON.md", "VOCAB.md", "README.md", "LEARNING.md", "VASTAI.md", "a/CANON.md"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    files=st.dictionaries(NAMES | st.text(max_size=12), st.text(alphabet=st.characters(), max_size=200), max_size=4),
    previous=st.none() | st.dictionaries(NAMES, st.text(alphabet=st.characters(), max_size=80), max_size=2),
)
def test_fuzzed_bodies_answer_200_or_400(c, files, previous):
    doc = {"files": files} if previous is None else {"files": files, "previous": previous}
    r = c.post("/validate", content=json.dumps(doc).encode(), headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
    surrogate = any(re.search("[\ud800-\udfff]", t) for t in [*files.values(), *(previous or {}).values()])
    if r.status_code == 200:
        assert not surrogate and set(r.json()) >= {"valid", "score", "bits", "findings"}


def test_whole_scope_is_still_255(c):
    body = c.post("/validate", json={"files": scope_files()}).json()
    assert body["valid"] and body["score"] == 255 and body["mode"] == "scope"
    assert REPO.is_dir()
