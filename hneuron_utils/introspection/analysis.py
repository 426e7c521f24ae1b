"""Introspection statistics: rates per layer × strength for every condition, paired differences against the
controls, the coherence rule, the judges against reference labels, and readings whose words follow the intervals."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from hneuron_utils.stats import cohen_kappa, rate_with_ci
from hneuron_utils.training.forgetting import change_words

MEASURES = ("claims", "names", "detect_and_name", "coherent")


def coherent(text: str) -> bool:
    """Rule: a response is coherent when letters make up ≥ 60% of its non-space characters and, from 8 words
    on, at least half of its words are distinct and no word makes up more than a quarter of them (from 4
    words on: no word more than half). Short plain replies ("No.", "I can't tell.") are coherent; empty ones,
    loops and strings of digits or symbols are not."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    chars = re.sub(r"\s", "", text)
    if not words or not chars or sum(c.isalpha() for c in chars) / len(chars) < 0.6:
        return False
    top = max(words.count(w) for w in set(words)) / len(words)
    if len(words) >= 8:
        return len(set(words)) / len(words) >= 0.5 and top <= 0.25
    return len(words) < 4 or top <= 0.5


def add_coherence(judged: pd.DataFrame) -> pd.DataFrame:
    return judged.assign(coherent=judged.response.map(coherent).astype(bool))


def _paired(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    d = a.astype(float) - b.astype(float)
    boots = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(1)
    return float(d.mean()), float(np.quantile(boots, (1 - level) / 2)), float(np.quantile(boots, (1 + level) / 2))


def cell_table(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """One row per (layer, strength, condition ∈ concept / random / neutral, measure): the rate over concepts
    with its 95% interval and n; and, for the injected-concept rows, the paired difference (by concept) from the
    random-vector control and from the no-injection trial of the same number. The difference from the random
    control also gets a Bonferroni interval over the cells (``adjusted``), for reading the best cell."""
    none = judged[judged.condition == "none"].set_index("concept")
    rows = []
    inj = judged[judged.condition.isin(["concept", "random", "neutral"])]
    n_cells = inj.groupby(["layer", "strength"]).ngroups
    for (layer, s), g in inj.groupby(["layer", "strength"]):
        by = {c: g[g.condition == c].set_index("concept").sort_index() for c in ("concept", "random", "neutral")}
        for cond, t in by.items():
            for m in MEASURES:
                ci = rate_with_ci(t[m], n_boot, seed)
                row = {"layer": int(layer), "strength": s, "condition": cond, "measure": m, "rate": ci.rate,
                       "lo": ci.lo, "hi": ci.hi, "n": ci.n}
                if cond == "concept":
                    r = by["random"][m].reindex(t.index).to_numpy()
                    row["minus random"], row["minus random lo"], row["minus random hi"] = _paired(t[m].to_numpy(), r, n_boot, seed)
                    _, row["adjusted lo"], row["adjusted hi"] = _paired(t[m].to_numpy(), r, n_boot, seed, 1 - 0.05 / n_cells)
                    if m in ("claims", "coherent"):
                        z = none[m].reindex(t.index).to_numpy()
                        row["minus none"], row["minus none lo"], row["minus none hi"] = _paired(t[m].to_numpy(), z, n_boot, seed)
                rows.append(row)
    return pd.DataFrame(rows)


def control_rates(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The no-injection trials: how often the model claims a detection (false positives), names the trial's
    concept anyway, and stays coherent; n = trials."""
    t = judged[judged.condition == "none"]
    rows = []
    for m in MEASURES:
        ci = rate_with_ci(t[m], n_boot, seed)
        rows.append({"measure": m, "rate": ci.rate, "lo": ci.lo, "hi": ci.hi, "n": ci.n, "positive": ci.n_positive,
                     "distinct responses": int(t.response.nunique()) if "response" in t else None})
    return pd.DataFrame(rows)


def best_cell(cells: pd.DataFrame) -> pd.Series:
    """The (layer, strength) whose injected-concept detect-and-name rate exceeds the random-vector control's the
    most (ties: the higher rate, then the earlier layer). Chosen on the same trials it is reported on, so its
    rate is an optimistic estimate."""
    c = cells[(cells.condition == "concept") & (cells.measure == "detect_and_name")]
    c = c.sort_values(["minus random", "rate", "layer", "strength"], ascending=[False, False, True, True])
    return c.iloc[0]


def smallest_detectable(n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true rate, over a control that never fires, that a run of ``n`` paired trials would tell
    from 0 with probability ``power``: the percentile bootstrap's interval excludes 0 once at least k* of the
    n trials are positive, k* the smallest k with (1 − k/n)^n < (1 − level)/2; the answer is the smallest p
    with P(Binomial(n, p) ≥ k*) ≥ ``power``."""
    from scipy.stats import binom

    if n < 1:
        return float("nan")
    k = next((k for k in range(1, n + 1) if (1 - k / n) ** n < (1 - level) / 2), n)
    grid = np.linspace(0, 1, 2001)
    return float(grid[np.argmax(binom.sf(k - 1, n, grid) >= power)])


# --------------------------------------------------------------------------- the judges against reference labels

LABEL_COLUMNS = ("claims", "names", "coherent")


def rule_verdicts(rows: pd.DataFrame, concepts: Sequence[Any]) -> pd.DataFrame:
    """The three rule judges on rows with ``response`` and ``word`` (the trial's concept word; empty for the
    neutral request without injection)."""
    from hneuron_utils.introspection.trials import claims_detection, names_concept

    by_word = {c.word: c for c in concepts}
    missing = set(rows.word.dropna()) - set(by_word) - {""}
    if missing:
        raise ValueError(f"unknown concept words: {sorted(missing)}")
    return pd.DataFrame({"claims": rows.response.map(claims_detection).astype(bool),
                         "names": [bool(w) and names_concept(t, by_word[w]) for t, w in zip(rows.response, rows.word.fillna(""))],
                         "coherent": rows.response.map(coherent).astype(bool)}, index=rows.index)


def judge_agreement(labels: pd.DataFrame, concepts: Sequence[Any]) -> pd.DataFrame:
    """Each rule judge against the reference labels (columns ``claims``, ``names``, ``coherent`` of
    ``labels``, with ``response``, ``word`` and ``condition``): agreement, Cohen's κ, the majority baseline
    (the share of the more common reference label), n and the reference-label positive count; over all labels and
    per condition. The rules are re-run on the labelled text, so the table does not depend on the run."""
    missing = labels[list(LABEL_COLUMNS)].isna().any(axis=1)
    if missing.any():
        raise ValueError(f"{int(missing.sum())} reference-label rows lack a label (rows {labels.index[missing][:5].tolist()})")
    rule = rule_verdicts(labels, concepts)
    rows = []
    for what, idx in [("all", labels.index), *((f"condition {c}", g.index) for c, g in labels.groupby("condition"))]:
        for col in LABEL_COLUMNS:
            gold, pred = labels.loc[idx, col].astype(bool), rule.loc[idx, col]
            base = max(gold.mean(), 1 - gold.mean())
            g, p = gold.to_numpy(), pred.to_numpy()
            boots = [cohen_kappa(p[i], g[i]) for i in np.random.default_rng(0).integers(0, len(g), (1000, len(g)))]
            lo, hi = np.nanquantile(boots, [0.025, 0.975]) if np.isfinite(boots).any() else (np.nan, np.nan)
            rows.append({"judge": col, "responses": what, "n": len(idx), "hand positive": int(gold.sum()),
                         "agreement": float((gold == pred).mean()), "kappa": cohen_kappa(pred, gold),
                         "kappa lo": float(lo), "kappa hi": float(hi), "majority_baseline": float(base)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- readings

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def read_controls(controls: pd.DataFrame) -> list[str]:
    c = controls.set_index("measure")
    fp = c.loc["claims"]
    return [f"With no injection the model claims a detection in {int(fp.positive)} of {int(fp.n)} trials "
            f"({_pct(fp.rate)} [{_pct(fp.lo)}, {_pct(fp.hi)}]): the false-positive rate every injected rate is read against"
            + (f" (greedy decoding: the {int(fp.n)} prompts differ only in the trial number and gave "
               f"{int(fp['distinct responses'])} distinct repl{'y' if int(fp['distinct responses']) == 1 else 'ies'}, so the "
               "interval is narrower than the evidence)."
               if pd.notna(fp.get("distinct responses")) else "."),
            f"It names the trial's concept anyway in {_pct(c.loc['names', 'rate'])} and is coherent in "
            f"{_pct(c.loc['coherent', 'rate'])} of them."]


def read_best(cells: pd.DataFrame, layer_depth: Mapping[int, str]) -> list[str]:
    """The best cell's detect-and-name rate against its random-vector control, worded by the interval."""
    b = best_cell(cells)
    n = int(b.n)
    d, lo, hi = b["minus random"], b["minus random lo"], b["minus random hi"]
    where = f"layer {b.layer} ({layer_depth.get(int(b.layer), '')}), strength {b.strength:g}"
    coh = cells[(cells.layer == b.layer) & (cells.strength == b.strength) & (cells.condition == "concept")
                & (cells.measure == "coherent")].iloc[0]
    here = cells[(cells.layer == b.layer) & (cells.strength == b.strength)].set_index(["condition", "measure"])
    claims = here.loc[("concept", "claims")]
    rand_claims = here.loc[("random", "claims")]
    named, named_neutral = here.loc[("concept", "names")], here.loc[("neutral", "names")]
    cw = {"rose": "the concept makes it claim a detection more often than a random vector does",
          "fell": "the concept makes it claim a detection less often than a random vector does"}.get(
        change_words(claims["minus random lo"], claims["minus random hi"]),
        "no detectable difference: a random vector makes it claim a detection as readily")
    alo, ahi = b["adjusted lo"], b["adjusted hi"]
    if alo > 0:
        verdict = ("more often than with a random vector of the same norm: the difference's interval excludes 0, "
                   f"also after a Bonferroni correction for choosing the best of the cells [{100 * alo:+.1f}, {100 * ahi:+.1f}]")
    elif lo > 0:
        verdict = ("more often than with a random vector in this cell, but not after correcting for choosing the best "
                   f"of the cells (Bonferroni interval [{100 * alo:+.1f}, {100 * ahi:+.1f}])")
    elif hi < 0:
        verdict = "less often than with a random vector of the same norm"
    else:
        verdict = ("no more often than with a random vector of the same norm, as far as this run can tell "
                   f"(a rate of about {_pct(smallest_detectable(n))} over a control that never fires would be detected "
                   "4 times in 5)")
    return [f"Best cell, {where}: the model claims a detection and names the injected concept in {_pct(b.rate)} "
            f"[{_pct(b.lo)}, {_pct(b.hi)}] of {n} trials; minus the random-vector control {100 * d:+.1f} points "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}]: {verdict}. The cell was chosen on these trials, so its rate is an "
            "optimistic estimate.",
            f"In that cell it claims a detection in {_pct(claims.rate)} of trials with the concept and {_pct(rand_claims.rate)} "
            f"with a random vector ({100 * claims['minus random']:+.1f} points [{100 * claims['minus random lo']:+.1f}, "
            f"{100 * claims['minus random hi']:+.1f}]: {cw}), names the concept in {_pct(named.rate)} of "
            f"detection answers and {_pct(named_neutral.rate)} of neutral-request answers, and {_pct(coh.rate)} of its "
            "detection answers are coherent."]


def leak_table(judged: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """How often the injected concept is named under the detection question and under the neutral request,
    per concept averaged over the layer × strength cells, and the paired difference (bootstrap over concepts)."""
    t = judged[judged.condition.isin(["concept", "neutral"])].astype({"names": float})
    per = t.pivot_table(index="concept", columns="condition", values="names", aggfunc="mean")
    rows = []
    for c in ("concept", "neutral"):
        v = per[c].to_numpy(float)
        boots = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
        rows.append({"question": "detection" if c == "concept" else "neutral request", "names the concept": v.mean(),
                     "lo": np.quantile(boots, 0.025), "hi": np.quantile(boots, 0.975), "concepts": len(v)})
    d, lo, hi = _paired(per["concept"].to_numpy(), per["neutral"].to_numpy(), n_boot, seed)
    rows.append({"question": "detection minus neutral", "names the concept": d, "lo": lo, "hi": hi, "concepts": len(per)})
    return pd.DataFrame(rows)


def read_leak(leak: pd.DataFrame) -> list[str]:
    """Does the concept appear in answers to the neutral request as often as in detection answers?"""
    r = leak.set_index("question")
    det, neu, d = r.loc["detection"], r.loc["neutral request"], r.loc["detection minus neutral"]
    head = (f"The injected concept is named in {_pct(det['names the concept'])} of detection answers and "
            f"{_pct(neu['names the concept'])} of answers to the neutral request (per concept over all cells, "
            f"n = {int(d.concepts)} concepts); difference {100 * d['names the concept']:+.1f} points "
            f"[{100 * d.lo:+.1f}, {100 * d.hi:+.1f}]")
    if det["names the concept"] == 0 and neu["names the concept"] == 0:
        return [head + ": the concept is never named."]
    if d.lo > 0:
        return [head + ": the detection question draws the concept out more than a neutral request does."]
    if d.hi < 0:
        return [head + ": the concept surfaces less under the detection question than under a neutral request, so "
                "naming it is not specific to being asked about an injection."]
    return [head + ": no detectable difference, so naming the concept is not specific to being asked about an injection."]


def read_confidence(aurocs: pd.DataFrame, alphas: pd.DataFrame, versus: pd.DataFrame | None = None) -> list[str]:
    """The stated-confidence AUROC against the classifier's, and the effect of α on the stated number."""
    a = aurocs.set_index("score")
    out = []
    for name, r in a.iterrows():
        sep = ("tells wrong answers from right ones better than chance" if r["auroc lo"] > 0.5 else
               "ranks them the wrong way round: worse than chance (interval below 0.5)" if r["auroc hi"] < 0.5 else
               "does not tell wrong answers from right ones better than chance (interval includes 0.5)")
        out.append(f"{name}: AUROC {r.auroc:.3f} [{r['auroc lo']:.3f}, {r['auroc hi']:.3f}] "
                   f"({int(r['n right'])} right, {int(r['n wrong'])} wrong): {sep}.")
    for name, r in a.drop(index=a.index[a["minus H-neuron classifier"].isna()]).iterrows():
        out.append(f"{name} minus the H-neuron classifier: {r['minus H-neuron classifier']:+.3f} "
                   f"[{r['lo of difference']:+.3f}, {r['hi of difference']:+.3f}]: "
                   + {"rose": "better than the classifier", "fell": "worse than the classifier"}.get(
                       change_words(r["lo of difference"], r["hi of difference"]), "no detectable difference") + ".")
    alphas = alphas if "measure" in alphas else alphas.assign(measure="confidence")
    for measure, t in alphas.groupby("measure", sort=False):
        what, unit, f = (("the stated number", "points", "{:.1f}") if measure == "confidence" else
                         ("P(yes)", "", "{:.3f}"))
        one = t[t.alpha == 1.0].iloc[0]
        line = f"With nothing scaled, {what}: mean {f.format(one['mean confidence'])} over {int(one.n)} replies"
        if measure == "confidence":
            line += f" ({int(one['no number'])} without a number)"
        out.append(line + ".")
        if measure == "confidence" and (t["lo"] == t["hi"]).all() and t["mean confidence"].nunique() == 1:
            out.append(f"The stated number is {f.format(one['mean confidence'])} in every reply that gives one, under every "
                       "α and neuron set: a ceiling, so it cannot show a change.")
            continue
        for _, r in t[t.alpha != 1.0].iterrows():
            w = change_words(r["change lo"], r["change hi"])
            out.append(f"{r.neurons} at α = {r.alpha:g}: {what} {f.format(r['mean confidence'])} (n = {r.n}), "
                       f"{r['change from α = 1']:+.3g} [{r['change lo']:+.3g}, {r['change hi']:+.3g}] from α = 1: {w}.")
        v = versus if versus is not None else pd.DataFrame(columns=["measure"])
        for _, r in v[v.get("measure", "confidence") == measure].iterrows() if len(v) else []:
            w = change_words(r.lo, r.hi, "higher", "lower")
            out.append(f"At α = {r.alpha:g}, {what} under the H-neurons minus under {r.versus}: {r['H minus random']:+.3g} "
                       f"[{r.lo:+.3g}, {r.hi:+.3g}] (n = {int(r.n)}): " + ("no detectable difference from the random set."
                       if w.startswith("no") else f"{w} than under the random set."))
    return out


def read_judges(agreement: pd.DataFrame, threshold: float = 0.6) -> list[str]:
    a = agreement[agreement.responses == "all"]
    return [f"Rule judge '{r['judge']}' vs {r['n']} reference labels ({r['hand positive']} positive in the reference labels): agreement "
            f"{_pct(r['agreement'])} (majority baseline {_pct(r['majority_baseline'])}), κ = {r['kappa']:.2f} "
            f"[{r['kappa lo']:.2f}, {r['kappa hi']:.2f}]"
            + ("" if r["kappa"] >= threshold else f": not validated (κ below {threshold})") + "."
            for _, r in a.iterrows()]


def summary(controls: pd.DataFrame, cells: pd.DataFrame, depth: Mapping[int, str], leak: pd.DataFrame,
            aurocs: pd.DataFrame, *, alphas: pd.DataFrame, versus: pd.DataFrame, agreement: pd.DataFrame) -> list[str]:
    """The notebook's findings (also the README's block), every verb chosen by an interval."""
    return [*read_judges(agreement), *read_controls(controls)[:1], *read_best(cells, depth), *read_leak(leak),
            *read_confidence(aurocs, alphas, versus)]
