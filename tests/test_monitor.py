"""The streaming monitor's per-token H-neuron scores, against notebook 02's features and 03's scores."""
import numpy as np
import torch

from hneuron_utils import monitor
from hneuron_utils.features import cett
from hneuron_utils.probes import probe
from test_cett_extract import _examples


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
    clf = probe.fit_subset(A, O, y, [2, tiny.d_ff + 4, 9], "3-vs-1", 1.0, 0)
    scores = monitor.stream_scores(clf, monitor.token_cett(tiny, ex, clf.columns))
    np.testing.assert_allclose([s[-1] for s in scores], clf.predict_proba_ans(A), rtol=1e-4, atol=1e-6)
    assert all(((s >= 0) & (s <= 1)).all() for s in scores)


def test_running_mean():
    np.testing.assert_allclose(monitor.running_mean(torch.tensor([[1.0], [3.0], [5.0]]))[:, 0], [1, 2, 3])
