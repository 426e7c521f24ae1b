"""Five short question-answer pairs and their teacher-forced examples: shared by the CETT, monitor and
remote-backend tests (importable because ``tests/`` holds the root conftest)."""
from hneuron_utils import judges
from hneuron_utils.text import generation, tokens

QA = [("Capital of France?", "Paris is the capital.", ["Paris"]),
      ("Who wrote Hamlet?", "Shakespeare", ["William Shakespeare", "Shakespeare"]),
      ("Largest planet?", "I think it is Saturn, the ringed one!", ["Jupiter"]),
      ("2+2?", "4", ["4", "four"]),
      ("Longest river in the world by length according to most sources?", "The Nile", ["Nile"])]


def examples(loaded):
    """The teacher-forced examples of :data:`QA` (answer span from the rule judge) for ``loaded``."""
    out = []
    for q, r, a in QA:
        v = judges.RuleJudge().judge(q, r, a)
        out.append(tokens.teacher_forced(loaded.tokenizer, generation.qa_prompt(loaded.tokenizer, q), r, v.span))
    return out
