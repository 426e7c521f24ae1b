"""The by-hand method cells of notebooks 05 (the α write in a visible nnsight trace, checked against the
batched engine's row) and 07 (one monitored decoding step, checked against the teacher-forced pass), run as
they stand in the notebooks on the tiny model: their checks pass, they leave the model as it was, and they
come before (05) or beside (07) the package's step that they explain."""
import types

import numpy as np
import pytest
import torch

from hneuron_utils.paths import project_root
from notebook_cells import cells as _cells, position as _position, run_cells as _run

NB05 = project_root() / "notebooks" / "05_intervention.ipynb"
NB07 = project_root() / "notebooks" / "07_streaming_monitor.ipynb"
# the method cells, in order (their ids are fixed in the committed notebooks)
CELLS_05 = ["01736a64", "119b0c33", "cde5dcd4", "0f0aedbe", "c2c333c3"]
CELLS_07 = ["385c0378", "aaf959fb", "d456a773", "e1d8053f", "b9a07219"]
QUESTIONS = ["Why is the sun cold?", "Why do cats bark at the moon every night of the year, and what does it mean?",
             "Who wrote Hamlet?", "Name a prime number.", "Why is the sky blue?"]


def _hooks(loaded) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in loaded.hf.modules())


def _logits(loaded, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        return loaded.hf(**loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)).logits[0, -1]


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def model(request, tiny):
    from hneuron_utils import models

    return tiny if request.param == "float32" else models.load_model("tiny-random", dtype="bfloat16")


def test_the_method_cells_sit_where_they_explain():
    pos05 = {c.id: i for i, c in enumerate(_cells(NB05))}
    assert max(pos05[c] for c in CELLS_05) < _position(NB05, "steering.all_responses(")
    pos07 = {c.id: i for i, c in enumerate(_cells(NB07))}
    assert _position(NB07, "longform.cached_streams(") < min(pos07[c] for c in CELLS_07)
    assert max(pos07[c] for c in CELLS_07) < _position(NB07, "evaluation.precision_check(")
    for path, ids in ((NB05, CELLS_05), (NB07, CELLS_07)):  # every step has its markdown lead-in
        cells = _cells(path)
        pos = {c.id: i for i, c in enumerate(cells)}
        assert all(cells[pos[c] - 1].cell_type == "markdown" for c in ids[1:])


def test_05_the_write_by_hand_equals_the_engine_row(model):
    from hneuron_utils.text import generation

    items = {"falseqa": [types.SimpleNamespace(id=f"q{i}", question=q) for i, q in enumerate(QUESTIONS[:2])]}
    messages = {"falseqa": lambda it: [{"role": "user", "content": it.question}]}
    d_ff = model.d_ff
    sets = {"H-neurons": [d_ff + 5, 3, (model.n_layers - 1) * d_ff + 1, 9]}  # layers out of order, as 03's file lists them
    prompt = generation.render(model.tokenizer, messages["falseqa"](items["falseqa"][0]))
    hooks, before = _hooks(model), _logits(model, prompt)
    ns = _run(NB05, CELLS_05, {"cfg": types.SimpleNamespace(oc_benchmarks=["falseqa"]), "loaded": model,
                               "generation": generation, "messages": messages, "items": items, "alphas": [0.0, 1.0, 3.0],
                               "sets": sets})
    assert ns["demo_alpha"] == 3.0 and ns["demo_prompt"] == prompt  # the shorter prompt
    mask = ns["demo_batch"].attention_mask
    assert mask[0].sum() < mask.shape[1] == mask[1].sum()  # the by-hand row is padded in the engine's batch
    assert ns["moved"] > 1e-3  # the write moved the logits
    # nothing stays in the model
    assert _hooks(model) == hooks
    torch.testing.assert_close(_logits(model, prompt), before, rtol=0, atol=0)


def test_07_one_monitored_step_by_hand_equals_the_teacher_forced_pass(model):
    from sklearn.linear_model import LogisticRegression

    from hneuron_utils.monitor import live
    from hneuron_utils.probes.probe import SubsetClassifier
    from hneuron_utils.text import generation

    d_ff = model.d_ff
    h_flat = [d_ff + 5, 3, (model.n_layers - 1) * d_ff + 1]
    flat = h_flat + [7, d_ff + 9]  # the H-neurons, then the random control neurons
    prompts = [generation.qa_prompt(model.tokenizer, q) for q in QUESTIONS]
    records = [types.SimpleNamespace(id=f"q{i}") for i in range(len(prompts))]
    sampling = generation.Sampling(do_sample=True, max_new_tokens=12)
    streams = live.monitored_sample(model, prompts, flat, sampling, seed=0, keys=[r.id for r in records], batch_size=5,
                                    progress=False)
    rng = np.random.default_rng(0)
    X, y = rng.random((40, len(h_flat))), np.tile([0, 1], 20)
    X[:, 0] += 0.5 * y
    mean, std = X.mean(0), X.std(0)
    clf = SubsetClassifier(np.array(h_flat), mean, std, LogisticRegression().fit((X - mean) / std, y))
    hooks = _hooks(model)
    ns = _run(NB07, CELLS_07, {"np": np, "loaded": model, "streams": streams, "prompts": prompts, "records": records,
                               "clf": clf, "K": len(h_flat), "sampling": sampling, "cfg": types.SimpleNamespace(seed=0),
                               "live": live})
    demo = ns["demo"]
    assert len(ns["demo_ids"]) == len(model.tokenizer(prompts[demo], add_special_tokens=False).input_ids) + 4
    assert ns["next_token"] == streams[demo].token_ids[4]  # the step draws the token the stream wrote
    torch.testing.assert_close(ns["step_cett"].numpy(), streams[demo].hcett[3, :len(h_flat)], rtol=1e-4, atol=1e-6)
    assert _hooks(model) == hooks
