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
from hneuron_utils.workbook.paths import project_root

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
    rand = probe.random_classifiers(X, None, y, 3, 4, "1-vs-1", exclude=[0, 1, 2])
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
    assert a["responses"] == 4 and a["judge agrees"] == 3 and a["judge hallucinated, hand faithful"] == 1
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
    """The committed hand labels (real default-model responses): the judge must agree on ≥ 90%."""
    path = project_root() / "data" / "labels" / "nonexist_abstention.jsonl"
    if not path.exists():
        pytest.skip("no hand labels committed yet")
    df = A.read_hand_labels(path)
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
