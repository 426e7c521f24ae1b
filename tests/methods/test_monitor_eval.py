"""Notebook 07's outcome rule, stream probes, guards' bookkeeping and tables, on synthetic streams."""
import numpy as np
import pandas as pd
import pytest

from hneuron_utils.data import QARecord
from hneuron_utils.monitor import evaluation as ev
from hneuron_utils.monitor import live, longform, probes
from hneuron_utils.workbook import readouts


def test_outcome_reads_the_first_sentence_only():
    assert longform.first_sentence("It is 3.5 m long. Paris is nice.") == "It is 3.5 m long."
    assert longform.outcome("q?", "Paris is the capital. It is old.", ["Paris"]) == "correct"
    assert longform.outcome("q?", "London is the capital. Paris is not.", ["Paris"]) == "wrong"
    assert longform.outcome("q?", "I don't know the answer. Sorry.", ["Paris"]) == "no answer"
    assert longform.outcome("q?", "", ["Paris"]) == "no answer"


def test_question_draw_split_and_control_neurons():
    pool = [QARecord(id=f"q{i}", question=f"Q{i}?", answers=("a",), source="t") for i in range(10)]
    got = longform.unused_questions(pool, {"q0", "q1"}, 5, 0)
    assert len(got) == 5 and not {"q0", "q1"} & {r.id for r in got}
    assert [r.id for r in got] == [r.id for r in longform.unused_questions(pool, {"q0", "q1"}, 5, 0)]
    with pytest.raises(ValueError, match="only 8"):
        longform.unused_questions(pool, {"q0", "q1"}, 9, 0)
    tr = longform.split([r.id for r in pool], 0.6, 0)
    assert tr.sum() == 6
    r = longform.random_neurons(20, [1, 2, 3], 5, 0)
    assert len(set(r)) == 5 and not {1, 2, 3} & set(r)


def _streams(n=40, seed=0, T=12, k=3):
    """Synthetic streams: hallucinated ones drift upward in feature 0 from the second sentence on."""
    rng = np.random.default_rng(seed)
    out, y = [], []
    for i in range(n):
        yi = i % 2
        h = rng.normal(size=(T, 2 * k)) * 0.5
        h[4:, 0] += 2.0 * yi
        text = "Aaa bb. Cc dd. Ee ff gg."
        ends = list(np.linspace(1, len(text), T).astype(int))
        ends[3], ends[7], ends[-1] = 7, 14, len(text)
        s = live.Stream(text=text, token_ids=list(range(T)), hcett=h.astype(np.float32), resid=h[:, :2].astype(np.float32),
                        logprob=-np.abs(rng.normal(size=T)) - yi, ends=ends, stopped=True)
        out.append(s)
        y.append(yi)
    return out, np.array(y, float)


def test_stream_probe_learns_and_reads_prefixes_causally():
    streams, y = _streams()
    spans = [s.spans() for s in streams]
    assert spans[0] == [(0, 4), (4, 8), (8, 12)]
    teacher = [np.full(len(sp), 0.5) for sp in spans]
    p = probes.fit_stream_probe("H-neurons", [s.hcett[:, :3] for s in streams], spans, y, teacher)
    final = np.array([p.prefix_scores(s.hcett[:, :3], sp)[-1] for s, sp in zip(streams, spans)])
    assert final[y == 1].min() > final[y == 0].max()
    s, sp = streams[1], spans[1]
    np.testing.assert_allclose(p.at_tokens(s.hcett[:, :3], sp, [12, 99]), p.prefix_scores(s.hcett[:, :3], sp)[-1])
    np.testing.assert_allclose(p.at_tokens(s.hcett[:, :3], sp, [8]), p.prefix_scores(s.hcett[:8, :3], sp[:2])[-1])
    g = probes.probe_guard_score(p, 3)
    assert g(s.hcett, None, s.logprob, sp) == pytest.approx(float(final[1]))
    assert probes.nll_guard_score(None, None, np.log([0.5, 0.5]), []) == pytest.approx(np.log(2))


def test_guard_bookkeeping():
    assert probes.tau_for_coverage(np.array([1.0, 2, 3, 4]), 0.5) == 3.0
    assert probes.tau_for_coverage(np.array([1.0, 2]), 1.0) == np.inf
    np.testing.assert_array_equal(probes.alarm_scores([np.array([0.1, 0.7, 0.2])]), [0.7])
    sp = [[(0, 3), (3, 9)], [(0, 4)]]
    np.testing.assert_array_equal(probes.tokens_until_alarm([np.array([0.1, 0.9]), np.array([0.2])], sp, 0.5), [9, 4])
    np.testing.assert_array_equal(probes.tokens_until_alarm([np.array([0.9, 0.9]), np.array([0.2])], sp, 0.5), [3, 4])
    r = probes.risk_at_coverage(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]), 0.5, 50, 0)
    assert r["risk"] == 0.0 and r["answered"] == 2
    d = probes.paired_risk_difference(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.9, 0.8, 0.2, 0.1]),
                                      np.array([0, 0, 1, 1]), 0.5, 50, seed=0)
    assert d["difference"] == -1.0


def test_dynamics_counts_alarms_and_false_alarm_runs():
    scores = [np.array([0.9, 0.9]), np.array([0.1, 0.8]), np.array([0.6, 0.7, 0.1, 0.9]), np.array([0.1, 0.1])]
    spans = [[(0, 2), (2, 5)], [(0, 3), (3, 6)], [(0, 1), (1, 2), (2, 3), (3, 4)], [(0, 2), (2, 4)]]
    d = probes.dynamics(scores, spans, np.array([1, 1, 0, 0]), 0.5).set_index("measure").value
    assert d["hallucinated: alarmed at the first step"] == 0.5 and d["hallucinated: alarmed by the end"] == 1.0
    assert d["hallucinated: tokens to the first alarm (median)"] == 4.0
    assert d["correct: any false alarm"] == 0.5 and d["correct: false-alarm run length in steps (mean)"] == 1.5


def test_tables_of_the_notebook_on_synthetic_streams():
    streams, y = _streams(60)
    spans = [s.spans() for s in streams]
    te, tr = np.arange(30, 60), np.arange(30)
    teacher = [np.full(len(spans[i]), 0.5) for i in tr]
    fitted = {src: probes.fit_stream_probe(src, [probes.token_features(streams[i], src, 3) for i in tr],
                                           [spans[i] for i in tr], y[tr], teacher) for src in probes.SOURCES}
    h_token = [np.linspace(0.2, 0.3 + 0.4 * yi, 12) for yi in y]
    steps = {f"{s} · prefix probe": [fitted[s].prefix_scores(probes.token_features(st, s, 3), sp)
                                     for st, sp in zip(streams, spans)] for s in probes.SOURCES}
    steps["log-probability · running NLL"] = [probes.at_step_ends(probes.running_nll(s.logprob), sp)
                                              for s, sp in zip(streams, spans)]
    ref = "H-neurons · prefix probe"
    taus = {m: probes.tau_for_coverage(probes.alarm_scores([v[i] for i in tr]), 0.7) for m, v in steps.items()}
    final = {m: np.array([v[i][-1] for i in te]) for m, v in steps.items()}
    auc, diff = ev.final_auc(y[te], final, ref, np.full(len(te), 12), 100, seed=0)
    assert auc.set_index("method").auroc[ref] == 1.0 and "accuracy" not in auc
    assert "no detectable difference" in readouts.read_final(auc, diff, ref) or "beats" in readouts.read_final(auc, diff, ref)
    early = ev.early_table(streams, te, y, fitted, h_token, spans=spans, k_h=3, positions=[1, 4, 12], n_boot=50, seed=0)
    assert set(early.tokens) == {1, 4, 12} and early.groupby("method").size().eq(3).all()
    assert "above chance" in readouts.read_early(early, ref)
    rc, at = ev.abstain_guards(steps, y, te, spans, taus, reference=ref, coverage=0.5, n_boot=50, seed=0)
    a = at.set_index("guard")
    assert a.risk[ref] == 0.0 and a.risk["no guard"] == 0.5 and f"{ref}, post hoc" in a.index
    assert "Lower risk is better" in readouts.read_abstain(at, ref, 0.5)
    trace = ev.trace_table(streams, pd.DataFrame({"id": range(60), "question": "q", "hallucinated": y}), te,
                           fitted["H-neurons"], h_token, spans=spans, k_h=3, tau=0.5)
    assert set(trace.panel) == {"hallucinated", "correct"} and len(trace) == 24


def test_resample_table_pairs_guards_with_the_unguarded_answers():
    recs = [QARecord(id=f"q{i}", question="Capital of France?", answers=("Paris",), source="t") for i in range(4)]

    def st(text, abstained=False, resamples=0):
        return live.Stream(text=text, token_ids=[1, 2], hcett=np.zeros((2, 1)), resid=None, logprob=np.zeros(2),
                           ends=[1, 2], stopped=True, abstained=abstained, resamples=resamples, spent=5)
    base = [st("Paris. Yes."), st("Lyon. No."), st("Lyon. No."), st("Paris. Yes.")]
    guarded = {"g": [st("Paris. Yes."), st(live.ABSTAIN_TEXT, abstained=True, resamples=2), st("Paris. Yes.", resamples=1),
                     st("Paris. Yes.")]}
    t = ev.resample_table(recs, np.arange(4), base, guarded, 100, seed=0).set_index("guard")
    assert t.coverage["no guard"] == 1.0 and t["hallucinated among answered"]["no guard"] == 0.5
    assert t.coverage["g"] == 0.75 and t["hallucinated among answered"]["g"] == 0.0
    assert t.accuracy["g"] == 0.75 and t["accuracy minus unguarded"]["g"] == 0.25
    assert "g: answers 75% [" in readouts.read_resample(t.reset_index(), "g")


def test_stream_round_trip_and_outcome_labels(tmp_path):
    s = live.Stream(text="a", token_ids=[1], hcett=np.ones((1, 2), np.float32), resid=np.ones((1, 3), np.float32),
                    logprob=np.zeros(1), ends=[1], stopped=False)
    back = live.Stream.from_arrays(s.to_arrays())
    assert back.resid.dtype == np.float32 and back.text == "a" and not back.stopped
    p = tmp_path / "l.jsonl"
    pd.DataFrame([{"id": "a", "question": "q?", "answers": ["Paris"], "response": "Paris. x.", "label": "correct"},
                  {"id": "b", "question": "q?", "answers": ["Paris"], "response": "Rome. x.", "label": "correct"},
                  {"id": "c", "question": "q?", "answers": ["Paris"], "response": "Rome. x.", "label": "wrong"}]
                 ).to_json(p, orient="records", lines=True)
    labels = ev.read_outcome_labels(p)
    a = ev.outcome_agreement(labels).iloc[0]
    assert a["agreement (wrong vs not)"] == pytest.approx(2 / 3) and a["rule wrong, reference not"] == 1 and a.answers == "all"
    assert len(ev.outcome_disagreements(labels)) == 1 and "κ" in readouts.read_agreement(ev.outcome_agreement(labels))
    pd.DataFrame([{"id": "a", "question": "q", "answers": [], "response": "x", "label": "maybe"}]).to_json(
        p, orient="records", lines=True)
    with pytest.raises(ValueError, match="labels must be"):
        ev.read_outcome_labels(p)


def test_versus_words_follow_the_interval_and_the_direction():
    assert readouts.versus(0.01, 0.2, "A", "B") == "A beats B"
    assert readouts.versus(-0.2, -0.01, "A", "B") == "A is beaten by B"
    assert readouts.versus(-0.2, -0.01, "A", "B", higher_is_better=False) == "A beats B"
    assert "no detectable difference" in readouts.versus(-0.1, 0.1, "A", "B")


def test_readme_lines_of_notebook_07_read_its_saved_tables(tmp_path):
    from hneuron_utils.workbook import report

    streams, y = _streams(60)
    spans = [s.spans() for s in streams]
    te, tr = np.arange(30, 60), np.arange(30)
    fitted = {src: probes.fit_stream_probe(src, [probes.token_features(streams[i], src, 3) for i in tr],
                                           [spans[i] for i in tr], y[tr], [np.full(len(spans[i]), 0.5) for i in tr])
              for src in probes.SOURCES}
    steps = {f"{s} · prefix probe": [fitted[s].prefix_scores(probes.token_features(st, s, 3), sp)
                                     for st, sp in zip(streams, spans)] for s in probes.SOURCES}
    ref = "H-neurons · prefix probe"
    taus = {m: 0.5 for m in steps}
    t = tmp_path / "tables"
    t.mkdir()
    assert report._monitor_lines(tmp_path) == []
    auc, diff = ev.final_auc(y[te], {m: np.array([v[i][-1] for i in te]) for m, v in steps.items()}, ref,
                             np.full(30, 12), 50, seed=0)
    auc.to_csv(t / "07_final_auc.csv", index=False), diff.to_csv(t / "07_final_auc_differences.csv", index=False)
    ev.abstain_guards(steps, y, te, spans, taus, reference=ref, coverage=0.5, n_boot=50, seed=0)[1].to_csv(t / "07_abstain.csv", index=False)
    pd.DataFrame([{"split": s, "questions": 30, "correct": 15, "wrong": 15, "no answer": 0, "mean tokens": 12,
                   "mean sentences": 3, "share cut": 0} for s in ("train", "test", "all")]).to_csv(t / "07_streams.csv", index=False)
    text = "\n".join(report._monitor_lines(tmp_path))
    assert "Streaming monitor" in text and "Final AUC on held-out answers" in text and "at matched coverage" in text


def test_step_pooled_auc_pools_steps_with_their_stream_label():
    scores = {"m": [np.array([0.9, 0.8]), np.array([0.1]), np.array([0.7, 0.95, 0.6]), np.array([0.2, 0.3])]}
    t = ev.step_pooled_auc(scores, np.array([1, 0, 1, 0]), np.arange(4), 50, 0).iloc[0]
    assert t["step-pooled auroc"] == 1.0 and t.steps == 8 and t.streams == 4
