"""Scaling chosen neurons' activations by α during a forward pass or generation.

The logic lives in :mod:`hneuron_utils.interventions.scaling`; this file only re-exports it."""

from hneuron_utils.interventions.scaling import (  # noqa: F401
    by_layer,
    scaled,
    greedy_accuracy,
    nnsight_forward,
    unmodified,
    scaled_forward,
    generate_scaled,
    suppression_accuracies,
    Condition,
    row_scale_plan,
    row_scaled_forward,
    generate_conditions,
)
