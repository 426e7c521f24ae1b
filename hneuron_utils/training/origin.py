"""Notebook 06's glue: the tuned model's own 01–03 run, the base model's test sets (base prompting), and
the before/after accuracy of the tuning.

The tuned model's H-neurons come from notebooks 01–03 themselves, executed by papermill with
``origin_profile`` + ``origin_overrides`` and the tuned model (:func:`identify`), so there is one
implementation of the identification. The base model is labelled with the same consistency rule and
sampling settings, but with the paper's base prompt (question + "\\nAnswer:", stop at the first newline).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.data import QARecord


def tuned_run_params(origin_profile: str, overrides: Mapping[str, Any], tuned_model: str,
                     run_name: str) -> dict[str, Any]:
    """The parameters of the tuned model's 01–03 run (validated): the profile, the overrides, the model."""
    from hneuron_utils.workbook.config import load_profile, validate_mapping

    params = load_profile(origin_profile)
    params.update(validate_mapping({**_overrides(overrides, tuned_model), "run_name": run_name}))
    return params


def _overrides(overrides: Mapping[str, Any], tuned_model: str) -> dict[str, Any]:
    """``origin_overrides`` plus what notebook 06 itself sets for the tuned model's run."""
    return {**overrides, "model": tuned_model, "figures_dir": None}


def identify(origin_profile: str, overrides: Mapping[str, Any], tuned_model: str, run_name: str) -> dict[str, Any]:
    """Run notebooks 01–03 on the tuned model (results/<run_name>/); return the run log."""
    from hneuron_utils.workbook.run import run

    return run(origin_profile, only=["01", "02", "03"], run_name=run_name, log_output=False,
               overrides=_overrides(overrides, tuned_model))


def rule(params: Mapping[str, Any]) -> Any:
    from hneuron_utils.data.labelling import Rule

    return Rule(params["n_samples"], params["faithful_min_correct"], params["hallucinated_max_correct"])


def sampling(params: Mapping[str, Any]) -> Any:
    from hneuron_utils.text.generation import Sampling

    return Sampling(do_sample=True, temperature=params["temperature"], top_k=params["top_k"],
                    top_p=params["top_p"], max_new_tokens=params["max_new_tokens"])


def transfer_pool(name: str, params: Mapping[str, Any], pool_size: int | None, seed: int,
                  exclude_ids: Sequence[str] = ()) -> Any:
    """The question pool of one backward-transfer set (:func:`~hneuron_utils.probes.generalisation.load_pool` with
    the run's biomedical source and leak policy): ``triviaqa`` minus ``exclude_ids`` (the tuned probe's own
    examples), ``nq_open`` or ``biomed``."""
    from hneuron_utils.probes.generalisation import load_pool

    return load_pool(name, biomed_source=params["biomed_source"], seed=seed, leak_policy=params["leak_policy"],
                     pool_size=pool_size, exclude_ids=exclude_ids)


def greedy_accuracy(loaded: Any, records: Sequence[QARecord], style: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Greedy accuracy (rule judge) on ``records`` with the ``style`` prompt, and the refusal/empty share."""
    from hneuron_utils.judges import RuleJudge
    from hneuron_utils.data.labelling import greedy_answers

    got = greedy_answers(loaded, records, params["max_new_tokens"], params["gen_batch_size"], style=style,
                         progress=False)
    j = RuleJudge()
    vs = [j.judge(r.question, got[r.id]["text"], r.answers) for r in records]
    return {"questions": len(records), "accuracy": float(np.mean([v.correct for v in vs])),
            "refused or empty": float(np.mean([v.refusal or not got[r.id]["text"] for v, r in zip(vs, records)])),
            "example": f"{records[0].question} → {got[records[0].id]['text']!r}" if records else ""}


def transfer_table(results: pd.DataFrame) -> pd.DataFrame:
    """AUROC (and accuracy) with intervals per set and classifier, for the figure and the README."""
    cols = ["set", "classifier", "n faithful", "n hallucinated", "auroc", "auroc_lo", "auroc_hi",
            "accuracy", "accuracy_lo", "accuracy_hi"]
    return results[cols].reset_index(drop=True)
