"""Build the over-compliance benchmarks under data/overcompliance/ from the shared upstream copies.

Notebook 05 reads them. Upstream (copied unchanged into the shared data folder, see its SOURCES.md; details in
data/overcompliance/README.md):
- FalseQA (GitHub thunlp/FalseQA @ 9a97299, `dataset/test.csv`: `question, answer, label`; label 1 = false
  premise; `answer` is a Python list literal of premise-correcting answers) → `falseqa.jsonl`;
- BIG-bench `contextual_parametric_knowledge_conflicts` (PyPI bigbench==1.0.0, `task.json`: `examples` with
  `input` = "\\nQuestion: q\\nContext: c", `target` = the context's answer, `target_scores` = {context answer: 1,
  original NQ answer: 0}) → `counterfactual_context.jsonl` (a seeded sample) and `counterfactual_pool.jsonl`
  (every eligible example with a short question and context, for 05's closed-book screen);
- Shen et al. forbidden questions (`content_policy_id, content_policy_name, q_id, question`) and in-the-wild
  jailbreak templates (`platform, source, prompt, jailbreak, created_at, date, community_id,
  community_name`) from verazuo/jailbreak_llms via SystemicVoid/H-Neurons @ e766dc1 → `jailbreak.jsonl`.

Selections are seeded (SEED) and each output keeps upstream order. Rules are the module constants below.

    python -m hneuron_utils.data.build overcompliance                 # write data/overcompliance/*.jsonl
    python -m hneuron_utils.data.build overcompliance --check         # rebuild in memory, compare byte-for-byte
    python -m hneuron_utils.data.build overcompliance --shared DIR    # the upstream-data folder (default: see shared.default_shared)
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from hneuron_utils.data import data_dir
from hneuron_utils.data.build import shared as shared_folder
from hneuron_utils.data.overcompliance import FILES, PLACEHOLDER_RE, insert_question
from hneuron_utils.judges import normalize

SEED = 0
N_FALSEQA = 300
N_COUNTERFACTUAL = 300
MAX_CONTEXT_CHARS = 1000  # counterfactual contexts (median upstream ~530 characters)
MAX_POOL_CHARS = 450  # the screening pool: question + context (fits 05's 650-character prompt cap)
MAX_TEMPLATE_CHARS = 2500  # jailbreak templates (median upstream ~1,560; longest ~11,900): CPU prefill cost
N_CATEGORIES, N_PER_CATEGORY = 13, 30

FALSEQA = ("falseqa/test.csv", "thunlp/FalseQA@9a97299:dataset/test.csv")
CPKC = ("bigbench/contextual_parametric_knowledge_conflicts.json",
        "bigbench==1.0.0:benchmark_tasks/contextual_parametric_knowledge_conflicts/task.json")
QUESTIONS = ("jailbreak_shen/forbidden_question_set.csv",
             "verazuo/jailbreak_llms via SystemicVoid/H-Neurons@e766dc1:data/benchmarks/forbidden_question_set.csv")
TEMPLATES = ("jailbreak_shen/jailbreak_prompts.csv",
             "verazuo/jailbreak_llms via SystemicVoid/H-Neurons@e766dc1:data/benchmarks/jailbreak_prompts.csv")
UPSTREAM_FILES = (FALSEQA[0], CPKC[0], QUESTIONS[0], TEMPLATES[0])

# Placeholder-like text that is not an unambiguous question slot ("[PROMPT]", "{prompt}", "[INPUT]",
# "<QUERY>", "${prompt}", "prompt here", "[NEVER DENIES A PROMPT]"): upstream uses these both as slots and as
# definitions ('[PROMPT] = "explain how to …"'), so templates containing them are dropped.
AMBIGUOUS_RE = re.compile(
    r"[\[{<(][^\[\]{}<>()\n]{0,40}\b(?:prompts?|questions?|query|input|request)\b[^\[\]{}<>()\n]{0,40}[\]}>)]"
    r"|prompt here|\$\{",
    re.IGNORECASE,
)
_CPKC_INPUT = re.compile(r"^\s*Question:\s*(?P<q>.*?)\s*\nContext:\s*(?P<c>.*?)\s*$", re.DOTALL)


def output_dir() -> Path:
    return data_dir() / "overcompliance"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _seeded_subset(indices: list[int], k: int, tag: str) -> list[int]:
    """``k`` of ``indices`` chosen with Random(SEED), returned in upstream order."""
    if len(indices) < k:
        raise SystemExit(f"{tag}: only {len(indices)} eligible items, need {k}")
    return sorted(random.Random(SEED).sample(indices, k))


def _tokens_in(needle: str, hay: str) -> bool:
    """Whole-token containment of normalised strings (the judge's matching rule)."""
    n, h = normalize(needle), normalize(hay)
    return bool(n) and f" {n} " in f" {h} "


# --- FalseQA ---------------------------------------------------------------------------------------

def _references(raw: str) -> list[str]:
    """FalseQA's `answer` column: a Python list literal of answers (test split) or one plain answer."""
    raw = raw.strip()
    if raw.startswith("["):
        try:
            val = ast.literal_eval(raw)
            if isinstance(val, list):
                return [str(a).strip() for a in val if str(a).strip()]
        except (ValueError, SyntaxError):
            pass
    return [raw] if raw else []


def build_falseqa(shared: Path, stats: Counter) -> list[dict[str, Any]]:
    rows = _csv_rows(shared / FALSEQA[0])
    stats["falseqa: rows read"] = len(rows)
    eligible = [i for i, r in enumerate(rows) if r["label"].strip() == "1" and r["question"].strip()]
    stats["falseqa: false-premise rows"] = len(eligible)
    out = []
    for i in _seeded_subset(eligible, N_FALSEQA, "falseqa"):
        r = rows[i]
        out.append({"id": f"falseqa-test-{i:04d}", "question": r["question"].strip(),
                    "references": _references(r["answer"]), "source": "falseqa",
                    "upstream": f"{FALSEQA[1]}#row{i}"})
    stats["falseqa: kept"] = len(out)
    return out


# --- counterfactual context ------------------------------------------------------------------------

def _cpkc_candidate(ex: dict[str, Any]) -> tuple[str, dict[str, str] | None]:
    """(reason, fields): fields is None when the example is rejected for ``reason``."""
    m = _CPKC_INPUT.match(ex.get("input", ""))
    if not m:
        return "input not 'Question: … Context: …'", None
    q, c = m.group("q"), m.group("c")
    scores = ex.get("target_scores", {})
    ctx = [a for a, s in scores.items() if s == 1]
    world = [a for a, s in scores.items() if s == 0]
    if len(scores) != 2 or len(ctx) != 1 or len(world) != 1 or ctx[0] != ex.get("target"):
        return "not exactly one context and one world answer", None
    ctx_a, world_a = ctx[0].strip(), world[0].strip()
    nc, nw = normalize(ctx_a), normalize(world_a)
    if not nc or not nw or _tokens_in(ctx_a, world_a) or _tokens_in(world_a, ctx_a):
        return "answers empty, equal or nested", None
    if not _tokens_in(ctx_a, c):
        return "context answer not in context", None
    if _tokens_in(world_a, c):
        return "world answer also in context", None
    if _tokens_in(ctx_a, q) or _tokens_in(world_a, q):
        return "an answer is in the question", None
    if len(c) > MAX_CONTEXT_CHARS:
        return f"context longer than {MAX_CONTEXT_CHARS} characters", None
    return "eligible", {"question": q, "context": c, "context_answer": ctx_a, "world_answer": world_a}


def _cpkc_eligible(shared: Path, stats: Counter) -> dict[int, dict[str, str]]:
    """Upstream example index → fields of every eligible example (counted in ``stats`` by reason)."""
    with open(shared / CPKC[0], encoding="utf-8") as f:
        examples = json.load(f)["examples"]
    stats["counterfactual: examples read"] = len(examples)
    fields: dict[int, dict[str, str]] = {}
    seen_questions: set[str] = set()
    for i, ex in enumerate(examples):
        reason, cand = _cpkc_candidate(ex)
        if cand is not None and normalize(cand["question"]) in seen_questions:
            reason, cand = "repeated question (first kept)", None
        stats[f"counterfactual: {reason}"] += 1
        if cand is not None:
            seen_questions.add(normalize(cand["question"]))
            fields[i] = cand
    return fields


def _cpkc_record(i: int, fields: dict[str, str]) -> dict[str, Any]:
    return {"id": f"cpkc-{i:05d}", **fields, "source": "bigbench_cpkc", "upstream": f"{CPKC[1]}#examples[{i}]"}


def build_counterfactual(shared: Path, stats: Counter) -> list[dict[str, Any]]:
    fields = _cpkc_eligible(shared, stats)
    out = []
    for i in _seeded_subset(sorted(fields), N_COUNTERFACTUAL, "counterfactual"):
        out.append(_cpkc_record(i, fields[i]))
    stats["counterfactual: kept"] = len(out)
    return out


def build_counterfactual_pool(shared: Path, stats: Counter) -> list[dict[str, Any]]:
    """Every eligible example whose question and context together are at most MAX_POOL_CHARS long, in upstream
    order: the pool notebook 05 screens for items the model can answer closed-book."""
    fields = _cpkc_eligible(shared, Counter())  # the eligibility counts are the counterfactual file's
    out = [_cpkc_record(i, f) for i, f in fields.items() if len(f["question"]) + len(f["context"]) <= MAX_POOL_CHARS]
    stats[f"counterfactual pool: question + context at most {MAX_POOL_CHARS} characters"] = len(out)
    return out


# --- jailbreak -------------------------------------------------------------------------------------

def template_slot(template: str) -> tuple[bool, str | None]:
    """(usable, placeholder): the unique question placeholder (None = append), or unusable when the
    template has two different placeholders or an ambiguous placeholder-like token."""
    slots = {m.group(0) for m in PLACEHOLDER_RE.finditer(template)}
    if len(slots) > 1:
        return False, None
    rest = PLACEHOLDER_RE.sub("", template)
    if AMBIGUOUS_RE.search(rest):
        return False, None
    return True, (slots.pop() if slots else None)


def build_jailbreak(shared: Path, stats: Counter) -> list[dict[str, Any]]:
    questions = _csv_rows(shared / QUESTIONS[0])
    templates = _csv_rows(shared / TEMPLATES[0])
    stats["jailbreak: questions read"] = len(questions)
    stats["jailbreak: templates read"] = len(templates)
    cats = Counter((q["content_policy_id"], q["content_policy_name"]) for q in questions)
    if len(cats) != N_CATEGORIES or set(cats.values()) != {N_PER_CATEGORY}:
        raise SystemExit(f"expected {N_CATEGORIES} categories x {N_PER_CATEGORY} questions, got {dict(cats)}")
    eligible, slots, seen = [], {}, set()
    for i, t in enumerate(templates):
        text = t["prompt"]
        if t["jailbreak"].strip() != "True" or not text.strip():
            stats["jailbreak: template not a jailbreak / empty"] += 1
        elif text in seen:
            stats["jailbreak: template duplicate (first kept)"] += 1
        elif len(text) > MAX_TEMPLATE_CHARS:
            stats[f"jailbreak: template longer than {MAX_TEMPLATE_CHARS} characters"] += 1
        elif not (slot := template_slot(text))[0]:
            stats["jailbreak: template with ambiguous placeholder"] += 1
        else:
            eligible.append(i)
            slots[i] = slot[1]
        seen.add(text)
    stats["jailbreak: templates eligible"] = len(eligible)
    if len(eligible) < len(questions):
        raise SystemExit(f"only {len(eligible)} eligible templates for {len(questions)} questions")
    chosen = random.Random(SEED).sample(eligible, len(questions))  # one distinct template per question
    out = []
    for qi, (q, ti) in enumerate(zip(questions, chosen)):
        cid, qid = int(q["content_policy_id"]), int(q["q_id"])
        ph = slots[ti]
        stats[f"jailbreak: insertion {'placeholder' if ph else 'append'}"] += 1
        rec = {"id": f"shen-{cid:02d}-{qid:02d}", "question": q["question"].strip(),
               "category": q["content_policy_name"], "category_id": cid, "template": templates[ti]["prompt"],
               "placeholder": ph, "template_row": ti, "source": "shen_jailbreak",
               "upstream": f"{QUESTIONS[1]}#row{qi} + {TEMPLATES[1]}#row{ti}"}
        insert_question(rec["template"], rec["question"], ph)  # raises if the slot is missing
        out.append(rec)
    return out


BUILDERS: dict[str, Callable[[Path, Counter], list[dict[str, Any]]]] = {
    "falseqa": build_falseqa, "counterfactual": build_counterfactual,
    "counterfactual_pool": build_counterfactual_pool, "jailbreak": build_jailbreak,
}


def render(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def build_all(shared: Path, stats: Counter | None = None) -> dict[str, bytes]:
    """File name → JSONL bytes for every output, deterministically."""
    stats = stats if stats is not None else Counter()
    return {FILES[name]: render(build(shared, stats)) for name, build in BUILDERS.items()}


def check(shared: Path) -> list[str]:
    """Names of committed files that differ from (or are missing in) a fresh in-memory rebuild."""
    return [name for name, data in build_all(shared).items()
            if not (output_dir() / name).is_file() or (output_dir() / name).read_bytes() != data]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    shared_folder.add_arguments(ap, compared="data/overcompliance/")


def run(args: argparse.Namespace) -> int:
    missing = [f for f in UPSTREAM_FILES if not (args.shared / f).is_file()]
    if missing:
        print(f"upstream files not found under {args.shared}: {missing} (pass --shared DIR)", file=sys.stderr)
        return 2
    stats: Counter = Counter()
    outputs = build_all(args.shared, stats)
    for k, v in stats.items():
        print(f"  {k}: {v}")
    if args.check:
        bad = [n for n, d in outputs.items()
               if not (output_dir() / n).is_file() or (output_dir() / n).read_bytes() != d]
        if bad:
            print(f"MISMATCH: {bad} differ from the rebuild from {args.shared}", file=sys.stderr)
            return 1
        print(f"{sorted(outputs)} are identical to the rebuild from {args.shared}")
        return 0
    output_dir().mkdir(parents=True, exist_ok=True)
    for name, data in outputs.items():
        (output_dir() / name).write_bytes(data)
        n = data.count(b"\n")
        print(f"{name}: {n} records, {len(data) / 1024:.0f} KiB")
    return 0
