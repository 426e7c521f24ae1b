"""Sampling through an OpenAI-compatible server (hneuron_utils.text.serving, ``sampling_backend: openai``).

Unit tests run against a fake server in this process that speaks like ``transformers serve`` (a 422 on
``top_k``, sampling settings in a ``generation_config`` JSON string, a pinned model) or like vLLM. One real
test starts ``transformers serve`` on the smoke model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import pytest

from hneuron_utils import models
from hneuron_utils.text import serving
from hneuron_utils.text.generation import PAPER_SUFFIX, Sampling, qa_prompt, sample_many

TS_FIELDS = {"model", "prompt", "max_tokens", "seed", "generation_config", "stop", "temperature", "top_p", "n",
             "stream", "echo", "logprobs", "suffix", "user", "frequency_penalty", "presence_penalty"}


class FakeServer:
    """An OpenAI-compatible server on 127.0.0.1 in a thread. ``dialect`` 'transformers' rejects fields
    transformers serve does not know (422, its message); 'vllm' takes them. ``fail_first`` answers that many
    completions with 500 first; ``status`` answers every completion with that status; ``answer(body)`` →
    (text, finish_reason); ``delay`` seconds per completion."""

    def __init__(self, dialect: str = "transformers", model: str = "served-x", fail_first: int = 0,
                 status: int | None = None, answer: Callable[[dict], tuple[str, str]] | None = None,
                 delay: float = 0.0) -> None:
        self.dialect, self.model, self.fail_left, self.status = dialect, model, fail_first, status
        self.answer = answer or self.echo
        self.delay = delay
        self.bodies: list[dict] = []  # every completion request's body, in arrival order
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, obj: dict) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/health":
                    return self._send(200, {"status": "ok"})
                self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/completions":
                    return self._send(404, {"detail": "Not Found"})
                with fake.lock:
                    fake.bodies.append(body)
                    fail = fake.fail_left > 0
                    fake.fail_left -= fail
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                try:
                    time.sleep(fake.delay)
                    if fail:
                        return self._send(500, {"detail": "Internal Server Error"})
                    if fake.status is not None:
                        return self._send(fake.status, {"detail": f"refused with {fake.status}"})
                    if fake.dialect == "transformers" and set(body) - TS_FIELDS:
                        return self._send(422, {"detail": f"Unexpected fields in the request: {set(body) - TS_FIELDS}"})
                    if body.get("model") not in (None, fake.model):
                        if fake.dialect == "transformers":
                            return self._send(400, {"detail": f"Server is pinned to '{fake.model}'; requested "
                                                              f"'{body['model']}'."})
                        return self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
                    text, finish = fake.answer(body)
                    self._send(200, {"choices": [{"index": 0, "text": text, "finish_reason": finish}]})
                finally:
                    with fake.lock:
                        fake.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def echo(body: dict) -> tuple[str, str]:
        """A canned answer naming the request's seed (greedy when it has none)."""
        return (f" seed {body['seed']}" if "seed" in body else " greedy"), "stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def completions(self) -> list[dict]:
        """The completion bodies after the dialect probes (those asking for one token)."""
        return [b for b in self.bodies if b.get("prompt") != serving.PROBE_PROMPT]

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("tiny-random")


def served(tok, fake: FakeServer | None = None, url: str | None = None, **kw: Any) -> serving.ServedModel:
    kw = {"backoff_s": 0.01, "timeout_s": 10.0, **kw}
    return serving.ServedModel(base_url=url or fake.url, served_model=kw.pop("served_model", "served-x"),
                               tokenizer=tok, name="tiny-random", **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


SAMPLED = Sampling(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, max_new_tokens=9)
GREEDY = Sampling(max_new_tokens=7)


def test_transformers_serve_dialect_is_negotiated_once(tok):
    with FakeServer("transformers") as fake:
        sm = served(tok, fake)
        info = sm.check()
        assert info["dialect"] == sm.dialect == "transformers"
        assert info["health"] == fake.url[:-3] + "/health"  # /v1/health 404s: the root's answers
        assert [("top_k" in b, "generation_config" in b) for b in fake.bodies] == [(True, False), (False, True)]
        assert all(b["model"] == "served-x" for b in fake.bodies)
        sm.sample(["p"], 1, GREEDY, seed=0, keys=["a"])
        sm.sample(["p"], 2, SAMPLED, seed=0, keys=["a"])
        assert len(fake.bodies) == 2 + 3  # no new probe
        greedy, s1, s2 = fake.completions()
        assert "seed" not in greedy and "top_k" not in greedy and greedy["max_tokens"] == 7
        assert json.loads(greedy["generation_config"]) == {"do_sample": False, "max_new_tokens": 7,
                                                           "eos_token_id": models.stop_token_ids(tok)}
        gen = json.loads(s1["generation_config"])
        assert gen == {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "max_new_tokens": 9,
                       "eos_token_id": models.stop_token_ids(tok)}
        assert s1["max_tokens"] == 9 and s1["seed"] != s2["seed"] and "top_k" not in s1


def test_vllm_dialect_sends_sampling_fields_in_the_body(tok):
    with FakeServer("vllm") as fake:
        sm = served(tok, fake)
        assert sm.check()["dialect"] == "vllm" and len(fake.bodies) == 1
        sm.sample(["p"], 1, GREEDY, seed=0, keys=["a"])
        sm.sample(["p"], 1, SAMPLED, seed=0, keys=["a"])
        greedy, sampled = fake.completions()
        assert greedy["temperature"] == 0.0 and "seed" not in greedy and "top_k" not in greedy
        assert {k: sampled[k] for k in ("temperature", "top_k", "top_p", "max_tokens")} == \
            {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "max_tokens": 9}
        assert sampled["stop_token_ids"] == models.stop_token_ids(tok) and "generation_config" not in sampled


def test_per_sample_seeds_are_deterministic_distinct_and_resumable(tok):
    with FakeServer("transformers") as fake:
        sm = served(tok, fake, concurrency=3)
        full = sm.sample(["p0", "p1"], 3, SAMPLED, seed=5, keys=["q0", "q1"])
        again = sm.sample(["p0", "p1"], 3, SAMPLED, seed=5, keys=["q0", "q1"])
        tail = sm.sample(["p0", "p1"], 2, SAMPLED, seed=5, keys=["q0", "q1"], first_sample=1)
        other = sm.sample(["p0", "p1"], 3, SAMPLED, seed=6, keys=["q0", "q1"])
    texts = [[s.text for s in row] for row in full]
    assert texts == [[s.text for s in row] for row in again]
    assert [row[1:] for row in texts] == [[s.text for s in row] for row in tail]  # samples 1..2, drawn later
    flat = [t for row in texts for t in row]
    assert len(set(flat)) == 6 and not set(flat) & {s.text for row in other for s in row}
    assert flat[0] == f"seed {serving.per_sample_seed(5, 'q0', 0)}"
    assert all(0 <= int(t.split()[1]) < 2 ** 31 for t in flat)


def test_samples_keep_prompt_order_and_concurrency_is_bounded(tok):
    with FakeServer("vllm", answer=lambda b: (b["prompt"].upper(), "stop"), delay=0.05) as fake:
        sm = served(tok, fake, concurrency=3, dialect="vllm")
        out = sample_many(sm, [f"p{i}" for i in range(8)], 2, SAMPLED, seed=0)
        assert 2 <= fake.max_active <= 3
    assert [[s.text for s in row] for row in out] == [[f"P{i}"] * 2 for i in range(8)]


def test_stopped_and_text_follow_the_server(tok):
    answers = {"a": ("  Paris<|im_end|>\n<|im_start|>user", "stop"), "b": (" cut off here", "length")}
    with FakeServer("vllm", answer=lambda b: answers[b["prompt"]]) as fake:
        (a,), (b,) = served(tok, fake, dialect="vllm").sample(["a", "b"], 1, GREEDY, seed=0, keys=["a", "b"])
    assert (a.text, a.stopped) == ("Paris", True) and (b.text, b.stopped) == ("cut off here", False)
    assert b.token_ids == tok("cut off here", add_special_tokens=False)["input_ids"]


def test_server_errors_are_retried_a_bounded_number_of_times(tok):
    with FakeServer("transformers", fail_first=2) as fake:
        sm = served(tok, fake, retries=3, dialect="transformers")
        assert sm.sample(["p"], 1, GREEDY, seed=0, keys=["a"])[0][0].text == "greedy"
        assert len(fake.bodies) == 3
    with FakeServer("transformers", fail_first=100) as fake:
        sm = served(tok, fake, retries=2, dialect="transformers")
        with pytest.raises(serving.ServerError, match="failed 3 time") as e:
            sm.sample(["p"], 1, GREEDY, seed=0, keys=["a"])
        assert e.value.status == 500 and len(fake.bodies) == 3


def test_a_refusal_is_not_retried(tok):
    with FakeServer("vllm", status=400) as fake:
        sm = served(tok, fake, retries=3, dialect="vllm")
        with pytest.raises(serving.ServerError, match="HTTP 400: refused with 400") as e:
            sm.sample(["p"], 1, GREEDY, seed=0, keys=["a"])
        assert e.value.status == 400 and len(fake.bodies) == 1


@pytest.mark.parametrize("dialect", ["transformers", "vllm"])
def test_an_unknown_served_model_is_named(tok, dialect):
    with FakeServer(dialect, model="the-real-one") as fake:
        with pytest.raises(serving.ServerError, match="does not serve the model 'served-x'") as e:
            served(tok, fake).check()
    assert e.value.status in (400, 404) and "served-x" in e.value.detail


def test_a_wrong_url_says_what_to_do_and_caches_nothing(tok):
    from hneuron_utils.data import QARecord, labelling
    from hneuron_utils.workbook import repro

    url = f"http://127.0.0.1:{closed_port()}/v1"
    sm = served(tok, url=url, retries=1, timeout_s=2.0)
    with pytest.raises(serving.ServerError, match="vllm serve MODEL") as e:
        sm.check()
    assert url in str(e.value) and "sampling_base_url" in str(e.value)
    with FakeServer("vllm") as fake:  # a server answering, but not at the API root
        with pytest.raises(serving.ServerError, match="ends in /v1"):
            served(tok, url=fake.url[:-3]).check()
    recs = [QARecord("q1", "Who wrote Hamlet?", ("Shakespeare",), "test")]
    with repro.isolated_stage_cache("hneuron-serving-") as cache:
        with pytest.raises(serving.ServerError):
            labelling.greedy_answers(served(tok, url=url, retries=0), recs, 8, 4, progress=False)
        with pytest.raises(serving.ServerError):
            labelling.sampled_answers(served(tok, url=url, retries=0, dialect="vllm"), recs, SAMPLED, 2, 0, batch_size=4)
        assert not list(cache.glob("stages/*/*/items.jsonl"))  # no answer cached (only the stages' params.json)


def test_served_model_for_needs_a_base_url_and_names_the_cache_key(tok):
    from hneuron_utils.models import model_key

    with pytest.raises(ValueError, match="sampling_base_url"):
        serving.served_model_for(model="m", base_url=None, served_model=None, concurrency=2, tokenizer=tok)
    sm = serving.served_model_for(model="m", base_url="http://h:1/v1/", served_model=None, concurrency=2,
                                  tokenizer=tok)
    assert (sm.base_url, sm.served_model, sm.concurrency) == ("http://h:1/v1", "m", 2)
    assert model_key(sm) == {"model": "m", "source": "openai:m", "architecture": None, "dtype": "server",
                             "parameters": None, "weights_sha256": None}
    other = serving.served_model_for(model="m", base_url="http://h:1/v1", served_model="org/m-awq",
                                     concurrency=2, tokenizer=tok)
    assert model_key(other)["source"] == "openai:org/m-awq"


def test_sample_many_rejects_local_only_arguments(tok):
    sm = served(tok, url="http://127.0.0.1:9/v1", dialect="vllm")
    with pytest.raises(ValueError, match="local model"):
        sample_many(sm, ["p"], 1, GREEDY, forward=lambda m, **kw: m(**kw))
    with pytest.raises(ValueError, match="local model"):
        sample_many(sm, ["p"], 1, GREEDY, stop_at_newline=True)
    with pytest.raises(ValueError, match="greedy"):
        sample_many(sm, ["p"], 2, GREEDY)


# ------------------------------------------------------------------------------ notebook 01 on a server


def trivia_answerer(tok_name: str = "tiny-random") -> Callable[[dict], tuple[str, str]]:
    """A fake model for notebook 01: it reads the question back from the chat-templated prompt and answers
    half the TriviaQA questions (chosen by a hash of the id) with a gold alias, the rest wrongly, every time."""
    from hneuron_utils import data, judges

    by_question = {r.question.strip(): r for r in data.load_dataset("triviaqa")}

    def answer(body: dict) -> tuple[str, str]:
        if PAPER_SUFFIX not in body["prompt"]:  # the dialect probe
            return "Hi", "length"
        q = body["prompt"].split("user\n", 1)[1].split(PAPER_SUFFIX, 1)[0].strip()
        r = by_question[q]
        good = judges.usable_aliases(r.question, r.answers)
        right = good and hashlib.sha256(r.id.encode()).digest()[0] % 2 == 0
        return (f"It is {good[0]}." if right else "Zzyzx Quux."), "stop"

    return answer


@pytest.mark.notebooks
def test_notebook_01_builds_its_dataset_from_a_served_model():
    """Notebook 01 end to end with sampling_backend 'openai' (smoke profile, the tiny model's tokenizer): the
    answers come from a fake transformers-serve that knows half the questions. A real server on this 2-core
    machine is too slow for this (test_transformers_serve_samples_answers measures ~2 s per answer; the
    smoke model answers ~1 question in 32 right, so filling 01's minimum of 5 faithful questions takes ~160
    greedy answers)."""
    import pandas as pd

    from hneuron_utils.workbook import repro, run
    from hneuron_utils.paths import run_dir

    with FakeServer("transformers", model="tiny-random", answer=trivia_answerer()) as fake, \
            repro.isolated_stage_cache("hneuron-serving-nb-"):
        log = run.run("smoke", only=["01"], run_name="smoke-openai-fake", log_output=False,
                      overrides={"model": "tiny-random", "sampling_backend": "openai", "sampling_base_url": fake.url,
                                 "sampling_served_model": None, "sampling_concurrency": 4, "figures_dir": None,
                                 "pool_size": 120})  # the smoke profile walks the whole pool: 120 suffice here
    assert log["notebooks"]["01_build_dataset.ipynb"]["status"] == "ok"
    assert fake.bodies and all(b["model"] == "tiny-random" for b in fake.bodies)
    ex = pd.read_json(run_dir("smoke-openai-fake") / "data" / "01_examples.jsonl", lines=True)
    assert set(ex["class"]) == {"faithful", "hallucinated"}
    assert set(ex.response) == {"Zzyzx Quux."} | {r for r in ex.response if r.startswith("It is ")}
    assert "transformers dialect" in (run_dir("smoke-openai-fake") / "01_build_dataset.ipynb").read_text()


# ------------------------------------------------------------------------------------- a real server


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log: Path, ready_s: float = 60.0):
    """``transformers serve`` on a free 127.0.0.1 port with ``model_dir`` preloaded; yields its API root and
    terminates it afterwards."""
    port = closed_port()
    # one torch thread: on a busy 2-core machine this served answers ~5x faster than the default (measured)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after {ready_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.mark.real_model
@pytest.mark.network
def test_transformers_serve_samples_answers(tmp_path):
    """The smoke model behind a real ``transformers serve``: the dialect is negotiated, labelling's greedy
    and sampled answers come back through it (greedy ones equal to the local model's: same prompt text),
    seeded samples repeat at concurrency 1, and the rule judge labels them."""
    from hneuron_utils import data, judges
    from hneuron_utils.data import labelling
    from hneuron_utils.models import assets
    from hneuron_utils.workbook import repro

    name = "smollm2-135m-instruct"
    model_dir = assets.ensure_model(name, "float32")
    recs = data.load_dataset("triviaqa")[:4]
    sampling = Sampling(do_sample=True, temperature=1.0, top_k=50, top_p=0.9, max_new_tokens=12)
    t0 = time.perf_counter()
    with transformers_serve(model_dir, tmp_path / "serve.log") as url:
        print(f"server ready in {time.perf_counter() - t0:.1f} s")
        sm = serving.served_model_for(model=name, base_url=url, served_model=str(model_dir), concurrency=1,
                                      tokenizer=models.load_tokenizer(name))
        assert sm.check()["dialect"] == "transformers"
        with repro.isolated_stage_cache("hneuron-serving-real-"):
            t1 = time.perf_counter()
            greedy = labelling.greedy_answers(sm, recs, 12, 4, progress=False)
            samples = labelling.sampled_answers(sm, recs, sampling, 2, 0, batch_size=4)
            print(f"4 greedy + 8 sampled answers in {time.perf_counter() - t1:.1f} s")
        with repro.isolated_stage_cache("hneuron-serving-real-"):  # nothing cached: asked again, same samples
            assert labelling.sampled_answers(sm, recs, sampling, 2, 0, batch_size=4) == samples
    local = models.load_model(name, dtype="float32")
    prompts = [qa_prompt(local.tokenizer, r.question) for r in recs]
    assert [sm.tokenizer.decode(sm.tokenizer(p)["input_ids"]) for p in prompts] == prompts
    want = sample_many(local, prompts, 1, Sampling(max_new_tokens=12), keys=[r.id for r in recs], progress=False)
    assert [greedy[r.id]["text"] for r in recs] == [o[0].text for o in want]
    judge, rule = judges.RuleJudge(), labelling.Rule(2, 1, 0)
    for r in recs:
        texts = [x["text"] for x in samples[r.id]]
        assert len(texts) == 2 and all(isinstance(t, str) and t for t in texts)
        got = labelling.judge_samples(judge, rule, r, samples[r.id])
        verdicts = [judge.judge(r.question, t, r.answers) for t in texts]
        assert got["samples"] == texts and got["n_correct"] == sum(v.correct for v in verdicts)
        assert got["label"] == rule.label(got["n_correct"], sum(v.refusal for v in verdicts), 0)


@pytest.mark.real_model
@pytest.mark.network
def test_load_tokenizer_from_the_gguf_equals_the_converted_copys(monkeypatch):
    """Without a converted copy in the cache, a registry model's tokenizer is read from its GGUF (no
    conversion): the same prompts, the same ids, the same pad token."""
    from hneuron_utils.models import assets

    name = "smollm2-135m-instruct"
    assets.ensure_model(name, "float32")
    converted = models.load_tokenizer(name)
    monkeypatch.setattr(assets, "MANIFEST", "no-converted-copy.json")  # every converted copy looks absent
    from_gguf = models.load_tokenizer(name)
    p = qa_prompt(converted, "Who wrote Hamlet?")
    assert qa_prompt(from_gguf, "Who wrote Hamlet?") == p and from_gguf(p)["input_ids"] == converted(p)["input_ids"]
    assert (from_gguf.pad_token, from_gguf.padding_side) == (converted.pad_token, "left")
    assert models.stop_token_ids(from_gguf) == models.stop_token_ids(converted)


def test_sampler_for_picks_the_backend_and_for_cett_loads_a_served_models_weights_here():
    from hneuron_utils import models

    local = serving.sampler_for(backend="local", model="tiny-random", dtype="float32", device="cpu")
    assert isinstance(local, models.LoadedModel)
    with pytest.raises(ValueError, match="sampling_base_url"):
        serving.sampler_for(backend="openai", model="tiny-random", dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="sampling_backend"):
        serving.sampler_for(backend="grpc", model="tiny-random", dtype="float32", device="cpu")
    served = serving.ServedModel(base_url="http://127.0.0.1:9/v1", served_model="x", name="tiny-random",
                                 tokenizer=local.tokenizer)
    cett_model = models.for_cett(served, "tiny-random", "float32", device="cpu")
    assert isinstance(cett_model, models.LoadedModel) and cett_model.name == "tiny-random"
