"""``tiny-random``: a tiny Llama-style model and byte-level tokenizer with a chat template, built in code.

It has the same module layout as the real models (``model.layers[i].mlp.{gate,up,down}_proj``), a
ChatML template with a default system prompt like Qwen's and SmolLM's, and random weights. It loads
in milliseconds, so unit tests and the plumbing of every notebook run on it without any download.
"""

from __future__ import annotations

import torch

DEFAULT_SYSTEM = "You are TinyRandom, a model with random weights."
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer():
    """A byte-level BPE tokenizer (256 byte tokens, a few merges, ChatML special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(byte_chars)}
    merges = []
    # A few common English merges so token and character offsets differ, as in real tokenizers.
    for a, b in [("t", "h"), ("th", "e"), ("Ġ", "t"), ("Ġt", "h"), ("Ġth", "e"), ("i", "n"), ("e", "r"), ("a", "n"),
                 ("Ġ", "a"), ("o", "n"), ("r", "e"), ("Ġ", "c"), ("Ġc", "a"), ("Ġca", "p")]:
        merges.append((a, b))
        vocab.setdefault(a + b, len(vocab))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def build_model(tokenizer, seed: int = 0, n_layers: int = 3, d_model: int = 64, d_ff: int = 128,
                *, dtype: torch.dtype = torch.float32):
    """A randomly initialised LlamaForCausalLM sized for tests (seeded, so always the same weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger-than-default weights so activations are not all ~0
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = cfg.eos_token_id
    return model.to(dtype).eval()
