"""A model's greedy reply to chat conversations, and P(yes) read from the reply's first token.

P(yes) is the first token's probability of "Yes"/"yes" over those of "Yes"/"yes" and "No"/"no": a continuous
answer to a yes-or-no question that cannot sit at a ceiling the way a stated number can. Used by the model
judge (is this response a compliance?) and by the stated-confidence measure.

The probabilities are read from float32 logits: the hidden state entering the output head (in the model's
dtype) times the head's weights, both in float32. A bfloat16 logit has 8 significant bits, so P(yes) from
bfloat16 logits takes only a few dozen distinct values and a small shift hides inside one step.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from hneuron_utils.cache import cached_map, digest
from hneuron_utils.models.loading import model_key
from hneuron_utils.text.generation import Sampling, render, sample_many


def first_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """The first token id of each word (duplicates once, sorted)."""
    return sorted({tokenizer.encode(w, add_special_tokens=False)[0] for w in words})


def float32_log_probs(head: torch.nn.Module, hidden: torch.Tensor, ids: Sequence[int], *, softcap: float | None = None,
                      chunk: int = 16384) -> torch.Tensor:
    """Log-probabilities [n, len(ids)] of the tokens ``ids`` from ``hidden`` [n, d] (the states entering the output
    ``head``), with the head's product, bias and any final-logit soft-capping computed in float32; the
    softmax's normaliser runs over the whole vocabulary in chunks of ``chunk`` rows of the head."""
    h = hidden.float()
    weight, bias = head.weight, getattr(head, "bias", None)

    def logits(lo: int, hi: int) -> torch.Tensor:
        z = h @ weight[lo:hi].float().T
        if bias is not None:
            z = z + bias[lo:hi].float()
        return torch.tanh(z / softcap) * softcap if softcap else z

    with torch.no_grad():
        norm = torch.logsumexp(torch.stack([torch.logsumexp(logits(lo, min(lo + chunk, weight.shape[0])), -1)
                                            for lo in range(0, weight.shape[0], chunk)], -1), -1)
        picked = torch.stack([logits(i, i + 1)[:, 0] for i in ids], -1)
    return picked - norm[:, None]


def yes_no_replies(loaded: Any, ids: Sequence[str], conversations: Sequence[list[dict[str, str]]], *,
                   max_new_tokens: int, batch_size: int, seed: int = 0,
                   make_forward: Callable[[], Any] | None = None, condition: Mapping[str, Any] | None = None
                   ) -> dict[str, dict]:
    """Greedy reply to each conversation and, from the same pass, ``p_yes`` and ``yes_no_mass`` (the total
    probability of the yes/no first tokens: is the format followed?).

    ``make_forward`` builds a forward function that changes the model (e.g. scales some neurons; None: the
    unmodified model) and ``condition`` names that change in the cache key (``{"neurons": ..., "alpha": ...}``;
    None: unmodified). Cached per item, keyed by the model, the condition, the decoding length and the rendered
    prompt."""
    tok = loaded.tokenizer
    yes, no = first_token_ids(tok, ["Yes", "yes"]), first_token_ids(tok, ["No", "no"])
    prompts = {i: render(tok, c) for i, c in zip(ids, conversations)}
    keys = {i: f"{i}:{digest(p, 12)}" for i, p in prompts.items()}
    by_key = {k: i for i, k in keys.items()}
    cond = dict(condition) if condition else {"neurons": None, "alpha": 1.0}
    key = {"stage": "confidence_replies", "model": model_key(loaded), "max_new_tokens": max_new_tokens, "seed": seed,
           "neurons": cond["neurons"], "alpha": cond["alpha"], "yes": yes, "no": no, "logits": "float32"}
    head = loaded.hf.get_output_embeddings()
    softcap = getattr(loaded.hf.config, "final_logit_softcapping", None)

    def compute(chunk: list[str]) -> dict[str, dict]:
        base = (make_forward() if make_forward else None) or (lambda m, **kw: m(**kw))
        first: dict[int, torch.Tensor] = {}
        entering: list[torch.Tensor] = []

        def grab(module: Any, args: tuple) -> None:
            entering.append(args[0])

        def forward(model: Any, rows: list[int], **kw: Any) -> Any:
            entering.clear()
            handle = head.register_forward_pre_hook(grab)
            try:
                out = base(model, **kw)
            finally:
                handle.remove()
            for r, row in enumerate(rows):  # a prompt's first call is its prefill: the state entering the head
                if row not in first:        # at its last position
                    first[row] = entering[-1][r, -1].detach().cpu()
            return out

        forward.per_row = True  # type: ignore[attr-defined]
        forward.prefix_forward = base  # type: ignore[attr-defined]  # the shared prefix is changed too
        outs = sample_many(loaded, [prompts[by_key[k]] for k in chunk], 1, Sampling(max_new_tokens=max_new_tokens),
                           seed=seed, keys=[by_key[k] for k in chunk], batch_size=batch_size, progress=False,
                           forward=forward)
        logp = float32_log_probs(head, torch.stack([first[j] for j in range(len(chunk))]), yes + no, softcap=softcap)
        p = logp.double().exp()
        got = {}
        for j, (k, o) in enumerate(zip(chunk, outs)):
            py, pn = float(p[j, :len(yes)].sum()), float(p[j, len(yes):].sum())
            got[k] = {"text": o[0].text, "p_yes": py / max(py + pn, 1e-300), "yes_no_mass": py + pn}
        return got

    got = cached_map("confidence_replies", key, list(keys.values()), compute, chunk=max(batch_size, 32))
    return {i: got[keys[i]] for i in ids}
