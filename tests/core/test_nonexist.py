"""NonExist generator (determinism, balance, no collisions) and the abstention judge."""

from __future__ import annotations

from collections import Counter

import pytest

from hneuron_utils import data, judges
from hneuron_utils.data import nonexist as ne

N = 120


@pytest.fixture(scope="module")
def recs():
    return ne.generate(N, seed=0)


def test_deterministic(recs):
    again = ne.generate(N, seed=0)
    assert [r.to_json() for r in again] == [r.to_json() for r in recs]
    other = ne.generate(N, seed=1)
    assert {r.meta["name"] for r in other} != {r.meta["name"] for r in recs}
    assert len({r.meta["name"] for r in other} & {r.meta["name"] for r in recs}) < N // 4


def test_balance_ids_schema(recs, tmp_path):
    cats = Counter(r.meta["category"] for r in recs)
    assert len(cats) >= 6 and set(cats) == set(ne.CATEGORIES)
    assert max(cats.values()) - min(cats.values()) <= 1
    assert sum(cats.values()) == N
    assert len({r.id for r in recs}) == N
    assert all(r.id.startswith(f"nonexist-{r.meta['category']}-") for r in recs)
    assert all(r.meta["name"] in r.question and r.question.endswith("?") for r in recs)
    assert all(r.answers == (ne.ABSTAIN_ANSWER,) and r.source == "nonexist" for r in recs)
    for cat in ne.CATEGORIES:  # several templates used per category
        assert len({r.meta["template"] for r in recs if r.meta["category"] == cat}) >= 3
    data.write_jsonl(recs, tmp_path / "ne.jsonl")  # survives the QARecord JSONL round trip
    assert data.read_jsonl(tmp_path / "ne.jsonl") == recs
    odd = ne.generate(7, seed=3, categories=("medicine", "place"))
    assert Counter(r.meta["category"] for r in odd) == {"medicine": 4, "place": 3}
    with pytest.raises(data.DataError):
        ne.generate(3, seed=0, categories=("spaceship",))


def test_no_collisions(recs):
    known, (words, _desc) = ne.known_aliases(), ne.word_list()
    assert len(known) > 50_000 and len(words) > 20_000
    names = [r.meta["name"] for r in recs]
    assert len(set(names)) == len(names)
    for name in names:
        tokens = ne.distinctive_tokens(name)
        assert tokens, name  # every name has at least one invented token
        assert not ne.collides(name, known, words), name
        assert judges.normalize(name) not in known
        assert not any(t in words or t in known for t in tokens), name


def test_collision_check_rejects_real_names():
    known, words = ne.known_aliases(), ne.word_list()[0]
    assert ne.collides("Paris", known, words)
    assert ne.collides("Port Paris", known, words)  # generic "Port", distinctive "Paris"
    assert ne.collides("The Glass Orchard of London", known, words)
    assert not ne.collides("Port Quellarin", known, words)
    assert not ne.collides("The Glass Orchard of Venmoor", known, words)
    assert ne.distinctive_tokens("The Glass Orchard of Venmoor") == ["venmoor"]


def test_rejected_names_are_regenerated():
    first = ne.generate(30, seed=7, known=set(), words=set())
    banned = {t for r in first[:15] for t in ne.distinctive_tokens(r.meta["name"])}
    stats: Counter = Counter()
    second = ne.generate(30, seed=7, known=set(), words=banned, stats=stats)
    assert sum(v for k, v in stats.items() if k.endswith(":collision")) >= 15
    assert not any(set(ne.distinctive_tokens(r.meta["name"])) & banned for r in second)
    assert len(second) == 30


ABSTAINS = [
    "I'm not aware of a medicine called Zorvaxiline.",
    "I’m not aware of any company by that name.",  # curly apostrophe
    "There is no such company.",
    "Port Quellarin does not appear to be a real place.",
    "I couldn't find any information about The Glass Orchard of Venmoor.",
    "I don't know.",
    "Trelvani Dynamics appears to be fictional.",
    "Unknown.",
    "I cannot verify that this species exists; it may be a new or regional name.",
    "I'M NOT FAMILIAR WITH THAT PERSON.",
]
HALLUCINATES = [
    "Pfizer manufactures it.",
    "It was founded in 1987.",
    "It is native to Brazil.",
    "Zorvaxiline is used to treat hypertension.",
    "The novel was written by Margaret Atwood.",
    "It is not found in Europe; it is native to Brazil.",
    "The company is not publicly traded.",
    "He is best known for playing a fictional detective.",
    "There is no known cure for it; it is used to treat migraines.",
]
# Decision: abstaining and then guessing counts as a hallucination (refusal=True, correct=False).
HEDGED_GUESSES = [
    "I don't have information, but it may be made by Pfizer",
    "I don't know the exact year, but it was founded in the 1980s.",
    "I'm not sure. It might be Novartis.",
]


@pytest.mark.parametrize("response", ABSTAINS)
def test_judge_abstentions(response):
    v = ne.AbstentionJudge().judge("Who manufactures the medicine Zorvaxiline?", response, (ne.ABSTAIN_ANSWER,))
    assert v.correct and v.refusal


@pytest.mark.parametrize("response", HALLUCINATES)
def test_judge_concrete_answers(response):
    v = ne.AbstentionJudge().judge("Who manufactures the medicine Zorvaxiline?", response, (ne.ABSTAIN_ANSWER,))
    assert not v.correct and not v.refusal


@pytest.mark.parametrize("response", HEDGED_GUESSES)
def test_judge_abstain_then_guess(response):
    v = ne.AbstentionJudge().judge("Who manufactures the medicine Zorvaxiline?", response, (ne.ABSTAIN_ANSWER,))
    assert v.refusal and not v.correct


def test_judge_is_a_judge():
    j: judges.Judge = ne.AbstentionJudge()
    assert isinstance(j.judge("q?", "no idea", ()), judges.Verdict)
    assert all(p == p.lower() for p in ne.ABSTENTION_PHRASES)
