import pytest

from hneuron_utils.text import generation, tokens
from hneuron_utils import judges


def _decode(tok, tf, mask):
    return tok.decode(tf.input_ids[mask])


def test_answer_tokens_cover_the_matched_alias(tiny):
    tok = tiny.tokenizer
    prompt = generation.qa_prompt(tok, "Capital of France?")
    resp = "It is Paris."
    v = judges.RuleJudge().judge("Capital of France?", resp, ["Paris"])
    tf = tokens.teacher_forced(tok, prompt, resp, v.span)
    assert _decode(tok, tf, tf.answer).strip() == "Paris"
    text = tok.decode(tf.input_ids)
    assert text.startswith(prompt + resp) and text.endswith("<|im_end|>\n")


def test_wrong_response_uses_whole_response_without_trailing_punctuation(tiny):
    tok = tiny.tokenizer
    prompt = generation.qa_prompt(tok, "Q?")
    tf = tokens.teacher_forced(tok, prompt, "Lyon, France.", None)
    assert _decode(tok, tf, tf.answer) == "Lyon, France"
    assert tf.response_start == len(tok(prompt, add_special_tokens=False)["input_ids"])


def test_whole_response_span():
    assert tokens.whole_response_span("  Paris!! ") == (2, 7)
    assert tokens.whole_response_span("...") == (0, 3)


def test_empty_response_is_an_error_not_a_silent_loss(tiny):
    with pytest.raises(tokens.SpanError):
        tokens.teacher_forced(tiny.tokenizer, generation.qa_prompt(tiny.tokenizer, "Q?"), "", None)


def test_base_model_without_template(tiny, monkeypatch):
    tok = tiny.tokenizer
    monkeypatch.setattr(tok, "chat_template", None)
    tf = tokens.teacher_forced(tok, "Q: x\nAnswer:", " Paris", (1, 6))
    assert _decode(tok, tf, tf.answer).strip() == "Paris"


def test_plain_prompt_on_a_chat_tokenizer_gets_no_turn_suffix():
    from hneuron_utils.models import tiny
    from hneuron_utils.text.tokens import conversation, teacher_forced

    tok = tiny.build_tokenizer()
    text, off = conversation(tok, "Who?\nAnswer:", " Paris", templated=False)
    assert text == "Who?\nAnswer: Paris" and off == len("Who?\nAnswer:")
    tf = teacher_forced(tok, "Who?\nAnswer:", " Paris", None, templated=False)
    assert tok.decode(tf.input_ids[tf.answer]).strip() == "Paris"
    assert "<|im_end|>" not in tok.decode(tf.input_ids)
