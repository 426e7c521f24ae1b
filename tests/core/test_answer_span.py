"""The answer-span rules: the same rule for right and wrong answers, never reading the gold answers."""
import pandas as pd
import pytest

from hneuron_utils.text import answer_span as A


def _phrase(question, response):
    s, e = A.answer_phrase_span(question, response)
    return response[s:e]


@pytest.mark.parametrize("question,response,phrase", [
    ("What was the currency of Greece before the Euro?", "The currency of Greece before the Euro was the drachma.",
     "the drachma"),
    ("Which river runs through the city of London, England?",
     "The River Thames runs through the city of London, England.", "The River Thames"),
    ("What is the tympanic membrane better known as?", "The tympanic membrane is better known as the eardrum.",
     "the eardrum"),
    ("Who is the patron saint of Wales?", "St. David", "St. David"),               # no sentence split at 'St.'
    ("Which capital city stands on the Potomac river", "Washington, D.C.", "Washington, D.C"),
    ("Who wrote 'The Selfish Gene'?", "Richard Dawkins", "Richard Dawkins"),
    ("Name the song.", '"We Will Rock You"', "We Will Rock You"),                   # wrapping quotes go
    ("Where is Cato from?", "Cato was from Rome. He later moved to Carthage.", "Rome"),   # first sentence only
    ("What is the answer?", "The answer is 42.", "42"),
    ("What heraldic word means red?", "Or\n\nred", "Or"),                         # first line only
])
def test_answer_phrase(question, response, phrase):
    assert _phrase(question, response) == phrase


def test_a_full_restatement_falls_back_to_the_whole_response():
    q = "Which TV series began as a drama entitled Woodentop?"
    r = "The TV series Woodentop began as a drama."
    assert _phrase(q, r) == "The TV series Woodentop began as a drama"


def test_rules_are_class_blind_except_the_earlier_one():
    q, r = "Capital of France?", "The capital of France is Lyon."
    # answer_phrase and whole_response never read the verdict or the alias
    for correct in (True, False):
        assert A.answer_span("answer_phrase", q, r, [24, 28], correct) == A.answer_phrase_span(q, r)
        assert A.answer_span("whole_response", q, r, [24, 28], correct) is None
    assert A.answer_span("alias_or_whole", q, r, [24, 28], True) == (24, 28)
    assert A.answer_span("alias_or_whole", q, r, [24, 28], False) is None
    assert A.answer_span("alias_or_whole", q, r, float("nan"), True) is None   # a missing alias read from a table
    with pytest.raises(ValueError, match="answer_span must be one of"):
        A.answer_span("gold", q, r, None, True)


def test_an_empty_response_has_the_whole_response_span():
    assert A.answer_span("answer_phrase", "q?", "", None, False) is None


class _CharTokenizer:
    """One token per character; enough for token sets."""
    chat_template = None

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        return {"input_ids": list(range(len(text))), "offset_mapping": [(i, i + 1) for i in range(len(text))]}


def test_span_agreement_counts_exact_matches_and_dice_per_class():
    rows = pd.DataFrame([
        {"question": "Capital of France?", "response": "Paris", "prompt": "Q: ", "class": "faithful",
         "span": [0, 5], "alias_span": [0, 5], "correct": True},
        {"question": "Capital of France?", "response": "The capital of France is Lyon.", "prompt": "Q: ",
         "class": "hallucinated", "span": [25, 29], "alias_span": None, "correct": False},
        {"question": "Capital of France?", "response": "I don't know", "prompt": "Q: ", "class": "hallucinated",
         "span": None, "alias_span": None, "correct": False},
    ])
    t = A.span_agreement(_CharTokenizer(), rows, n_boot=50, seed=0, templated=False).set_index(["rule", "class"])
    assert t.loc[("answer_phrase", "hallucinated"), "n"] == 1            # the row with no reference span is left out
    assert t.loc[("answer_phrase", "hallucinated"), "exact"] == 1.0
    whole = t.loc[("whole_response", "hallucinated")]
    assert whole.exact == 0.0 and whole.dice == pytest.approx(2 * 4 / (4 + 29))
    assert whole.exact_hi > 0                                              # a Wilson interval, never [0, 0]
    with pytest.raises(ValueError, match="lack the columns"):
        A.span_agreement(_CharTokenizer(), rows.drop(columns="prompt"), n_boot=5, seed=0)
