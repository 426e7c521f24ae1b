"""A run of the identification notebooks (01–03) on another model, inside a notebook's own run.

The origin analysis tunes a model and then identifies that model's own H-neurons. It does so with the
notebooks themselves — dataset, CETT, probe — run by the runner on the tuned model, so that there is one
implementation of the identification; these functions are the only place where that happens.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from hneuron_utils.workbook import config
from hneuron_utils.workbook.run import run

IDENTIFICATION = ("01", "02", "03")
"""The notebooks that identify a model's H-neurons."""


def _overrides(overrides: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The profile's overrides plus the model itself (figures stay inside the sub-run's folder)."""
    return {**overrides, "model": model, "figures_dir": None}


def identification_params(profile: str, *, overrides: Mapping[str, Any], model: str, run_name: str) -> dict[str, Any]:
    """The validated parameters of the identification run of ``model``: ``profile`` with ``overrides``."""
    params = config.load_profile(profile)
    params.update(config.validate_mapping({**_overrides(overrides, model), "run_name": run_name}))
    return params


def identify(profile: str, *, overrides: Mapping[str, Any], model: str, run_name: str) -> dict[str, Any]:
    """Run the identification notebooks on ``model`` into ``results/<run_name>/``; return the run log."""
    return run(profile, only=list(IDENTIFICATION), run_name=run_name, log_output=False,
               overrides=_overrides(overrides, model))


def override_table(profile: str, *, overrides: Mapping[str, Any]) -> pd.DataFrame:
    """The sub-run's parameters that differ from ``profile``, with the paper's values."""
    prof = config.load_profile(profile)
    return pd.DataFrame([{"parameter": k, "in the profile": prof[k], "used here": v,
                          "paper": config.SCHEMA[config.PARAM_NAMES.index(k)].paper}
                         for k, v in overrides.items()])
