"""The streaming monitor's per-token H-neuron scores, against notebook 02's features and 03's scores."""
import numpy as np
import torch

from hneuron_utils import monitor
from hneuron_utils.features import cett
from hneuron_utils.probes import probe
from qa_examples import examples as _examples


def test_running_mean_at_the_last_answer_token_equals_the_answer_feature(tiny):
    ex = _examples(tiny)
    flat = [3, tiny.d_ff + 5, (tiny.n_layers - 1) * tiny.d_ff + 1, 7]  # unsorted, several layers
    per = monitor.token_cett(tiny, ex, flat, batch_size=2)
    ans, _ = cett.extract(tiny, ex, batch_size=5, progress=False)
    ref = probe.flatten(ans.numpy())[:, flat]
    for i, x in enumerate(per):
        assert x.shape == (int(ex[i].answer.sum()), len(flat))
        np.testing.assert_allclose(monitor.running_mean(x)[-1], ref[i], rtol=1e-4, atol=1e-7)


def test_final_stream_score_is_the_classifier_score(tiny):
    ex = _examples(tiny)
    ans, oth = cett.extract(tiny, ex, batch_size=5, progress=False)
    A, O = probe.flatten(ans.numpy()), probe.flatten(oth.numpy())
    y = np.array([0, 0, 1, 0, 1])
    clf = probe.fit_subset(A, O, y, [2, tiny.d_ff + 4, 9], "3-vs-1", C=1.0, seed=0)
    scores = monitor.stream_scores(clf, monitor.token_cett(tiny, ex, clf.columns))
    np.testing.assert_allclose([s[-1] for s in scores], clf.predict_proba_ans(A), rtol=1e-4, atol=1e-6)
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)


def test_running_mean():
    np.testing.assert_allclose(monitor.running_mean(torch.tensor([[1.0], [3.0], [5.0]]))[:, 0], [1, 2, 3])


def test_step_spans_split_at_sentence_ends():
    text = "Paris. It is in France! ok"
    ends = [5, 6, 9, 12, 15, 22, 23, 26]  # token end offsets
    assert monitor.step_token_spans(ends, text) == [(0, 2), (2, 7), (7, 8)]
    assert monitor.step_token_spans([3], "abc") == [(0, 1)]


def test_step_features_weigh_later_tokens_and_are_unit_length():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    v = monitor.step_features(x, [(0, 2)])
    assert v.shape == (1, 2) and v[0, 1] > v[0, 0] and np.isclose(np.linalg.norm(v[0]), 1)


def test_prefix_probe_learns_a_separable_outcome_and_sync_only_raises_scores():
    rng = np.random.default_rng(0)
    steps, labels, teacher = [], [], []
    for i in range(40):
        y = i % 2
        s = rng.normal(size=(3, 4)) * 0.3 + np.array([1.0, 0, 0, 0]) * (2 * y - 1)
        steps.append(s)
        labels.append(np.full(3, y))
        teacher.append(np.full(3, 0.9 if y else 0.1))
    w, b = monitor.train_prefix_probe(steps, labels, teacher)
    final = np.array([monitor.prefix_scores(s, w, b)[-1] for s in steps])
    y = np.array([i % 2 for i in range(40)])
    assert final[y == 1].min() > final[y == 0].max()
    w0, b0 = monitor.train_prefix_probe(steps, labels, teacher, sync_weight=0.0)
    hi = [monitor.prefix_scores(s, w, b) for s, lab in zip(steps, y) if lab]
    hi0 = [monitor.prefix_scores(s, w0, b0) for s, lab in zip(steps, y) if lab]
    assert np.mean(np.concatenate(hi)) >= np.mean(np.concatenate(hi0)) - 1e-6


def test_score_after_and_auroc_by_position():
    scores = [np.array([0.1, 0.2, 0.9]), np.array([0.5]), np.array([0.2, 0.1])]
    np.testing.assert_array_equal(monitor.score_after(scores, 2), [0.2, 0.5, 0.1])
    np.testing.assert_array_equal(monitor.score_after(scores, 9), [0.9, 0.5, 0.1])
    t = monitor.auroc_by_position(scores + [np.array([0.8])], np.array([1, 0, 0, 1]), [1, 3], n_boot=50)
    assert list(t.tokens) == [1, 3] and t.auroc.iloc[1] == 1.0


def test_risk_coverage_never_abstaining_is_the_base_rate():
    rc = monitor.risk_coverage(np.array([0.1, 0.9, 0.4, 0.7]), np.array([0, 1, 0, 1]))
    last = rc.iloc[-1]
    assert last.coverage == 1.0 and last.risk == 0.5
    assert rc[rc.tau == 0.7].risk.iloc[0] == 0.0 and rc[rc.tau == 0.7].coverage.iloc[0] == 0.5
