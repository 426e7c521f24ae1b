import pytest

from hneuron_utils import judges

J = judges.RuleJudge()


@pytest.mark.parametrize("raw,norm", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  An   apple, a day ", "apple day"),
    ("Theatre", "theatre"),
    ("U.S.A.", "usa"),
])
def test_normalize_is_squad(raw, norm):
    assert judges.normalize(raw) == norm


def test_normalize_map_points_back_to_raw_chars():
    raw = "It's  THE Beatles' song."
    norm, idx = judges.normalize_with_map(raw)
    assert norm == "its beatles song"
    assert all(raw[i].lower() == c for c, i in zip(norm, idx) if c != " ")


def test_correct_with_span_on_raw_text():
    v = J.judge("Capital of France?", "It is Paris, of course.", ["Paris", "Paris, France"])
    assert v.correct and not v.refusal and v.alias == "Paris"
    assert "It is Paris, of course."[slice(*v.span)] == "Paris"


def test_longest_alias_wins_and_span_covers_punctuation_inside():
    resp = "Mikhail S. Gorbachev"
    v = J.judge("Who?", resp, ["Gorbachev", "Mikhail S. Gorbachev"])
    assert v.alias == "Mikhail S. Gorbachev" and resp[slice(*v.span)] == resp


def test_substring_semantics_match_the_official_rule():
    assert J.judge("Which city?", "Parisian", ["Paris"]).correct  # official: substring, not word match


def test_wrong_answer():
    v = J.judge("Capital of France?", "Lyon", ["Paris"])
    assert not v.correct and v.span is None


def test_leaked_alias_is_not_usable():
    q = "Which Beatles song mentions Lucy in the sky?"
    assert judges.usable_aliases(q, ["Lucy", "Lucy in the Sky with Diamonds"]) == ["Lucy in the Sky with Diamonds"]
    assert not J.judge(q, "Lucy", ["Lucy"]).correct


@pytest.mark.parametrize("resp,ref", [
    ("I don't know.", True), ("I’m not sure about that", True), ("That information is not provided.", True),
    ("Cannot", False), ("The Cannonball Run", False), ("Paris", False),
])
def test_refusal_phrases(resp, ref):
    assert judges.is_refusal(resp) is ref
