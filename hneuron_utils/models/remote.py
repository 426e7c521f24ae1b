"""Models whose nnsight traces run elsewhere: NDIF, nnsight's remote execution service.

NDIF hosts a few large models (Llama-3.1-8B/70B, Llama-3.3-70B-Instruct among them) and runs the body of an
nnsight trace on them (`trace(..., remote=True)`); only values the trace saves come back. The workbook's
CETT pass is written so its trace body uses torch and the model's modules only, and reduces to per-neuron
means inside the trace, so it runs there unchanged (:mod:`hneuron_utils.features.cett`).

Three backends (the ``activations_backend`` parameter):

- ``local``: this machine;
- ``ndif``: NDIF, with the key from ``NDIF_API_KEY`` (or ``nnsight.CONFIG.set_default_api_key``); the model is
  built from its Hugging Face id with meta weights (config and tokenizer only), so nothing large is loaded here;
- ``ndif-local``: the model loaded here, every trace serialised exactly as for NDIF and run in this process
  with the user's own modules hidden (nnsight's ``remote="local"``): an offline check that a remote trace runs,
  and what the tests use.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from hneuron_utils.models.loading import LoadedModel, ModelError, _looks_like_hub_id, find_layers_path

BACKENDS = ("local", "ndif", "ndif-local")


class RemoteError(ModelError):
    """A remote backend that cannot be used as asked (no key, a model NDIF does not host, no service)."""


def ndif_api_key() -> str | None:
    """The NDIF key nnsight would send: ``NDIF_API_KEY``, else nnsight's configured default."""
    key = os.environ.get("NDIF_API_KEY")
    if key:
        return key
    from nnsight import CONFIG

    return getattr(CONFIG.API, "APIKEY", None) or None


def hosted_models() -> dict[str, str]:
    """{Hugging Face id: status} of the models NDIF reports, from ``nnsight.status()`` (empty when the service
    cannot be reached: nnsight then prints that it is down)."""
    import nnsight

    try:
        st = nnsight.status()
    except Exception:  # nnsight catches its own network errors; anything else means no usable answer
        return {}
    out = {}
    for repo, entry in dict(st).items():
        status = getattr(entry, "status", None) or (entry.get("status") if isinstance(entry, dict) else entry)
        out[str(repo)] = str(getattr(status, "name", status))
    return out


def check_ndif(name: str) -> None:
    """Raise :class:`RemoteError` with what to do unless ``name`` can run on NDIF now: a key is set, the name is
    a Hugging Face id, and NDIF reports the model as running."""
    if not ndif_api_key():
        raise RemoteError("activations_backend 'ndif' needs an NDIF API key: set the environment variable "
                          "NDIF_API_KEY (or call nnsight.CONFIG.set_default_api_key(KEY) once); keys are issued "
                          "by NDIF's login page. Nothing was run or written.")
    if not _looks_like_hub_id(name):
        raise RemoteError(f"NDIF runs models by their Hugging Face id (org/name); '{name}' is not one. The workbook's "
                          "packaged models run locally: use activations_backend 'local'.")
    hosted = hosted_models()
    if not hosted:
        raise RemoteError("NDIF did not answer its status request (no network, or the service is down): "
                          "nnsight.status() returned nothing. Nothing was run or written.")
    if hosted.get(name, "").upper() not in ("RUNNING", "UP"):
        up = sorted(m for m, s in hosted.items() if s.upper() in ("RUNNING", "UP"))
        raise RemoteError(f"NDIF does not report '{name}' as running (status: {hosted.get(name, 'not listed')}). "
                          f"Running now: {', '.join(up) or 'none'}. Choose one of those, or run locally.")


def load_ndif(name: str) -> LoadedModel:
    """``name`` on NDIF: checked (:func:`check_ndif`), built from its Hugging Face id with meta weights; every
    trace of the returned model runs remotely."""
    check_ndif(name)
    from nnsight.modeling.transformers import TransformersModel

    lm = TransformersModel(name, task="text-generation")
    tok = lm.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    import torch

    dtype = getattr(lm._module.config, "torch_dtype", None) or torch.bfloat16
    return LoadedModel(lm=lm, tokenizer=tok, name=name, source="ndif", dtype=dtype, device=torch.device("cpu"),
                       layers_path=find_layers_path(lm._module), remote=True)


def load_for_activations(name: str, *, backend: str, dtype: str = "auto", device: str = "auto") -> Any:
    """The model the CETT passes use under ``backend`` (see the module's docstring), loaded in ``dtype``:
    :func:`~hneuron_utils.models.for_cett` with no model loaded yet."""
    from hneuron_utils.models import for_cett

    return for_cett(None, name, dtype, device=device, backend=backend)


def simulated(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` with every trace run through nnsight's in-process simulation of NDIF (``remote="local"``)."""
    return dataclasses.replace(loaded, remote="local", source=f"{loaded.source} (traces through nnsight remote='local')")
