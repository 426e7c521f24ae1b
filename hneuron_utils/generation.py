"""Prompts and batched generation: chat templates, left padding, stopping at end-of-turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

PAPER_SUFFIX = " Respond with the answer only, without any explanation."


def chat_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """Render one user turn with the model's chat template (its default system prompt unless given)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("This tokenizer has no chat template (a base model?): use a plain-text prompt instead")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def qa_prompt(tokenizer: Any, question: str, suffix: str = PAPER_SUFFIX) -> str:
    """The paper's TriviaQA prompt: the question plus the answer-only instruction, chat-templated."""
    return chat_prompt(tokenizer, question.strip() + suffix)


def encode(tokenizer: Any, texts: Sequence[str], templated: bool = True) -> dict[str, torch.Tensor]:
    """Tokenise a batch with left padding. A rendered chat template already holds its special tokens."""
    tokenizer.padding_side = "left"
    return tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=not templated)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings (the paper: K=10 samples, temperature 1.0, top_k 50, top_p 0.9, 50 new tokens)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    max_new_tokens: int = 50

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        else:
            kw.update(temperature=None, top_k=None, top_p=None)
        return kw


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted ascending), to cut padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def generate(loaded: Any, prompts: Sequence[str], sampling: Sampling = Sampling(), batch_size: int = 16,
             seed: int | None = None, templated: bool = True, progress: bool = True) -> list[str]:
    """Generate one completion per prompt, batched (sorted by length to cut padding), in input order.

    Generation stops at any end-of-turn token; the returned text excludes special tokens and is stripped.
    """
    from tqdm import tqdm

    tok, model = loaded.tokenizer, loaded.hf
    stop = loaded.stop_token_ids()
    out: list[str] = [""] * len(prompts)
    if seed is not None:
        torch.manual_seed(seed)
    batches = length_batches([len(p) for p in prompts], batch_size)
    for idx in tqdm(batches, desc="generate", disable=not progress or len(batches) < 2, mininterval=5.0):
        enc = encode(tok, [prompts[i] for i in idx], templated=templated).to(loaded.device)
        ids = model.generate(**enc, **sampling.kwargs(), eos_token_id=stop, pad_token_id=tok.pad_token_id)
        new = ids[:, enc["input_ids"].shape[1]:]
        for j, i in enumerate(idx):
            out[i] = tok.decode(new[j], skip_special_tokens=True).strip()
    return out
