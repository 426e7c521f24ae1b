"""A model's greedy reply to chat conversations, and P(yes) read from the reply's first token.

P(yes) is the first token's probability of "Yes"/"yes" over those of "Yes"/"yes" and "No"/"no": a continuous
answer to a yes-or-no question that cannot sit at a ceiling the way a stated number can. Used by the model
judge (is this response a compliance?) and by the stated-confidence measure.
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
           "neurons": cond["neurons"], "alpha": cond["alpha"], "yes": yes, "no": no}

    def compute(chunk: list[str]) -> dict[str, dict]:
        base = (make_forward() if make_forward else None) or (lambda m, **kw: m(**kw))
        first: dict[int, torch.Tensor] = {}

        def forward(model: Any, rows: list[int], **kw: Any) -> Any:
            out = base(model, **kw)
            for r, row in enumerate(rows):  # a prompt's first call is its prefill: its last position's logits
                if row not in first:
                    first[row] = out.logits[r, -1].float().cpu()
            return out

        forward.per_row = True  # type: ignore[attr-defined]
        forward.prefix_forward = base  # type: ignore[attr-defined]  # the shared prefix is changed too
        outs = sample_many(loaded, [prompts[by_key[k]] for k in chunk], 1, Sampling(max_new_tokens=max_new_tokens),
                           seed=seed, keys=[by_key[k] for k in chunk], batch_size=batch_size, progress=False,
                           forward=forward)
        got = {}
        for j, (k, o) in enumerate(zip(chunk, outs)):
            p = torch.softmax(first[j], -1)
            py, pn = float(p[yes].sum()), float(p[no].sum())
            got[k] = {"text": o[0].text, "p_yes": py / max(py + pn, 1e-12), "yes_no_mass": py + pn}
        return got

    got = cached_map("confidence_replies", key, list(keys.values()), compute, chunk=max(batch_size, 32))
    return {i: got[keys[i]] for i in ids}
