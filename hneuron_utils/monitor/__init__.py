"""Per-token CETT of a response and the scores a streaming monitor reads from it.

The logic lives in :mod:`hneuron_utils.monitor.scores`; this file only re-exports it."""

from hneuron_utils.monitor.scores import (  # noqa: F401
    token_cett,
    running_mean,
    stream_scores,
    SENTENCE_END,
    step_token_spans,
    step_features,
    causal_pool,
    train_prefix_probe,
    prefix_scores,
    score_after,
    auroc_by_position,
    risk_coverage,
)
