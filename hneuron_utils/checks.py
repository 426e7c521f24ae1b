"""Sample-size checks made before any fit, split or evaluation.

Each check compares the counts a step found with the counts it needs and, when they fall short,
stops with a :class:`SampleSizeError` that names the numbers found, the numbers needed and the
parameters to change: never a library traceback from deep inside scikit-learn.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# The smallest samples the workbook will fit or score on. Below these a probe, a validation score or
# a test AUROC is not a result but a coin toss, so the notebooks stop instead of reporting it.
MIN_FIT_PER_CLASS = 2     # L1 probe training rows per class (after the validation split)
MIN_VAL_PER_CLASS = 1     # validation examples per class (C selection)
MIN_TEST_PER_CLASS = 2    # test examples per class (accuracy and AUROC with intervals)
MIN_TRAIN_PER_CLASS = MIN_FIT_PER_CLASS + MIN_VAL_PER_CLASS


class SampleSizeError(ValueError):
    """A step has fewer examples than it needs; the message says which parameter to change."""


def require_counts(step: str, found: Mapping[str, int], needed: int, parameters: Sequence[str]) -> None:
    """Raise :class:`SampleSizeError` unless every count in ``found`` is at least ``needed``."""
    short = {k: int(v) for k, v in found.items() if int(v) < needed}
    if short:
        shown = ", ".join(f"{k}: {int(v)}" for k, v in found.items())
        raise SampleSizeError(
            f"{step}: too few examples — found {shown}; need at least {needed} each "
            f"(short: {', '.join(short)}). Change {' or '.join(f'`{p}`' for p in parameters)} "
            "so that more examples reach this step.")


def class_counts(y: np.ndarray, names: Mapping[int, str] | None = None) -> dict[str, int]:
    """Counts of labels 0 and 1 in ``y``, keyed by class name (default: faithful = 0, hallucinated = 1)."""
    names = names or {0: "faithful", 1: "hallucinated"}
    y = np.asarray(y)
    return {names[c]: int(np.sum(y == c)) for c in (0, 1)}


def require_split_sizes(train_per_class: int, test_per_class: int) -> None:
    """Notebook 01's balanced split: enough train and test questions per class for 03."""
    params = ("pool_size", "n_samples / faithful_min_correct / hallucinated_max_correct")
    require_counts("01 train split (per class)", {"train": train_per_class}, MIN_TRAIN_PER_CLASS, params)
    require_counts("01 test split (per class)", {"test": test_per_class}, MIN_TEST_PER_CLASS, params)


def require_probe_splits(y_fit: np.ndarray, y_val: np.ndarray, y_test: np.ndarray) -> None:
    """Notebook 03: per class, the fit part, the validation part and the test set."""
    params = ("n_train_per_class / n_test_per_class / val_fraction", "the 01 rule (re-run 01)")
    require_counts("03 probe fit split", class_counts(y_fit), MIN_FIT_PER_CLASS, params)
    require_counts("03 validation split", class_counts(y_val), MIN_VAL_PER_CLASS, params)
    require_counts("03 test set", class_counts(y_test), MIN_TEST_PER_CLASS, params)


def require_items(step: str, found: int, needed: int, parameters: Sequence[str]) -> None:
    """A step that needs ``needed`` items (questions, prompts) and found ``found``."""
    require_counts(step, {"items": found}, needed, parameters)


def pool_margin(funnel: "pd.DataFrame", needed: int) -> dict[str, float]:
    """From notebook 01's funnel table: per class, how many questions of that class the whole pool is
    expected to hold (the rate among the questions looked at × the pool size), divided by the number the
    run needs. 01 walks the pool only until both classes are full, so a margin well above 1 means a run
    cannot fall short on a borderline count."""
    q = dict(zip(funnel["stage"].str.strip(), funnel["questions"]))
    pool, looked = q["after the leak policy"], q["looked at (until both classes were full or the pool ended)"]
    return {lab: q[f"→ {lab}"] / max(looked, 1) * pool / needed for lab in ("faithful", "hallucinated")}
