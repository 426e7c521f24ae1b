"""One loader for every model the workbook runs on, returning an nnsight-wrapped model.

``load_model(name)`` accepts a short name from the asset registry (``qwen2.5-coder-1.5b-instruct``,
``smollm2-135m-instruct``, ...), ``tiny-random``, any Hugging Face model id, or a local directory.
The result gives one way to reach each layer's gated-FFN ``down_proj`` across the Llama, Qwen2 and
Gemma3 architectures: ``loaded.down_proj(i)`` (nnsight Envoy) / ``loaded.down_proj_module(i)``.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hneuron_utils.models import assets

TINY = "tiny-random"
# Where the decoder layers live, per architecture family (first match wins).
LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers")
# End-of-turn tokens that must also stop generation when present in a vocabulary.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end_of_text|>", "</s>")


class ModelError(ValueError):
    """A model name or architecture the workbook cannot use."""


def known_names() -> list[str]:
    return assets.known_names() + [TINY]


def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device='cuda' was requested but no CUDA device is available")
    return torch.device(device)


def resolve_dtype(dtype: str = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """'auto' -> bfloat16 on a GPU or CPU with native bf16 support, else float32."""
    device = torch.device(device)
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if dtype not in ("bfloat16", "float32", "float16"):
        raise ModelError(f"Unknown dtype '{dtype}'; use auto, bfloat16, float32 or float16")
    return getattr(torch, dtype)


@dataclass
class LoadedModel:
    """An nnsight-wrapped causal LM plus what the workbook needs to know about it."""

    lm: Any  # nnsight TransformersModel
    tokenizer: Any
    name: str
    source: str  # "registry" | "tiny" | "hub-or-path"
    dtype: torch.dtype
    device: torch.device
    layers_path: str
    load_seconds: float = 0.0
    info: dict = field(default_factory=dict)
    remote: bool | str = False  # where its traces run: False = here; True = NDIF; "local" = nnsight's simulation

    @property
    def hf(self) -> torch.nn.Module:
        """The underlying transformers model (no nnsight tracing)."""
        return self.lm._module

    @functools.cached_property
    def _hf_layers(self) -> torch.nn.ModuleList:
        return functools.reduce(getattr, self.layers_path.split("."), self.hf)

    @property
    def n_layers(self) -> int:
        return len(self._hf_layers)

    @property
    def d_ff(self) -> int:
        return self.down_proj_module(0).in_features

    @property
    def d_model(self) -> int:
        return self.down_proj_module(0).out_features

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_ff

    def layer(self, i: int) -> Any:
        """The nnsight Envoy of decoder layer ``i``."""
        return functools.reduce(getattr, self.layers_path.split("."), self.lm)[i]

    def down_proj(self, i: int) -> Any:
        """The nnsight Envoy of layer ``i``'s ``mlp.down_proj`` (its ``.input`` is the gated product z)."""
        return self.layer(i).mlp.down_proj

    def down_proj_module(self, i: int) -> torch.nn.Linear:
        return self._hf_layers[i].mlp.down_proj

    def stop_token_ids(self) -> list[int]:
        return stop_token_ids(self.tokenizer, self.hf)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "source": self.source, "architecture": type(self.hf).__name__,
                "dtype": str(self.dtype).replace("torch.", ""), "device": str(self.device),
                "layers": self.n_layers, "d_model": self.d_model, "d_ff (neurons per layer)": self.d_ff,
                "FFN neurons in total": self.n_neurons, "parameters": sum(p.numel() for p in self.hf.parameters()),
                "load seconds": round(self.load_seconds, 2), **self.info}


def stop_token_ids(tokenizer: Any, hf_model: torch.nn.Module | None = None) -> list[int]:
    """Every id that ends an assistant turn: eos, the generation config's eos and known end-of-turn tokens."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(hf_model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update([gen_eos] if isinstance(gen_eos, int) else list(gen_eos))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in STOP_TOKENS if t in vocab)
    return sorted(ids)


def find_layers_path(hf_model: torch.nn.Module) -> str:
    """The attribute path of the decoder layers; fails unless every layer has a gated FFN."""
    for path in LAYER_PATHS:
        try:
            layers = functools.reduce(getattr, path.split("."), hf_model)
        except AttributeError:
            continue
        mlp = getattr(layers[0], "mlp", None)
        if mlp is None or not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
            raise ModelError(f"{type(hf_model).__name__}: layers at '{path}' have no gated FFN "
                             "(mlp.gate_proj / up_proj / down_proj); H-neurons need a gated FFN")
        return path
    raise ModelError(f"{type(hf_model).__name__}: could not find the decoder layers (tried {LAYER_PATHS})")


def _looks_like_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name))


def _load_hf(name: str, torch_dtype: torch.dtype, device: torch.device) -> tuple[Any, Any, str, dict]:
    """Load (model, tokenizer, source, info) for any accepted name, without transformers' "Loading
    weights" progress bar (noise in every executed notebook)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _load_hf_quiet(name, torch_dtype, device)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _load_hf_quiet(name: str, torch_dtype: torch.dtype, device: torch.device) -> tuple[Any, Any, str, dict]:
    """:func:`_load_hf`'s body."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == TINY:
        from hneuron_utils.models import tiny

        tok = tiny.build_tokenizer()
        return tiny.build_model(tok, dtype=torch_dtype), tok, "tiny", {}
    if name in assets.REGISTRY:
        d = assets.ensure_model(name, str(torch_dtype).replace("torch.", ""))
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch_dtype, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
        a = assets.REGISTRY[name]
        return model, tok, "registry", {"upstream": a.upstream, "licence": a.licence, "weights": str(d),
                                        "weights_sha256": a.sha256}
    if Path(name).expanduser().is_dir() or _looks_like_hub_id(name):
        try:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
            tok = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise ModelError(f"Could not load '{name}' as a Hugging Face model id or local directory: {e}\n"
                             f"Offline, use one of the packaged models: {', '.join(known_names())}") from e
        return model, tok, "hub-or-path", {}
    raise ModelError(f"Unknown model name '{name}'. Known names: {', '.join(known_names())}; "
                     "or pass a Hugging Face model id (org/name) or a local directory.")


def contiguous_lm_head_input(hf_model: torch.nn.Module) -> None:
    """Make the output head's input contiguous (a forward pre-hook; no numerical change).

    With ``logits_to_keep=1`` transformers feeds the head a strided slice ``hidden[:, -1:, :]``; torch
    2.13 on CPU then runs the [B,1,d]·[d,V] product as a batched matmul that first copies the whole
    head weight B times (measured: 9.4 s of a 13.2 s forward of 8 × 56 tokens on Qwen-1.5B in bf16).
    A contiguous input takes the plain matmul path instead.
    """
    head = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_hneuron_contiguous", False):
        head.register_forward_pre_hook(lambda mod, args: (args[0].contiguous(), *args[1:]))
        head._hneuron_contiguous = True


def load_model(name: str, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    """Load ``name`` (registry short name, ``tiny-random``, HF id or local dir), wrapped in nnsight."""
    from nnsight.modeling.transformers import TransformersModel

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    t0 = time.perf_counter()
    hf_model, tok, source, info = _load_hf(name, torch_dtype, dev)
    hf_model = hf_model.to(dev).eval().requires_grad_(False)  # inference only: no autograd graphs
    layers_path = find_layers_path(hf_model)
    contiguous_lm_head_input(hf_model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    lm = TransformersModel(hf_model, tokenizer=tok, task="text-generation", dispatch=True)
    tok.padding_side = "left"
    return LoadedModel(lm=lm, tokenizer=tok, name=name, source=source, dtype=torch_dtype, device=dev,
                       layers_path=layers_path, load_seconds=time.perf_counter() - t0, info=info)


def load_tokenizer(name: str) -> Any:
    """The tokenizer of ``name`` (any name :func:`load_model` accepts) without its weights, left-padded
    with a pad token as :func:`load_model` sets them: the prompts' side of a model that a server runs
    (``sampling_backend: openai``). A registry model's comes from a converted copy already in the cache
    (any dtype), else straight from its GGUF (fetched if needed, not converted)."""
    from transformers import AutoTokenizer

    if name == TINY:
        from hneuron_utils.models import tiny

        tok = tiny.build_tokenizer()
    elif name in assets.REGISTRY:
        done = [d for d in (assets.model_dir(name, t) for t in ("bfloat16", "float32", "float16"))
                if (d / assets.MANIFEST).exists()]
        if done:
            tok = AutoTokenizer.from_pretrained(done[0], local_files_only=True)
        else:
            src = assets.fetch_gguf(name)
            tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    elif Path(name).expanduser().is_dir() or _looks_like_hub_id(name):
        try:
            tok = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise ModelError(f"Could not load the tokenizer of '{name}' as a Hugging Face model id or local "
                             f"directory: {e}") from e
    else:
        raise ModelError(f"Unknown model name '{name}'. Known names: {', '.join(known_names())}; "
                         "or pass a Hugging Face model id (org/name) or a local directory.")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def for_cett(loaded: Any, name: str, cett_dtype: str, device: str = "auto", backend: str = "local") -> Any:
    """The model to run the CETT pass with: ``loaded`` itself when it already has ``cett_dtype`` (or
    ``cett_dtype`` is "auto"), else ``name`` loaded again in ``cett_dtype`` — so that classifiers see
    features of the precision they were trained on (notebook 02's). ``backend`` (the ``activations_backend``
    parameter): 'ndif' = ``name`` on NDIF instead; 'ndif-local' = that model with its traces run through
    nnsight's simulation of NDIF (:mod:`hneuron_utils.models.remote`)."""
    from hneuron_utils.models import remote

    if backend == "ndif":
        return remote.load_ndif(name)
    if backend not in remote.BACKENDS:
        raise ValueError(f"activations_backend must be one of {remote.BACKENDS}, got {backend!r}")
    if not isinstance(loaded, LoadedModel):  # none loaded yet, or one a server samples (sampling_backend 'openai')
        m = load_model(name, dtype=cett_dtype, device=device)
    elif cett_dtype in ("auto", str(loaded.dtype).replace("torch.", "")):
        m = loaded
    else:
        m = load_model(name, dtype=cett_dtype, device=device)
    return remote.simulated(m) if backend == "ndif-local" else m

def model_key(loaded: Any) -> dict[str, Any]:
    """What identifies a model's outputs in stage keys: its name, architecture, dtype, size and, for a
    registry model, the sha256 of its weights file (the content, never the cache folder, so that a stage
    cache or a committed result made on another machine is found again)."""
    d = loaded.describe()
    return {k: d.get(k) for k in ("model", "source", "architecture", "dtype", "parameters", "weights_sha256")}
