"""Rule judges of an answer: normalisation, alias matching, refusals.

The logic lives in :mod:`hneuron_utils.judges.rules`; this file only re-exports it."""

from hneuron_utils.judges.rules import (  # noqa: F401
    REFUSAL_PHRASES,
    normalize_with_map,
    normalize,
    is_refusal,
    usable_aliases,
    Verdict,
    Judge,
    RuleJudge,
)
