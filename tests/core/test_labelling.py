import pandas as pd
import pytest

from hneuron_utils import judges
from hneuron_utils.data import labelling, QARecord


def test_rule_labels_and_validation():
    r = labelling.Rule(10, 10, 0)
    assert r.label(10, 0, 0) == "faithful" and r.label(0, 0, 0) == "hallucinated"
    assert r.label(5, 0, 0) == "mixed" and r.label(10, 1, 0) == "dropped" and r.label(0, 0, 1) == "dropped"
    with pytest.raises(ValueError):
        labelling.Rule(10, 3, 3)
    with pytest.raises(ValueError):
        labelling.Rule(4, 5, 0)


def test_leak_policies():
    recs = [QARecord("a", "What is laughing gas made of?", ("Laughing gas", "Nitrous oxide"), "t"),
            QARecord("b", "Which gas is laughing gas?", ("Laughing Gas",), "t"),
            QARecord("c", "Capital of France?", ("Paris",), "t")]
    kept, st = labelling.apply_leak_policy(recs, "drop_aliases")
    assert [r.id for r in kept] == ["a", "c"] and kept[0].answers == ("Nitrous oxide",)
    assert st == {"questions": 3, "with a leaked alias": 2, "dropped": 1, "kept": 2}
    kept, st = labelling.apply_leak_policy(recs, "drop_questions")
    assert [r.id for r in kept] == ["c"]
    assert len(labelling.apply_leak_policy(recs, "keep")[0]) == 3
    with pytest.raises(ValueError):
        labelling.apply_leak_policy(recs, "ignore")


def test_most_frequent_prefers_earliest_on_ties():
    assert labelling.most_frequent(["b", "a", "a", "b", "c"]) == 0
    assert labelling.most_frequent(["x", "y", "y"]) == 1


def _looked(n_per_class=6):
    rows = []
    for i in range(n_per_class):
        rows.append({"id": f"f{i}", "question": "Capital of France?", "answers": ["Paris"], "label": "faithful",
                     "samples": ["Paris", "It is Paris.", "Paris"], "stopped": [True] * 3, "n_correct": 3})
        rows.append({"id": f"h{i}", "question": "Capital of France?", "answers": ["Paris"], "label": "hallucinated",
                     "samples": ["Lyon", "Lyon", "Nice"], "stopped": [True] * 3, "n_correct": 0})
    rows.append({"id": "m", "question": "q", "answers": ["x"], "label": "mixed", "samples": ["x", "y", "y"],
                 "stopped": [True] * 3, "n_correct": 1})
    return pd.DataFrame(rows)


def test_split_is_balanced_disjoint_and_uses_the_right_response():
    ex, sizes = labelling.split(_looked(), judges.RuleJudge(), 3, 2, seed=0, span_rule="alias_or_whole")
    assert sizes == {"available per class": 6, "train per class": 3, "test per class": 2}
    assert not set(ex[ex.split == "train"].id) & set(ex[ex.split == "test"].id)
    assert (ex.groupby(["split", "class"]).size() == pd.Series({("test", "faithful"): 2, ("test", "hallucinated"): 2,
                                                               ("train", "faithful"): 3, ("train", "hallucinated"): 3})).all()
    tr_f = ex[(ex.split == "train") & (ex["class"] == "faithful")]
    assert (tr_f.response == "Paris").all() and all(s == [0, 5] for s in tr_f.span)
    te = ex[ex.split == "test"]
    assert (te.sample_index == 0).all()
    assert ex[ex["class"] == "hallucinated"].span.isna().all()
    assert (ex.span_rule == "alias_or_whole").all()


def test_split_answer_phrase_rule_marks_both_classes_alike():
    looked = _looked()
    looked["samples"] = [["The capital of France is Lyon.", "Lyon", "Nice"] if lab == "hallucinated" else s
                         for lab, s in zip(looked.label, looked.samples)]
    ex, _ = labelling.split(looked, judges.RuleJudge(), 3, 2, seed=0, span_rule="answer_phrase")
    assert (ex.span_rule == "answer_phrase").all()
    wrong = ex[(ex.split == "test") & (ex["class"] == "hallucinated")]
    # the restatement is left out of a wrong answer's span, as it would be of a right one
    assert all(r[s:e] == "Lyon" for r, (s, e) in zip(wrong.response, wrong.span))
    right = ex[ex["class"] == "faithful"]
    assert all(r[s:e] == "Paris" for r, (s, e) in zip(right.response, right.span))
    assert all(a == [0, 5] for a in right.alias_span)  # the judge's alias is kept beside the span
    with pytest.raises(ValueError, match="answer_span must be one of"):
        labelling.split(looked, judges.RuleJudge(), 3, 2, seed=0, span_rule="alias")


def test_split_shrinks_proportionally_when_short():
    ex, sizes = labelling.split(_looked(3), judges.RuleJudge(), 4, 2, seed=0, span_rule="answer_phrase")
    assert sizes == {"available per class": 3, "train per class": 2, "test per class": 1}


def test_screen_misses_counts_consistent_questions_the_screen_skips():
    df = pd.DataFrame([
        {"in_check": True, "sampled": True, "greedy": "Lyon", "greedy_correct": False, "greedy_refusal": False, "label": "faithful"},
        {"in_check": True, "sampled": True, "greedy": "Paris", "greedy_correct": True, "greedy_refusal": False, "label": "faithful"},
        {"in_check": True, "sampled": True, "greedy": "Paris", "greedy_correct": True, "greedy_refusal": False, "label": "hallucinated"},
        {"in_check": True, "sampled": True, "greedy": "Lyon", "greedy_correct": False, "greedy_refusal": False, "label": "mixed"},
        {"in_check": False, "sampled": True, "greedy": "Lyon", "greedy_correct": False, "greedy_refusal": False, "label": "faithful"},
    ])
    m = labelling.screen_misses(df)
    assert m["checked"] == 4 and m["faithful missed by the screen"] == 1 and m["hallucinated missed by the screen"] == 1
    assert m["share of kept questions missed"] == pytest.approx(2 / 3)


def test_label_pool_screens_and_stops_when_full(tiny, tmp_path, monkeypatch):
    """End to end on the tiny model with a judge that calls every answer wrong: only hallucinated
    questions exist, the screen samples just the quota, and the check subset is sampled whatever."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))

    class Wrong:
        def judge(self, q, r, a):
            return judges.Verdict(correct=False, refusal=False)

    recs = [QARecord(f"q{i}", f"Question number {i}?", ("zzz",), "t") for i in range(30)]
    s = labelling.Sampling(do_sample=True, max_new_tokens=4)
    df = labelling.label_pool(tiny, recs, Wrong(), labelling.Rule(2, 2, 0), s, target_per_class=4, seed=0,
                              batch_size=8, screen=True, check_size=3, chunk_size=10, progress=False)
    assert len(df) == 30  # the faithful class never fills, so the whole pool is looked at
    assert df.in_check.sum() == 3 and df[df.in_check].sampled.all()
    assert (df.label == "hallucinated").sum() == df.sampled.sum()
    assert df.sampled.sum() == 3 + 5  # check subset + ceil(4 / 0.8) in the first chunk, none after


def test_samples_drawn_in_rounds_equal_samples_drawn_at_once(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))
    recs = [QARecord(f"q{i}", f"Question {i}?", ("a",), "t") for i in range(3)]
    s = labelling.Sampling(do_sample=True, max_new_tokens=5)
    part = labelling.sampled_answers(tiny, recs, s, 4, seed=3, batch_size=8, upto=2)
    assert all(len(v) == 2 for v in part.values())
    full = labelling.sampled_answers(tiny, recs, s, 4, seed=3, batch_size=8)  # draws only samples 2 and 3
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "fresh"))
    at_once = labelling.sampled_answers(tiny, recs, s, 4, seed=3, batch_size=5)
    assert full == at_once and all(full[k][:2] == part[k] for k in part)


def test_can_still_pass():
    r = labelling.Rule(10, 10, 0)
    assert labelling.can_still_pass(r, 3, 3, 0) and labelling.can_still_pass(r, 3, 0, 0)
    assert not labelling.can_still_pass(r, 3, 2, 0) and not labelling.can_still_pass(r, 3, 3, 1)


def test_teacher_forced_examples_marks_spans_and_reports_lost(tiny):
    ex = pd.DataFrame([{"id": "a", "question": "Capital of France?", "response": "It is Paris.", "span": [6, 11]},
                       {"id": "b", "question": "Who?", "response": "Nobody knows", "span": None},
                       {"id": "c", "question": "Empty?", "response": "", "span": None}])
    tf, lost = labelling.teacher_forced_examples(tiny.tokenizer, ex)
    assert tf[0] is not None and tf[1] is not None and tf[2] is None and [i for i, _ in lost] == ["c"]
    assert tf[1].answer.sum() > tf[0].answer.sum() > 0
    assert labelling.span_is_whole_response("Paris.", [0, 5]) and labelling.span_is_whole_response("x", None)
    assert not labelling.span_is_whole_response("It is Paris.", [6, 11])


def test_abstaining_disqualifies_only_when_it_is_not_the_faithful_answer():
    refusal = judges.Verdict(correct=False, refusal=True)
    assert labelling.disqualifies(judges.RuleJudge(), refusal, "I don't know")
    assert not labelling.disqualifies(judges.RuleJudge(), judges.Verdict(False, False), "Lyon")
    assert labelling.disqualifies(judges.RuleJudge(), judges.Verdict(False, False), "")

    from hneuron_utils.data.nonexist import AbstentionJudge

    aj = AbstentionJudge()
    assert not labelling.disqualifies(aj, aj.judge("Who makes Zorvaxiline?", "I don't know."), "I don't know.")
    assert labelling.disqualifies(aj, judges.Verdict(False, False), "")


def test_test_set_with_an_abstention_judge_keeps_abstaining_questions(tiny, tmp_path, monkeypatch):
    """With a judge for which abstaining is faithful, questions whose every sample abstains are
    faithful (not dropped as refusals), and the test set is balanced with one response per question."""
    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path))

    class EvenAbstains:  # questions q0, q2, ... always "abstain", odd ones always answer
        abstention_is_faithful = True

        def judge(self, q, r, a):
            even = int(q.split()[-1].rstrip("?")) % 2 == 0
            return judges.Verdict(correct=even, refusal=even)

    recs = [QARecord(f"q{i}", f"Question number {i}?", ("<abstain>",), "t") for i in range(20)]
    s = labelling.Sampling(do_sample=True, max_new_tokens=3)
    looked, ex, sizes = labelling.test_set(tiny, recs, EvenAbstains(), labelling.Rule(3, 3, 0), s, n_per_class=4,
                                           seed=0, batch_size=8, screen=True, first_round=1, progress=False,
                                           span_rule="answer_phrase")
    assert sizes == {"available per class": sizes["available per class"], "train per class": 0, "test per class": 4}
    assert (looked.label == "dropped").sum() == 0 and (looked.label == "faithful").sum() >= 4
    assert (ex.split == "test").all() and ex["class"].value_counts().to_dict() == {"faithful": 4, "hallucinated": 4}
    assert all(int(q.split()[-1].rstrip("?")) % 2 == 0 for q in ex[ex["class"] == "faithful"].question)

    class RuleLike(EvenAbstains):  # the same verdicts, but refusing disqualifies (the TriviaQA rule)
        abstention_is_faithful = False

    monkeypatch.setenv("HNEURON_CACHE", str(tmp_path / "b"))
    looked2, ex2, _ = labelling.test_set(tiny, recs, RuleLike(), labelling.Rule(3, 3, 0), s, n_per_class=4, seed=0,
                                         batch_size=8, screen=True, progress=False, span_rule="answer_phrase")
    assert (looked2.label == "faithful").sum() == 0 and len(ex2) == 0


def test_greedy_correct_outside_uses_01_first_then_screens_more(monkeypatch):
    import pandas as pd

    from hneuron_utils.data import labelling, QARecord
    from hneuron_utils.judges import RuleJudge

    recs = [QARecord(f"q{i}", f"question {i}?", (f"ans{i}",), "triviaqa", {}) for i in range(40)]
    monkeypatch.setattr("hneuron_utils.data.load_dataset", lambda name: recs)
    calls = []

    def fake_greedy(loaded, chunk, max_new_tokens, batch_size, progress=True, style="chat"):
        calls.append([r.id for r in chunk])
        return {r.id: {"text": r.answers[0] if int(r.id[1:]) % 2 else "wrong", "stopped": True} for r in chunk}

    monkeypatch.setattr(labelling, "greedy_answers", fake_greedy)
    looked = pd.DataFrame({"id": ["q0", "q1", "q2", "q3"], "greedy_correct": [True, True, False, True]})
    ids, counts = labelling.greedy_correct_outside(None, looked, {"q1"}, 2, RuleJudge(), batch_size=8, max_new_tokens=16, seed=0, chunk_size=10)
    assert sorted(ids) == ["q0", "q3"] and not calls and counts["screened here"] == 0  # enough from 01
    ids, counts = labelling.greedy_correct_outside(None, looked, {"q1"}, 6, RuleJudge(), batch_size=8, max_new_tokens=16, seed=0, chunk_size=10)
    assert len(ids) >= 6 and counts["from 01's screen"] == 2 and counts["found here"] == len(ids) - 2
    assert not {"q0", "q1", "q2", "q3"} & {i for c in calls for i in c}  # never re-screens 01's or the dataset's
    assert all(int(i[1:]) % 2 for i in ids[2:])
