"""Loading a model (registry name, Hugging Face id or local path) and what identifies it.

The logic lives in :mod:`hneuron_utils.models.loading`; this file only re-exports it."""

from hneuron_utils.models.loading import (  # noqa: F401
    TINY,
    LAYER_PATHS,
    STOP_TOKENS,
    ModelError,
    known_names,
    model_key,
    cpu_supports_bf16,
    resolve_device,
    resolve_dtype,
    LoadedModel,
    stop_token_ids,
    find_layers_path,
    contiguous_lm_head_input,
    load_model,
    load_tokenizer,
    for_cett,
)
