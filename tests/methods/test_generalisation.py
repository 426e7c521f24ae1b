"""Notebook 04's machinery: pools, classifier scoring on several sets, the Table-1 analogue, judge agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hneuron_utils import stats
from hneuron_utils.probes import generalisation as G, probe
from hneuron_utils.data import DataError
from hneuron_utils.judges import RuleJudge, agreement as A
from hneuron_utils.data.nonexist import ABSTAIN_ANSWER, AbstentionJudge
from hneuron_utils.paths import project_root
from hneuron_utils.workbook import readouts

SHARED_BIOASQ = project_root().parent / "shared" / "data" / "bioasq" / "bioasq13b_factoid.jsonl"


def test_pools_have_the_right_judges_and_sources():
    nq = G.load_pool("nq_open")
    assert nq.label == "NQ-Open" and isinstance(nq.judge, RuleJudge) and len(nq.records) > 3000
    assert nq.info["leak: questions"] == len(nq.records) + nq.info["leak: dropped"]
    sub = G.load_pool("nq_open", pool_size=50, seed=3)
    assert len(sub.records) <= 50 and sub.info["subset"].startswith("50 of")
    assert [r.id for r in sub.records] == [r.id for r in G.load_pool("nq_open", pool_size=50, seed=3).records]
    bio = G.load_pool("biomed")
    assert bio.label == "biomedical (stand-in)" and all(r.source == "biomed_standin" for r in bio.records)
    large = G.load_pool("biomed", biomed_source=G.STANDIN_LARGE)
    assert large.label == bio.label and [r.id for r in large.records[:len(bio.records)]] == [r.id for r in bio.records]
    assert {r.source for r in large.records[len(bio.records):]} == {"biomed_vignettes"}
    assert large.info["short questions"] + large.info["vignette questions"] == len(large.records)
    ne = G.load_pool("nonexist", nonexist_size=30, seed=1)
    assert isinstance(ne.judge, AbstentionJudge) and len(ne.records) == 30
    assert all(r.answers == (ABSTAIN_ANSWER,) for r in ne.records)
    assert [r.id for r in ne.records] == [r.id for r in G.load_pool("nonexist", nonexist_size=30, seed=1).records]
    assert not {r.id for r in ne.records} & {r.id for r in G.load_pool("nonexist", nonexist_size=30, seed=2).records}
    with pytest.raises(DataError, match="Unknown generalisation set"):
        G.load_pool("bioasq")
    with pytest.raises(DataError, match="not found"):
        G.load_pool("biomed", biomed_source="/nonexistent/bioasq.json")


@pytest.mark.skipif(not SHARED_BIOASQ.exists(), reason="BioASQ file not present (not redistributable)")
def test_real_bioasq_pool():
    p = G.load_pool("biomed", biomed_source=str(SHARED_BIOASQ))
    assert p.label == "BioASQ" and len(p.records) > 100 and all(r.source == "bioasq" for r in p.records)


def _synthetic(n: int, seed: int, signal: float):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 40)).astype(np.float32)
    X[:, :3] += signal * y[:, None]
    return X, y


def _classifiers():
    X, y = _synthetic(200, 0, 1.5)
    h = probe.fit_subset(X, None, y, [0, 1, 2], "1-vs-1")
    rand = probe.random_classifiers(X, None, y, 3, 4, mode="1-vs-1", exclude=[0, 1, 2])
    return {"h_neurons": h, **{f"random_{d}": c for d, c in enumerate(rand)}}


def test_evaluate_sets_scores_h_and_random_and_handles_an_empty_class():
    clfs = _classifiers()
    Xa, ya = _synthetic(120, 1, 1.5)
    Xb, yb = _synthetic(10, 2, 1.5)
    res = G.evaluate_sets(clfs, {"A": (Xa, ya), "B": (Xb[yb == 1], yb[yb == 1])}, n_bootstrap=200, seed=0)
    assert list(res["set"]) == ["A", "A", "B", "B"]
    a_h, a_r = res.iloc[1], res.iloc[0]
    assert a_h.classifier == "H-neurons" and a_r.classifier.startswith("random")
    assert a_h.auroc > 0.85 and a_h.auroc_lo < a_h.auroc < a_h.auroc_hi and 0.3 < a_r.auroc < 0.7
    assert a_h.accuracy == stats.evaluate(ya, clfs["h_neurons"](Xa))["accuracy"]
    draws = [stats.evaluate(ya, clfs[f"random_{d}"](Xa))["auroc"] for d in range(4)]
    assert a_r.auroc == pytest.approx(np.mean(draws))
    assert res.iloc[3][["accuracy", "auroc"]].isna().all() and res.iloc[3]["n faithful"] == 0
    with pytest.raises(ValueError, match="h_neurons"):
        G.evaluate_sets({"h_neurons": clfs["h_neurons"]}, {"A": (Xa, ya)}, 10, 0)


def test_table1_has_one_row_per_classifier_and_columns_per_set():
    clfs = _classifiers()
    Xa, ya = _synthetic(60, 1, 1.5)
    res = G.evaluate_sets(clfs, {"TriviaQA": (Xa, ya), "NonExist": (Xa[:0], ya[:0])}, 100, 0)
    t = G.table1(res, "m", 0.1234, ["TriviaQA", "NonExist"])
    assert list(t.classifier) == ["random neurons", "H-neurons"] and (t["‰"] == 0.123).all()
    assert t.loc[1, "TriviaQA acc"] == res.iloc[1].accuracy and t.loc[1, "TriviaQA n per class"] == 30
    assert t.loc[1, "NonExist acc 95% CI"] == "—" and t.loc[1, "NonExist n per class"] == 0


def test_judge_agreement_counts_and_kappa():
    df = pd.DataFrame({"question": ["Who makes Zorvaxiline?"] * 4,
                       "response": ["I don't know.", "Pfizer.", "I'm not aware of such a medicine.", "Bayer"],
                       "faithful": [True, False, True, True]})
    a = A.judge_agreement(AbstentionJudge(), df)
    assert a["responses"] == 4 and a["judge agrees"] == 3 and a["judge hallucinated, reference faithful"] == 1
    assert a["agreement"] == 0.75 and a["Cohen's kappa"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        A.judge_agreement(AbstentionJudge(), df.iloc[:0])


def test_set_summary_says_why_a_set_is_small():
    looked = pd.DataFrame({"label": ["faithful"] * 2 + ["hallucinated"] * 5 + ["not sampled"] * 3,
                           "sampled": [True] * 7 + [False] * 3, "greedy_correct": [True] * 2 + [False] * 8})
    s = G.set_summary(looked, {"test per class": 2}, 4, 10)
    assert s["faithful"] == 2 and s["hallucinated"] == 5 and s["sampled"] == 7 and s["test per class"] == 2
    assert "2 faithful" in s["why smaller"] and "hallucinated" not in s["why smaller"]
    assert G.set_summary(looked, {"test per class": 2}, 2, 10)["why smaller"] == ""


def test_hand_labels_file_is_valid_and_the_judge_agrees_with_it():
    """The committed reference labels (real default-model responses): the judge must agree on ≥ 90%."""
    path = project_root() / "data" / "labels" / "nonexist_abstention.jsonl"
    if not path.exists():
        pytest.skip("no reference labels committed yet")
    df = A.read_reference_labels(path)
    assert len(df) >= 60 and df.faithful.map(type).eq(bool).all()
    assert A.judge_agreement(AbstentionJudge(), df)["agreement"] >= 0.9


def test_flag_rates_per_class():
    clfs = _classifiers()
    X, y = _synthetic(200, 3, 1.5)
    t = G.flag_rates(clfs, {("A", "hallucinated"): X[y == 1], ("A", "faithful"): X[y == 0],
                            ("B", "faithful"): X[:0]}, n_bootstrap=200, seed=0)
    hal, fai, empty = t.iloc[0], t.iloc[1], t.iloc[2]
    assert hal.n == 100 and hal["H flagged"] > 0.7 and fai["H flagged"] < 0.3
    assert hal["H lo"] <= hal["H flagged"] <= hal["H hi"] and 0.2 < hal["random flagged"] < 0.8
    assert hal["H flagged"] == (clfs["h_neurons"](X[y == 1]) > 0.5).mean()
    assert empty.n == 0 and np.isnan(empty["H flagged"])


def test_answer_features_drops_examples_without_answer_tokens(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    ex = pd.DataFrame([{"id": "a", "question": "Capital of France?", "response": "It is Paris.", "span": [6, 11], "label": 0},
                       {"id": "b", "question": "Who?", "response": "", "span": None, "label": 1},
                       {"id": "c", "question": "Who?", "response": "Nobody", "span": None, "label": 1}])
    kept, ans, lost, _ = G.answer_features(tiny, ex, batch_size=2, progress=False)
    assert kept.id.tolist() == ["a", "c"] and [i for i, _ in lost] == ["b"]
    assert ans.shape == (2, tiny.n_layers * tiny.d_ff) and ans.dtype == np.float32 and (ans > 0).any()
    empty, a0, _, _ = G.answer_features(tiny, ex.iloc[:0], batch_size=2)
    assert empty.empty and a0.shape == (0, tiny.n_layers * tiny.d_ff)


SYSTEM = "Answer only if you know. Otherwise say I don't know."


def test_system_turn_reaches_the_prompt_and_the_stage_keys(tiny):
    from hneuron_utils.data import labelling as L
    from hneuron_utils.text.generation import question_prompt

    plain, sys_ = question_prompt(tiny.tokenizer, "Who?"), question_prompt(tiny.tokenizer, "Who?", system=SYSTEM)
    assert SYSTEM not in plain and SYSTEM in sys_ and sys_.rstrip().endswith(plain.rstrip().split("Who?")[-1].rstrip())
    with pytest.raises(ValueError, match="chat style"):
        question_prompt(tiny.tokenizer, "Who?", "base", system=SYSTEM)
    assert L._style_key("chat") == {} and L._style_key("chat", None) == {}  # the paper-prompt caches keep their keys
    assert L._style_key("chat", SYSTEM) == {"system": SYSTEM} and L._style_key("base") == {"style": "base"}


def test_greedy_answers_under_a_system_turn_are_cached_apart(tiny, tmp_path, monkeypatch):
    from hneuron_utils.data import QARecord
    from hneuron_utils.data import labelling as L
    from hneuron_utils.text.generation import Sampling, question_prompt, sample_many

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    recs = [QARecord("q1", "Who wrote Hamlet?", ("Shakespeare",), "t"), QARecord("q2", "Capital of Peru?", ("Lima",), "t")]
    plain = L.greedy_answers(tiny, recs, 6, 4, progress=False)
    sys_ = L.greedy_answers(tiny, recs, 6, 4, progress=False, system=SYSTEM)
    ref = sample_many(tiny, [question_prompt(tiny.tokenizer, r.question, system=SYSTEM) for r in recs], 1,
                      Sampling(max_new_tokens=6), batch_size=4, progress=False)
    assert [sys_[r.id]["text"] for r in recs] == [o[0].text for o in ref]
    assert plain != sys_  # the tiny random model answers differently once the context differs
    assert len(list((tmp_path / "stages" / "greedy").iterdir())) == 2


def test_two_nonexist_pools_share_questions_not_prompts():
    ne = G.load_pool("nonexist", nonexist_size=20, seed=0, nonexist_system_prompt=SYSTEM)
    paper = G.load_pool("nonexist_paper", nonexist_size=20, seed=0, nonexist_system_prompt=SYSTEM)
    assert ne.system == SYSTEM and paper.system is None
    assert ne.label == "NonExist (abstention allowed)" and paper.label == "NonExist (paper prompt)"
    assert [r.id for r in ne.records] == [r.id for r in paper.records]
    only = G.load_pool("nonexist", nonexist_size=20, seed=0)
    assert only.system is None and only.label == "NonExist"
    assert G.load_pool("nq_open", pool_size=10).system is None


def test_set_summary_counts_the_papers_rule_and_states_the_ceiling():
    looked = pd.DataFrame({"label": ["faithful", "faithful", "hallucinated", "mixed", "not sampled"],
                           "sampled": [True] * 4 + [False], "greedy_correct": [True, True, False, True, False],
                           "n_drawn": [10, 10, 10, 3, np.nan], "n_correct": [10, 8, 0, 1, np.nan]})
    s = G.set_summary(looked, {"test per class": 1}, 2, 5, n_samples=10)
    assert s["all 10 of 10 correct"] == 1 and s["faithful"] == 2
    assert s["why smaller"].startswith("measured ceiling: the whole pool (5 questions, 3 with a faithful greedy answer)")
    assert "1 hallucinated" in s["why smaller"] and "faithful" not in s["why smaller"].split("yields")[1].split("(")[0]
    assert "greedy screen" in s["why smaller"]
    part = G.set_summary(looked, {"test per class": 1}, 2, 50, n_samples=10)
    assert "5 questions looked at" in part["why smaller"]


def test_read_transfer_says_transfers_only_above_chance():
    def res(lo, hi):
        base = {"set": "S", "n faithful": 40, "n hallucinated": 40, "accuracy": 0.6}
        return [{**base, "classifier": "random", "auroc": 0.55, "auroc_lo": 0.5, "auroc_hi": 0.6},
                {**base, "classifier": "H-neurons", "auroc": (lo + hi) / 2, "auroc_lo": lo, "auroc_hi": hi}]
    up = readouts.read_transfer(pd.DataFrame(res(0.62, 0.8)))[0]
    assert "transfers (interval above chance)" in up and "above random" in up and "n = 40 + 40" in up
    flat = readouts.read_transfer(pd.DataFrame(res(0.45, 0.7)))[0]
    assert "does not transfer detectably" in flat and "not separable from random" in flat
    assert "below chance" in readouts.read_transfer(pd.DataFrame(res(0.2, 0.45)))[0]
    few = pd.DataFrame(res(1.0, 1.0)).assign(**{"n faithful": 1})
    assert "too few to read" in readouts.read_transfer(few)[0] and "transfers" not in readouts.read_transfer(few)[0]


def test_agreement_by_prompt_and_its_verdicts():
    rows = [{"question": "Who made Zorbax?", "response": r, "faithful": f, "prompt": p}
            for r, f, p in [("Pfizer", False, None), ("Merck", False, None), ("I don't know", True, "abstention allowed"),
                            ("Bayer", False, "abstention allowed"), ("I don't know.", True, "abstention allowed")]]
    t = G.agreement_by_prompt(AbstentionJudge(), pd.DataFrame(rows))
    assert t.prompt.tolist() == ["abstention allowed", "paper", "all"] and t.responses.tolist() == [3, 2, 5]
    assert "NOT validated" in readouts.read_judge(t, "paper") and "one class" in readouts.read_judge(t, "paper")
    assert "→ validated" in readouts.read_judge(t, "abstention allowed") and "κ = 1.00" in readouts.read_judge(t, "abstention allowed")
    assert "no reference labels" in readouts.read_judge(t, "other")
    wrong = pd.DataFrame(rows).assign(faithful=lambda d: ~d.faithful.astype(bool))
    assert "NOT validated" in readouts.read_judge(G.agreement_by_prompt(AbstentionJudge(), wrong), "abstention allowed")


def test_the_committed_abstention_labels_validate_the_judge_under_the_system_turn():
    path = project_root() / "data" / "labels" / "nonexist_abstention.jsonl"
    t = G.agreement_by_prompt(AbstentionJudge(), A.read_reference_labels(path))
    row = t[t.prompt == "abstention allowed"].iloc[0]
    assert row.responses >= 100 and min(row["reference: faithful"], row["reference: hallucinated"]) >= 20
    assert row["Cohen's kappa"] >= 0.6


def test_abstention_by_class_and_its_reading(tiny, tmp_path, monkeypatch):
    from hneuron_utils.data import labelling as L

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    test = pd.DataFrame({"id": [f"q{i}" for i in range(6)], "question": [f"Question {i}?" for i in range(6)],
                         "answers": [["Paris"]] * 6, "class": ["faithful"] * 3 + ["hallucinated"] * 3})
    t = G.abstention_by_class(tiny, test, SYSTEM, 4, 8, n_bootstrap=200, seed=0)  # the real path, tiny model
    assert t["class (notebook 01)"].tolist() == ["faithful", "hallucinated", "hallucinated − faithful"]
    texts = {"q0": "Paris", "q1": "Paris.", "q2": "I don't know", "q3": "I don't know.", "q4": "I don't know", "q5": "Rome"}
    seen = {}

    def fake(loaded, recs, max_new_tokens, batch_size, progress=True, system=None, **kw):
        seen["system"] = system
        return {r.id: {"text": texts[r.id], "stopped": True} for r in recs}

    monkeypatch.setattr(L, "greedy_answers", fake)
    t = G.abstention_by_class(tiny, test, SYSTEM, 4, 8, n_bootstrap=500, seed=0)
    assert seen["system"] == SYSTEM and t.n.tolist() == [3, 3, 6]
    assert np.allclose(t.abstains[:2], [1 / 3, 2 / 3]) and np.isclose(t.abstains[2], 1 / 3)
    assert np.allclose(t["answers correctly"][:2], [2 / 3, 0])
    assert t["abstains lo"][2] <= 1 / 3 <= t["abstains hi"][2]
    fake = pd.DataFrame([{"abstains": 0.1, "abstains lo": 0.0, "abstains hi": 0.2, "n": 50},
                         {"abstains": 0.5, "abstains lo": 0.4, "abstains hi": 0.6, "n": 50},
                         {"abstains": 0.4, "abstains lo": 0.25, "abstains hi": 0.55, "n": 100}])
    assert "more often on the questions it hallucinates on" in readouts.read_abstention(fake)
    fake.loc[2, ["abstains lo"]] = -0.05
    assert "no detectable difference" in readouts.read_abstention(fake)


def test_check_datasets_and_labels_for():
    G.check_datasets(["nonexist", "nonexist_paper"], SYSTEM)
    G.check_datasets(["nonexist"], None)
    with pytest.raises(ValueError, match="same set"):
        G.check_datasets(["nonexist", "nonexist_paper"], None)
    lab = pd.DataFrame({"system": [None, SYSTEM, "another turn"], "faithful": [False, True, True]})
    assert G.labels_for(lab, SYSTEM).index.tolist() == [0, 1]
    assert G.labels_for(lab, None).index.tolist() == [0]
    assert G.labels_for(lab.drop(columns="system"), SYSTEM).index.tolist() == [0, 1, 2]


def test_paired_auroc_shift_and_its_words():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    a = (y + rng.normal(0, 0.5, 120))[:, None]
    clf = lambda x: x[:, 0]  # noqa: E731
    same = G.paired_auroc_shift(clf, a, a, y, 300, seed=0)
    assert same["difference"] == 0 and same["difference lo"] == 0 and same["difference hi"] == 0
    assert "no detectable change" in readouts.read_shift(same)
    worse = G.paired_auroc_shift(clf, a, a + rng.normal(0, 3, a.shape), y, 300, seed=0)
    assert worse["auroc (system turn)"] < worse["auroc (paper prompt)"] and worse["difference hi"] < 0
    assert "lowers it" in readouts.read_shift(worse) and "n = 120" in readouts.read_shift(worse)


def test_ours_vs_paper_lines_up_the_papers_nonexist_with_the_paper_prompt_set():
    t1 = pd.DataFrame([{"NonExist (paper prompt) acc": 0.5}, {"NonExist (paper prompt) acc": 0.6}])
    out = G.ours_vs_paper(t1, "m", 0.1, ["NonExist (paper prompt)"], False)
    assert "NonExist (paper prompt) H" in out and "NonExist H" not in out
    assert out["NonExist (paper prompt) H"].iloc[1] == G.PAPER_TABLE1["NonExist H"].iloc[0]
