"""Sampling through an OpenAI-compatible server (``sampling_backend: openai``).

A :class:`ServedModel` stands in for a loaded model wherever answers are only *sampled* (notebook 01's
labelling, 04's test sets): :func:`hneuron_utils.text.generation.sample_many` hands it the prompts, and it
sends one ``POST <base_url>/completions`` per sample. The chat template is applied here, with the local
tokenizer, so the prompt text is exactly the local path's; the server receives one raw string and applies
nothing. Servers known to work: vLLM's ``vllm serve MODEL``, ``transformers serve DIR`` and llama.cpp's
``llama-server``.

They differ in how the sampling settings are spelt (the *dialect*, negotiated once by :meth:`ServedModel.check`
with a one-token probe):

- ``vllm``: ``temperature`` / ``top_p`` / ``top_k`` / ``seed`` / ``stop_token_ids`` in the request body;
- ``openai``: the same without ``stop_token_ids`` (a server that rejects that field; llama.cpp ignores it);
- ``transformers``: ``transformers serve`` rejects ``top_k`` (422) and ignores ``temperature`` unless sampling
  is switched on; it takes a ``generation_config`` (a JSON string replacing the model's generation config)
  and a ``seed`` that seeds its global torch generator.

Only the standard library is used (``urllib``): no client package is needed to sample.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Sequence

from hneuron_utils.models import STOP_TOKENS, stop_token_ids
from hneuron_utils.text.generation import Sample, Sampling

DIALECTS = ("vllm", "openai", "transformers")
START_HINT = ("start one with `vllm serve MODEL` or `transformers serve DIR --host 127.0.0.1`; "
              "set sampling_base_url to its API root (e.g. http://127.0.0.1:8000/v1)")
HEALTH_TIMEOUT_S = 5.0
PROBE_PROMPT = "Hello"


class ServerError(RuntimeError):
    """The sampling server could not be reached or refused a request. ``status`` is the HTTP status of a
    refusal (None when nothing answered), ``detail`` the server's message."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def per_sample_seed(seed: int, key: str, k: int) -> int:
    """The server-side seed of sample ``k`` of prompt ``key`` (from SHA-256; below 2**31, which every
    server accepts)."""
    h = hashlib.sha256(f"{seed}|{key}|{k}|served".encode()).digest()
    return int.from_bytes(h[:8], "little") % (1 << 31)


def _message(raw: bytes) -> str:
    """The error text of a server's answer: FastAPI's ``detail``, OpenAI's ``error.message``, else the body."""
    text = raw.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if obj.get("detail") is not None:
            return str(obj["detail"])
        if isinstance(err, str):
            return err
    return text.strip()[:500]


_RETRYABLE = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException)


@dataclass
class ServedModel:
    """A model behind an OpenAI-compatible completions endpoint, with the local ``tokenizer`` for prompts.

    ``base_url`` is the API root (``http://HOST:PORT/v1``), ``served_model`` the name the server knows the
    model by, ``name`` the workbook's model name. Each request waits at most ``timeout_s``; connection errors,
    timeouts and 5xx answers are retried ``retries`` times (backoff ``backoff_s`` × 1, 2, 4, ...), a 4xx
    answer never. ``concurrency`` requests are in flight at once.

    Reproducibility: every sample sends its own seed, derived from (seed, prompt key, sample index) by
    :func:`per_sample_seed`, so a re-run or a resumed run asks for the same samples. vLLM seeds each
    request's own generator, so its samples do not depend on ``concurrency``. ``transformers serve``
    seeds one *global* torch generator per request: with ``concurrency`` > 1 two requests can interleave
    and draw from each other's stream, so only ``concurrency: 1`` reproduces its samples exactly (the
    seeds are still sent; nothing forces concurrency 1). Either way the samples differ from the local
    backend's, which draws from its own per-token generators.
    """

    base_url: str
    served_model: str
    tokenizer: Any
    name: str
    timeout_s: float = 120.0
    retries: int = 3
    concurrency: int = 8
    backoff_s: float = 0.5
    dialect: str | None = None  # None until negotiated by check() (or the first sample call)
    health: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.dialect is not None and self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS} or None, got {self.dialect!r}")
        if self.concurrency < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("need concurrency >= 1, retries >= 0 and timeout_s > 0")

    # ---------------------------------------------------------------------------------------- HTTP

    def _http(self, method: str, url: str, body: dict | None = None, timeout: float | None = None,
              retries: int | None = None) -> dict:
        """One JSON request, retried on connection errors, timeouts and 5xx; a 4xx raises at once.
        Raises :class:`ServerError` (``status`` None when nothing answered)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        tries = 1 + (self.retries if retries is None else retries)
        last = ""
        for attempt in range(tries):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=timeout or self.timeout_s) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw)
                except ValueError as e:
                    raise ServerError(f"{method} {url}: the answer is not JSON: {raw[:200]!r}", 200) from e
            except urllib.error.HTTPError as e:
                detail = _message(e.read())
                if e.code < 500:
                    raise ServerError(f"{method} {url} → HTTP {e.code}: {detail}", e.code, detail) from None
                last = f"HTTP {e.code}: {detail}"
                status: int | None = e.code
            except _RETRYABLE as e:
                last = str(getattr(e, "reason", None) or e) or type(e).__name__
                status = None
        raise ServerError(f"{method} {url} failed {tries} time(s); last: {last}", status, last)

    def _root(self) -> str:
        """The server's root (the base URL without a trailing ``/v1``)."""
        return self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

    # ------------------------------------------------------------------------------- check, dialect

    def check(self) -> dict[str, Any]:
        """Whether the server answers and serves ``served_model``; negotiates the dialect once.
        Returns {base_url, served_model, health (the URL that answered), dialect}."""
        tried: list[str] = []
        answered = None
        for url in dict.fromkeys([f"{self.base_url}/health", f"{self._root()}/health", f"{self.base_url}/models"]):
            try:
                self._http("GET", url, timeout=HEALTH_TIMEOUT_S, retries=0)
                answered = url
                break
            except ServerError as e:
                tried.append(f"{url}: {e.detail or e}")
        if answered is None:
            raise ServerError(f"No OpenAI-compatible server answers at {self.base_url} (tried " + "; ".join(tried)
                              + f"). To sample through a server, {START_HINT}.")
        self.health = {"url": answered}
        self._negotiate()
        return {"base_url": self.base_url, "served_model": self.served_model, "health": answered,
                "dialect": self.dialect}

    def _probe(self, dialect: str) -> dict:
        body = self._body(PROBE_PROMPT, Sampling(do_sample=True, max_new_tokens=1), dialect, seed=0)
        return self._http("POST", f"{self.base_url}/completions", body, retries=1)

    def _model_error(self, e: ServerError) -> ServerError:
        if e.status in (400, 404) and self.served_model in (e.detail or ""):
            return ServerError(f"The server at {self.base_url} does not serve the model '{self.served_model}' "
                               f"(sampling_served_model, null = the model parameter): {e.detail}", e.status, e.detail)
        if e.status == 404:
            return ServerError(f"{self.base_url}/completions was not found ({e.detail}): is sampling_base_url the "
                               "API root (it usually ends in /v1)?", e.status, e.detail)
        return e

    def _negotiate(self) -> str:
        """Find the dialect with a one-token probe in vLLM's style (``top_k``, ``seed``, ``stop_token_ids`` in
        the body); a 4xx naming ``top_k`` means transformers serve (``generation_config``), one naming only
        ``stop_token_ids`` a server that takes top_k but not that (``openai``). The answer is kept."""
        if self.dialect is not None:
            return self.dialect
        dialect = "vllm"
        for _ in DIALECTS:
            try:
                self._probe(dialect)
            except ServerError as e:
                d = e.detail or ""
                if e.status in (400, 422) and dialect == "vllm" and "top_k" in d:
                    dialect = "transformers"
                    continue
                if e.status in (400, 422) and dialect == "vllm" and "stop_token_ids" in d:
                    dialect = "openai"
                    continue
                raise self._model_error(e) from None
            self.dialect = dialect
            return dialect
        raise ServerError(f"The server at {self.base_url} refused every sampling dialect ({DIALECTS})")

    # ----------------------------------------------------------------------------------- sampling

    def stop_token_ids(self) -> list[int]:
        """The end-of-turn ids the local path stops at (sent to the server where its dialect allows)."""
        return stop_token_ids(self.tokenizer)

    def _body(self, prompt: str, sampling: Sampling, dialect: str, seed: int | None) -> dict:
        body: dict[str, Any] = {"model": self.served_model, "prompt": prompt, "max_tokens": sampling.max_new_tokens}
        if dialect == "transformers":
            gen: dict[str, Any] = {"do_sample": sampling.do_sample, "max_new_tokens": sampling.max_new_tokens,
                                   "eos_token_id": self.stop_token_ids()}
            if sampling.do_sample:
                gen.update(temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)
                body["seed"] = seed
            body["generation_config"] = json.dumps(gen)
            return body
        if sampling.do_sample:
            body.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k, seed=seed)
        else:
            body.update(temperature=0.0)
        if dialect == "vllm":
            body["stop_token_ids"] = self.stop_token_ids()
        return body

    def _clean(self, text: str) -> str:
        """The answer as the local path decodes it: cut at an end-of-turn token's text (a server that
        returns special tokens), other special tokens removed, stripped."""
        vocab = self.tokenizer.get_vocab()
        for t in STOP_TOKENS:
            if t in vocab and t in text:
                text = text[:text.index(t)]
        for t in getattr(self.tokenizer, "all_special_tokens", []):
            if t:
                text = text.replace(t, "")
        return text.strip()

    def _one(self, body: dict) -> Sample:
        try:
            got = self._http("POST", f"{self.base_url}/completions", body)
        except ServerError as e:
            raise self._model_error(e) from None
        try:
            choice = got["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise ServerError(f"{self.base_url}/completions answered without choices: {str(got)[:300]}") from None
        text = self._clean(choice.get("text") or "")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        return Sample(text=text, token_ids=list(ids), stopped=choice.get("finish_reason") == "stop")

    def sample(self, prompts: Sequence[str], n_samples: int, sampling: Sampling, seed: int,
               keys: Sequence[str], *, first_sample: int = 0) -> list[list[Sample]]:
        """``n_samples`` completions (indices ``first_sample`` .. ``first_sample + n_samples - 1``) of every
        prompt (already chat-templated text), one request each, ``concurrency`` at a time. Greedy when
        ``sampling.do_sample`` is False. ``Sample.token_ids`` is the local tokenizer's encoding of the
        returned text (the server's own ids are not returned); ``stopped`` = the server's finish_reason
        is "stop". Raises :class:`ServerError` (after the retries) on the first failed request."""
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        if not sampling.do_sample and n_samples > 1:
            raise ValueError("greedy decoding gives identical samples: use n_samples=1 or do_sample=True")
        keys = [str(k) for k in keys]
        if len(keys) != len(prompts):
            raise ValueError("keys must name every prompt")
        dialect = self._negotiate()
        jobs = [(i, j, self._body(p, sampling, dialect, per_sample_seed(seed, keys[i], first_sample + j)))
                for i, p in enumerate(prompts) for j in range(n_samples)]
        out: list[list[Sample | None]] = [[None] * n_samples for _ in prompts]
        if not jobs:
            return []
        ex = ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)), thread_name_prefix="served")
        try:
            futures = {ex.submit(self._one, body): (i, j) for i, j, body in jobs}
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None:
                    raise f.exception()
            for f, (i, j) in futures.items():
                out[i][j] = f.result()
        finally:
            ex.shutdown(wait=True, cancel_futures=True)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------- bookkeeping

    def describe(self) -> dict[str, Any]:
        """What the workbook records about the model (``models.model_key`` reads the stage-key fields:
        the served model's id stands in for the architecture and weights, which the server keeps)."""
        return {"model": self.name, "source": f"openai:{self.served_model}", "architecture": None,
                "dtype": "server", "parameters": None, "weights_sha256": None, "base_url": self.base_url,
                "dialect": self.dialect, "concurrency": self.concurrency}


def served_model_for(*, model: str, base_url: str | None, served_model: str | None, concurrency: int,
                     tokenizer: Any) -> ServedModel:
    """The :class:`ServedModel` of the workbook's parameters (``sampling_backend: openai``): ``model`` names
    it (and the server's model unless ``served_model``); ``base_url`` is required."""
    if not base_url:
        raise ValueError(f"sampling_backend 'openai' needs sampling_base_url (the server's API root, e.g. "
                         f"http://127.0.0.1:8000/v1): {START_HINT}")
    return ServedModel(base_url=base_url, served_model=served_model or model, tokenizer=tokenizer, name=model,
                       concurrency=concurrency)


def sampler_for(*, backend: str, model: str, dtype: str, device: str, base_url: str | None = None,
                served_model: str | None = None, concurrency: int = 8) -> Any:
    """What draws a notebook's answers under the ``sampling_backend`` parameter: the local model ('local'),
    or the model behind an OpenAI-compatible server ('openai': only its tokenizer is loaded here, to build
    the prompts; the server is checked, and its dialect negotiated, before anything is sampled)."""
    from hneuron_utils import models

    if backend == "local":
        return models.load_model(model, dtype=dtype, device=device)
    if backend != "openai":
        raise ValueError(f"sampling_backend must be 'local' or 'openai', got {backend!r}")
    served = served_model_for(model=model, base_url=base_url, served_model=served_model, concurrency=concurrency,
                              tokenizer=models.load_tokenizer(model))
    served.check()
    return served
