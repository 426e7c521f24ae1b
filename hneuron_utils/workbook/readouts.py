"""Tables into words: every sentence a notebook, the README or a run's RESULTS.md prints about a result.

The methods layer returns tables; the functions here read them. Each verb is chosen by an interval (a
difference whose 95% interval excludes 0, a rate whose interval clears a threshold), never typed in by hand.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from hneuron_utils.interventions.steering import ALPHA_ONE
from hneuron_utils.stats import interval_side
from hneuron_utils.introspection.analysis import best_cell, smallest_detectable


# --------------------------------------------------------------------------- CETT features

def read_batch_independence(check: dict, dtype: Any) -> str:
    """One sentence that reads :func:`batch_independence`'s result."""
    if not check.get("examples"):
        return "no example was re-extracted (repro_check_size = 0): batch independence NOT checked"
    worst = check["max relative difference"]
    verdict = ("below float16 storage resolution (~1e-3): the features do not depend on the batch" if worst < 2e-3
               else "the features DEPEND on the batch they were extracted in")
    return (f"{str(dtype).replace('torch.', '')}, {check['examples']} examples re-extracted one at a time: "
            f"{check['identical after float16 storage']:.1%} of stored features are identical; the largest relative "
            f"change is {worst:.1e} — {verdict}.")



# --------------------------------------------------------------------------- The sparse probe

def read_grid(table: pd.DataFrame, choice: dict[str, pd.Series]) -> str:
    """One sentence on the C grid and what each selection rule picks."""
    conv = "every fit converged" if bool(table.converged.all()) else "SOME FITS DID NOT CONVERGE"
    sizes = ", ".join(f"{int(n)} at C = {c:g}" for c, n in zip(table.C, table.n_positive))
    picks = "; ".join(f"the {rule.replace('_', '-')} rule picks C = {row['C']:g} ({int(row['n_positive'])} neurons)"
                      for rule, row in choice.items())
    n = table.sort_values("C").n_positive.to_numpy()
    trend = "grow with C" if (np.diff(n) >= 0).all() else "do not grow steadily with C"
    return f"Positive neurons {trend} ({sizes}); {conv}. {picks[0].upper() + picks[1:]}."


def read_h_neurons(k: int, n_features: int, C: float, rule: str, clf: object, *, tol: float) -> str:
    """One sentence on the fitted H-neuron set."""
    coef = clf.coef_[0]
    return (f"C = {C:g} ({rule} rule): {k} H-neurons = {1000 * k / n_features:.3f}‰ of {n_features:,} FFN neurons "
            f"(paper: 0.01‰–0.35‰); {int((coef < 0).sum())} negative and {int((coef != 0).sum())} non-zero "
            f"coefficients; fit {'converged' if clf.converged else 'did NOT converge'} in {clf.n_iter} iterations "
            f"(tol {tol:g}).")


def read_stability(stab: pd.DataFrame) -> str:
    """One sentence on the bootstrap Jaccards."""
    b = stab[stab.comparison.str.startswith("bootstrap")].jaccard
    if b.empty:
        return "no bootstrap refits (stability_boots = 0)"
    return (f"Refit on {len(b)} bootstrap resamples of the training questions, the set overlaps itself with "
            f"Jaccard {b.min():.2f}–{b.max():.2f} (median {b.median():.2f}): "
            + ("a stable set." if b.median() >= 0.8 else "the individual neurons depend on which questions are drawn."))


def read_test(table: pd.DataFrame) -> str:
    """One sentence comparing the H-neuron and random-neuron classifiers' test AUROC, words by interval."""
    h, r = table.iloc[1], table.iloc[2]
    rel = ("above" if h.auroc_lo > r.auroc_hi else "below" if h.auroc_hi < r.auroc_lo else "overlapping")
    return (f"H-neuron classifier: accuracy {h.accuracy:.1%} [{h.accuracy_lo:.1%}, {h.accuracy_hi:.1%}], AUROC "
            f"{h.auroc:.3f} [{h.auroc_lo:.3f}, {h.auroc_hi:.3f}]; random neurons AUROC {r.auroc:.3f} (range of draws "
            f"{r.auroc_lo:.3f}–{r.auroc_hi:.3f}): the H-neuron interval lies {rel} the random range.")



# --------------------------------------------------------------------------- Baselines

def read_differences(diffs: pd.DataFrame, reference: str = "H-neurons") -> list[str]:
    """One line per baseline: the words chosen by the paired interval of ``reference`` minus it, with the
    AUROC difference and its length-controlled version."""
    from hneuron_utils.stats import verdict

    out = []
    for _, r in diffs.iterrows():
        line = (f"{verdict(r.auroc_diff_lo, r.auroc_diff_hi, reference, r.method)}: AUROC difference "
                f"{r.auroc_diff:+.3f} [{r.auroc_diff_lo:+.3f}, {r.auroc_diff_hi:+.3f}]")
        if "matched_auroc_diff" in r:
            line += (f"; length-controlled {r.matched_auroc_diff:+.3f} "
                     f"[{r.matched_auroc_diff_lo:+.3f}, {r.matched_auroc_diff_hi:+.3f}]")
        out.append(("" if "set" not in r else f"{r['set']}: ") + line)
    return out



# --------------------------------------------------------------------------- Generalisation

def transfer_words(lo: float, hi: float) -> str:
    """Words for a transferred classifier's AUROC interval against chance (0.5)."""
    return {1: "transfers (interval above chance)", -1: "is below chance (interval under 0.5)",
            0: "does not transfer detectably (interval includes 0.5)"}[interval_side(lo, hi, null=0.5)]


def random_words(h: Any, r: Any) -> str:
    """'above', 'below' or 'not separable from': the H-neuron AUROC interval against the random draws' range."""
    return "above" if h.auroc_lo > r.auroc_hi else "below" if h.auroc_hi < r.auroc_lo else "not separable from"


def read_abstention(table: pd.DataFrame) -> str:
    """The abstention table in words, the direction chosen by the difference's interval."""
    f, h = table.iloc[0], table.iloc[1]
    out = (f"Under the system turn the model abstains on {f.abstains:.0%} [{f['abstains lo']:.0%}, {f['abstains hi']:.0%}] "
           f"of the TriviaQA questions it knew (n = {int(f.n)}) and {h.abstains:.0%} [{h['abstains lo']:.0%}, "
           f"{h['abstains hi']:.0%}] of those it hallucinated on (n = {int(h.n)})")
    if len(table) < 3:
        return out + "."
    d = table.iloc[2]
    words = ("more often on the questions it hallucinates on" if d["abstains lo"] > 0 else
             "less often on the questions it hallucinates on" if d["abstains hi"] < 0 else
             "no detectable difference between the classes")
    return out + (f": difference {d.abstains:+.0%} [{d['abstains lo']:+.0%}, {d['abstains hi']:+.0%}] → {words}.")


def reference_columns(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the column names that tables written before the rename used for reference labels
    ("hand: faithful", "hand positive", "judge faithful, hand hallucinated", ...) read as "reference ..."."""
    def rename(c: Any) -> Any:
        if not isinstance(c, str):
            return c
        return (c.replace("hand: ", "reference: ").replace("hand positive", "reference positive")
                .replace(", hand ", ", reference "))
    return table.rename(columns=rename)


def read_judge(table: pd.DataFrame, prompt: str, min_kappa: float = 0.6) -> str:
    """One sentence on whether the abstention judge is validated for responses under ``prompt``: κ at
    least ``min_kappa`` with both classes among the reference labels."""
    row = table[table.prompt == prompt]
    if row.empty:
        return f"no reference labels under the {prompt!r} prompt: the judge is NOT validated there"
    r = reference_columns(row).iloc[0]
    if min(r["reference: faithful"], r["reference: hallucinated"]) == 0:
        return (f"{prompt}: {r.responses} reference labels, all of one class — agreement {r.agreement:.0%} equals what a "
                "constant judge scores; the judge is NOT validated there")
    kappa = r["Cohen's kappa"]
    verdict = "validated" if kappa >= min_kappa else "NOT validated"
    return (f"{prompt}: agreement {r.agreement:.0%} on {r.responses} reference labels ({r['reference: faithful']} abstain, "
            f"{r['reference: hallucinated']} invent), κ = {kappa:.2f}, majority baseline {r['majority baseline']:.0%}"
            f" → {verdict} (κ ≥ {min_kappa} needed)")


def read_shift(shift: Mapping[str, float]) -> str:
    """The prompt's shift in words chosen by the paired interval."""
    lo, hi = shift["difference lo"], shift["difference hi"]
    words = ("the system turn lowers it" if hi < 0 else "the system turn raises it" if lo > 0 else
             "no detectable change from the system turn")
    return (f"H-neuron AUROC on TriviaQA's test answers: {shift['auroc (paper prompt)']:.3f} under the paper's prompt, "
            f"{shift['auroc (system turn)']:.3f} with the system turn in the context (n = {int(shift['n'])}): difference "
            f"{shift['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] → {words}")


MIN_READ_PER_CLASS = 10  # below this many questions per class a set's AUROC gets no words (its interval spans most of [0, 1])


def read_transfer(results: pd.DataFrame, reference_set: str = "TriviaQA", min_per_class: int = MIN_READ_PER_CLASS
                  ) -> list[str]:
    """Per set other than ``reference_set``: the H-neuron AUROC against chance and against the random
    range, in words chosen by the intervals: "transfers" only where the H-neuron interval lies above 0.5,
    and above, below or overlapping the random draws' range. Below ``min_per_class`` questions per class
    a bootstrap interval means little (one question per class gives [1, 1]): such sets get no words."""
    out = []
    for s in dict.fromkeys(results["set"]):
        if s == reference_set:
            continue
        r, h = results[results["set"] == s].iloc[0], results[results["set"] == s].iloc[1]
        if not np.isfinite(h.accuracy):
            out.append(f"{s}: no balanced test set (a class is empty) — not scored")
            continue
        n = min(int(h["n faithful"]), int(h["n hallucinated"]))
        if n < min_per_class:
            out.append(f"{s}: H-neuron AUROC {h.auroc:.3f} on only {n} question(s) per class — too few to read "
                       f"(at least {min_per_class} per class needed)")
            continue
        rel = random_words(h, r)
        chance = transfer_words(h.auroc_lo, h.auroc_hi)
        out.append(f"{s}: H-neuron AUROC {h.auroc:.3f} [{h.auroc_lo:.3f}, {h.auroc_hi:.3f}], n = "
                   f"{int(h['n faithful'])} + {int(h['n hallucinated'])} → the classifier {chance}; vs random "
                   f"{r.auroc:.3f} [{r.auroc_lo:.3f}, {r.auroc_hi:.3f}] → H-neurons {rel} random neurons")
    return out



# --------------------------------------------------------------------------- Steering by neuron scaling

def _judge_prefix(status: Mapping[str, str] | None, b: str) -> str:
    s = (status or {}).get(b, "validated")
    return "" if s == "validated" else f"[{s}: not a finding] "


def _rate_at_one(rates: pd.DataFrame, b: str) -> float:
    row = rates[(rates.benchmark == b) & (rates.neurons == "H-neurons") & (rates.alpha == ALPHA_ONE)]
    return float(row.rate.iloc[0]) if len(row) else float("nan")


def edge_note(rate: float, edge: float = 0.05) -> str:
    """"; at the ceiling (99% at α = 1): …" where the unmodified rate lies within ``edge`` of 0 or 1 (a slope
    there, and its smallest detectable value, can only show one direction), else ""."""
    if rate >= 1 - edge:
        return f"; at the ceiling ({rate:.0%} at α = 1): a rise with α has little room to show"
    if rate <= edge:
        return f"; at the floor ({rate:.0%} at α = 1): a fall as α goes to 0 has little room to show"
    return ""


def read_knowledge(know: pd.DataFrame, prompt: str, status: str = "validated",
                   screen: Mapping[str, int] | None = None) -> str:
    """One sentence on the counterfactual benchmark's unmodified rate: off the ceiling (20–80%) or not, and
    how many items the model could have answered from its own knowledge; ``screen`` (the counts of
    :func:`screen_known`) adds how the items were found."""
    all_ = know.iloc[0]
    k = know[know["items"] == "knows the real-world answer"].iloc[0]
    where = ("off the ceiling (within 20–80%)" if all_["in 20–80%"] else
             "outside 20–80%, so a rise with α has little room to show")
    head = f"{_judge_prefix({'counterfactual': status}, 'counterfactual')}Prompt '{prompt}': "
    rate = (f"the unmodified model follows the context on {all_['compliance at α = 1']:.0%} [{all_.lo:.0%}, "
            f"{all_.hi:.0%}] of {all_.n} judged items, {where}." if all_.n else
            f"none of the {all_['not judged']} unmodified answers could be judged (neither answer named).")
    on_known = (f"; on those it follows the context {k['compliance at α = 1']:.0%} of the time (n = {k.n})."
                if k.n else "; none of those answers could be judged.")
    return (head + rate + f" It names the real-world answer closed-book on {k.n + k['not judged']} of "
            f"{all_.n + all_['not judged']} items" + on_known
            + (f" The items were screened for it: {screen['known']} known among the first {screen['screened']} "
               f"of the pool ({screen['known'] / max(screen['screened'], 1):.1%})." if screen else ""))


def read_side_effects(side: pd.DataFrame) -> list[str]:
    """One sentence per neuron set at α = 0 and at the largest α: accuracy and perplexity change from α = 1,
    with the word chosen by the paired interval."""
    def change(lo: float, hi: float) -> str:
        return "higher" if lo > 0 else "lower" if hi < 0 else "no change detectable"

    out = []
    for nset, t in side.groupby("neurons", sort=False):
        for a in [t.alpha.min(), t.alpha.max()]:
            r = t[t.alpha == a].iloc[0]
            acc = change(r["change lo"], r["change hi"])
            pp = change(r["ppl change lo"], r["ppl change hi"])
            out.append(f"{nset} at α = {a:g}: TriviaQA accuracy {r['TriviaQA accuracy']:.1%} "
                       f"[{r['accuracy lo']:.1%}, {r['accuracy hi']:.1%}] (n = {r['n questions']}), a change of "
                       f"{r['accuracy change']:+.1%} [{r['change lo']:+.1%}, {r['change hi']:+.1%}] from α = 1 ({acc}); "
                       f"perplexity {r.perplexity:.2f} [{r['perplexity lo']:.2f}, {r['perplexity hi']:.2f}] "
                       f"(n = {r['n passages']} passages), {r['perplexity change']:+.2f} "
                       f"[{r['ppl change lo']:+.2f}, {r['ppl change hi']:+.2f}] ({pp}).")
    return out


def read_slope_differences(t: pd.DataFrame, status: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per row of :func:`slope_differences`, its words chosen by the interval's sign (a
    higher slope: compliance rises faster, or falls more slowly, with α). The interval resamples items
    only, so it is conditional on the random sets that were drawn."""
    out = []
    for _, r in t.iterrows():
        if pd.isna(r.difference):
            out.append(f"{r.benchmark}: H-neuron slope minus the {r.against}' mean: not computable (fewer than two α "
                       "values with a judged response)")
            continue
        if r.lo > 0:
            words = f"the H-neuron slope is higher than the {r.against}'"
        elif r.hi < 0:
            words = f"the H-neuron slope is lower than the {r.against}'"
        elif pd.isna(r.detectable):
            words = f"no difference from the {r.against} detectable"
        else:
            words = (f"no difference from the {r.against} detectable (smallest detectable ±{r.detectable:.1f} "
                     "points per unit α)")
        on = f", both on α {', '.join(str(r.alphas).split())}" if "alphas" in r and not pd.isna(r.alphas) else ""
        out.append(f"{_judge_prefix(status, r.benchmark)}{r.benchmark}: H-neuron slope minus the {r.against}' mean "
                   f"({int(r.sets)}{on}): {r.difference:+.1f} "
                   f"[{r.lo:+.1f}, {r.hi:+.1f}] points per unit α, n = {int(r.n)} items: {words}")
    return out


def read_slopes(slopes: pd.DataFrame, status: Mapping[str, str] | None = None,
                rates: pd.DataFrame | None = None) -> list[str]:
    """One sentence per benchmark: the H-neuron slope's direction (chosen by its interval) and the random
    sets' slopes; ``status`` (benchmark → :func:`hneuron_utils.judges.agreement.judge_status`) marks a
    benchmark whose judge is not validated; ``rates`` (:func:`rates`) adds :func:`edge_note` at a ceiling or floor."""
    from hneuron_utils.stats import direction

    out = []
    for b in dict.fromkeys(slopes.benchmark):
        h = slopes[(slopes.benchmark == b) & (slopes.neurons == "H-neurons")].iloc[0]
        r = slopes[(slopes.benchmark == b) & slopes.neurons.str.startswith("random")].slope
        m = slopes[(slopes.benchmark == b) & slopes.neurons.str.startswith("layer-matched")].slope
        words = direction(h.lo, h.hi)
        if words == "shows no clear trend" and "detectable" in h and not pd.isna(h.detectable):
            words = (f"shows no effect detectable at n = {int(h.n)} (smallest detectable slope ±{h.detectable:.1f} "
                     "points per unit α, two-sided 95%, 80% power)")
        grid = lambda rows: (f" (α {', '.join(str(rows.alphas.iloc[0]).split())})"  # noqa: E731
                             if "alphas" in rows and len(rows) else "")
        hr = slopes[(slopes.benchmark == b) & (slopes.neurons == "H-neurons")]
        rr = slopes[(slopes.benchmark == b) & slopes.neurons.str.startswith("random")]
        out.append(f"{_judge_prefix(status, b)}{b}: with the H-neurons scaled, compliance {words} with α — slope {h.slope:+.1f} "
                   f"points per unit α [{h.lo:+.1f}, {h.hi:+.1f}]{grid(hr)}, n = {int(h.n)}; random sets{grid(rr)}: "
                   f"{', '.join(f'{x:+.1f}' for x in r)}"
                   + (f"; layer-matched random sets: {', '.join(f'{x:+.1f}' for x in m)}" if len(m) else "")
                   + (edge_note(_rate_at_one(rates, b)) if rates is not None else ""))
    return out



# --------------------------------------------------------------------------- Weight drift

def _inertia_verdict(t: Any, *, pair_ok: bool) -> str:
    """The words of one inertia test, chosen by the two-sided interval of the difference in mean rank."""
    lo, hi = t["difference lo"], t["difference hi"]
    if not pair_ok:
        return "inconclusive (the pair is not shown to be instruction-tuned)"
    if interval_side(lo, hi) > 0:
        return "the H-neurons changed less than the others (the paper's inertia)"
    if interval_side(lo, hi) < 0:
        return "the H-neurons changed MORE than the others (against the paper's inertia)"
    return (f"no detectable difference (the smallest this test could detect: "
            f"±{t['smallest detectable difference']:.3f} in mean rank)")


def read_inertia(tests: Any, *, pair_ok: bool = True) -> list[str]:
    """One sentence per z-scoring, its words chosen by the two-sided 95% interval of the difference in mean
    normalised rank (H-neurons − others; higher = changed less), with the paper's one-sided p beside it.
    When the interval includes 0, the sentence gives the smallest difference the test could detect. With
    ``pair_ok`` False (the pair failed 06's tuning check) the numbers are read as inconclusive."""
    out = []
    for _, t in tests.iterrows():
        lo, hi = t["difference lo"], t["difference hi"]
        verdict = _inertia_verdict(t, pair_ok=pair_ok)
        out.append(f"drift, z-scored {t.zscore}: H-neurons' mean normalised rank {t['H mean rank']:.3f} vs "
                   f"{t['others mean rank']:.3f} for the others (higher = changed less; n = {int(t['H-neurons'])}); "
                   f"difference {t['difference (H - others)']:+.3f} [{lo:+.3f}, {hi:+.3f}], two-sided t-test p = "
                   f"{t['p (t-test, two-sided)']:.3g}, permutation p = {t['p (permutation, two-sided)']:.3g} → {verdict}; "
                   f"the paper's one-sided test (H changed less): p = {t['p (t-test, one-sided)']:.3g}")
    return out




def read_drift_reference(table: pd.DataFrame, *, pair_ok: bool = True) -> list[str]:
    """Notebook 06's drift reference (:func:`hneuron_utils.training.drift.seed_reference`): how far the tuning
    moved the FFN weights against how far two tunings of the same recipe, differing only in their seed, end up
    from each other; whether the per-neuron drift ranking is the same under both seeds (Spearman ρ, its words
    chosen by the interval); and the second tuning's inertia test, read with :func:`read_inertia`'s words."""
    rows = {r.comparison: r for _, r in table.iterrows()}
    first, second, apart = (rows["base → tuned"], rows["base → second tuning (another seed)"],
                            rows["tuned → second tuning"])
    out = [f"the tuning moved the FFN weights by a mean cosine distance of {first['mean Δ up']:.2e} (up-projection "
           f"rows) and {first['mean Δ down']:.2e} (down-projection columns); a second tuning with another seed moved "
           f"them by {second['mean Δ up']:.2e} and {second['mean Δ down']:.2e}; the two tuned models are "
           f"{apart['mean Δ up']:.2e} and {apart['mean Δ down']:.2e} apart, {apart['ratio to base → tuned']:.2f}× the "
           f"drift from the base (0 = the recipe alone sets the change; about 2 = two independent changes of the "
           f"same size)"]
    side = interval_side(second["ρ lo"], second["ρ hi"])
    words = {1: "the same neurons tend to move most under both seeds", 0: "no detectable agreement between the seeds",
             -1: "the seeds move opposite neurons"}[side]
    out.append(f"per-neuron drift, tuning vs second tuning: Spearman ρ = {second['ρ with base → tuned']:.3f} "
               f"[{second['ρ lo']:.3f}, {second['ρ hi']:.3f}] over {int(second['neurons']):,} neurons → {words}"
               + (" (part of any agreement is the weights' own shape: a short weight row turns further under "
                  "the same push, whichever the seed)" if side > 0 else ""))
    out.append(f"under the second tuning, the H-neurons' mean normalised rank is {second['H mean rank']:.3f} vs "
               f"{second['others mean rank']:.3f} (difference {second['difference (H - others)']:+.3f} "
               f"[{second['difference lo']:+.3f}, {second['difference hi']:+.3f}]) → "
               f"{_inertia_verdict(second, pair_ok=pair_ok)}")
    return out

# --------------------------------------------------------------------------- Origin across tuning

def read_origin_transfer(transfer: pd.DataFrame, sizes: Mapping[str, dict], min_per_class: int = 10, *,
                         pair_ok: bool = True) -> list[str]:
    """One sentence per set: the tuned probe's AUROC on the base model with words chosen by its interval
    (against chance, and against the random-neuron probes' range), or why there is no test set (the
    measured ceiling), or that the set is too small to read (under ``min_per_class`` per class). With
    ``pair_ok`` False (the pair failed 06's tuning check) the numbers are read as inconclusive."""

    out = []
    for s in dict.fromkeys(transfer["set"]):
        r = transfer[(transfer["set"] == s) & (transfer.classifier == "H-neurons")].iloc[0]
        rnd = transfer[(transfer["set"] == s) & (transfer.classifier != "H-neurons")].iloc[0]
        n = min(int(r["n faithful"]), int(r["n hallucinated"]))
        if not np.isfinite(r.auroc):
            out.append(f"{s}: no balanced base-model test set — {sizes[s]['why smaller'] or 'a class is empty'}")
        elif n < min_per_class:
            out.append(f"{s}: AUROC {r.auroc:.3f} on only {n} question(s) per class — too few to read")
        else:
            rel = random_words(r, rnd)
            nums = (f"{s}: the tuned model's H-neuron probe scores AUROC {r.auroc:.3f} [{r.auroc_lo:.3f}, "
                    f"{r.auroc_hi:.3f}] on the base model (n = {int(r['n faithful'])} + {int(r['n hallucinated'])})")
            if not pair_ok:
                out.append(nums + f"; random-neuron probes {rnd.auroc:.3f} → inconclusive (the pair is not shown to be "
                                  "instruction-tuned)")
                continue
            out.append(nums + f" → it {transfer_words(r.auroc_lo, r.auroc_hi)}; random-neuron probes {rnd.auroc:.3f} "
                       f"[{rnd.auroc_lo:.3f}, {rnd.auroc_hi:.3f}] → H-neurons {rel} random neurons")
    return out



def read_tuning_check(check: pd.DataFrame) -> list[str]:
    """Notebook 06's manipulation check: one sentence per measure, then whether the pair passed."""
    out = [f"{r.measure}: base model ({r['base as']}) {r.base:.1%} [{r['base lo']:.1%}, {r['base hi']:.1%}], tuned "
           f"{r.tuned:.1%} [{r['tuned lo']:.1%}, {r['tuned hi']:.1%}] (n = {int(r.n)}); tuned − base "
           f"{100 * r['tuned − base']:+.1f} points [{100 * r['difference lo']:+.1f}, {100 * r['difference hi']:+.1f}] "
           f"→ {'passes' if r.passed else 'fails'}; criterion: {r.criterion}" for _, r in check.iterrows()]
    out.append("the pair passes the tuning check: its transfer and inertia readings are read below" if check.passed.all()
               else "the pair fails the tuning check: its transfer and inertia readings are inconclusive")
    return out


# --------------------------------------------------------------------------- Forgetting under fine-tuning

def change_words(lo: float, hi: float, up: str = "rose", down: str = "fell") -> str:
    """Words for a paired change chosen by its 95% interval."""
    return {1: up, -1: down, 0: "no detectable change"}[interval_side(lo, hi)]


def read_changes(table: pd.DataFrame, up: str = "rose", down: str = "fell") -> list[str]:
    """One sentence per tuned model and measure, its verb chosen by the paired interval (rates in percent,
    perplexity as a ratio)."""
    out = []
    for _, r in table.dropna(subset=["change"]).iterrows():
        fmt = "{:.1%}"
        base = table[(table.measure == r.measure) & table.change.isna()].iloc[0]
        ratio = "perplexity" in r.measure
        if ratio:
            fmt = "{:.2f}"
            words = change_words(r["change lo"] - 1, r["change hi"] - 1, up, down)
            d = f"×{r.change:.3f} [{r['change lo']:.3f}, {r['change hi']:.3f}]"
        else:
            words = change_words(r["change lo"], r["change hi"], up, down)
            d = f"{100 * r.change:+.1f} points [{100 * r['change lo']:+.1f}, {100 * r['change hi']:+.1f}]"
        out.append(f"{r.measure}, {r.model}: {fmt.format(base.rate)} → {fmt.format(r.rate)} [{fmt.format(r.lo)}, "
                   f"{fmt.format(r.hi)}] (n = {int(r.n)}); change {d} → {words}")
    return out


def read_detector(table: pd.DataFrame) -> list[str]:
    """Per tuned model: notebook 03's classifier's AUROC and its paired change from the untuned model."""
    out = []
    for _, r in table.dropna(subset=["change"]).iterrows():
        words = change_words(r["change lo"], r["change hi"], "rose", "fell")
        out.append(f"{r.model}: AUROC {r.auroc:.3f} [{r['auroc lo']:.3f}, {r['auroc hi']:.3f}] (n = {int(r['n faithful'])} + "
                   f"{int(r['n hallucinated'])}); change from the untuned model {r.change:+.3f} [{r['change lo']:+.3f}, "
                   f"{r['change hi']:+.3f}] → {words}")
    return out


def read_drift(tests: pd.DataFrame) -> list[str]:
    """Per loss: the H-neurons' drift rank against the other trained neurons (two-sided) and their share
    of the weight change."""
    out = []
    for _, t in tests.iterrows():
        if t["H-neurons"] == 0:
            out.append(f"{t.loss}: no H-neuron lies in the trained layers, so there is nothing to test (train more "
                       "layers: ft_train_layers)")
            continue
        lo, hi = t["difference lo"], t["difference hi"]
        verdict = ("the H-neurons changed less than the others" if lo > 0 else "the H-neurons changed MORE than the others"
                   if hi < 0 else f"no detectable difference (smallest detectable ±{t['smallest detectable difference']:.3f})")
        out.append(f"{t.loss}: H-neurons' mean normalised drift rank {t['H mean rank']:.3f} vs {t['others mean rank']:.3f} "
                   f"(higher = changed less; n = {int(t['H-neurons'])}); difference {t['difference (H - others)']:+.3f} "
                   f"[{lo:+.3f}, {hi:+.3f}], two-sided p = {t['p (t-test, two-sided)']:.3g} → {verdict}. They take "
                   f"{t['weight-change share (H)']:.3%} [{t['weight-change share lo']:.3%}, {t['weight-change share hi']:.3%}] "
                   f"of the squared weight change, being {t['neuron share (H)']:.3%} of the trained neurons")
    return out


# The EAFT paper's own gap (arXiv 2601.02151; Qwen3-4B-Instruct tuned on math): average general-ability loss in points
EAFT_PAPER_GENERAL_LOSS = {"SFT": 4.6, "EAFT": 1.0}


def read_head_to_head(table: pd.DataFrame, *, taught: bool = True) -> list[str]:
    """One sentence per measure, its words chosen by the paired interval; when the tunings did not both teach
    the new domain (the manipulation check), the numbers are given and read as inconclusive."""
    out = []
    for _, r in table.iterrows():
        nums = (f"{r.measure}: {r.comparison} = {100 * r.change:+.1f} points [{100 * r['change lo']:+.1f}, "
                f"{100 * r['change hi']:+.1f}] (n = {int(r.n)}) → ")
        if not taught:
            out.append(nums + "inconclusive (the tuning did not teach the new domain)")
        elif r['change lo'] == r['change hi']:
            out.append(nums + "not estimable (the two tunings gave the same outcome on every item)")
        else:
            first = r.comparison.split(" − ")[0]
            out.append(nums + {1: f"higher under {first}", -1: f"lower under {first}",
                               0: "no detectable difference"}[interval_side(r['change lo'], r['change hi'])])
    if taught:
        out.append(f"for scale, the EAFT paper's general-ability loss: {EAFT_PAPER_GENERAL_LOSS['SFT']} points under SFT, "
                   f"{EAFT_PAPER_GENERAL_LOSS['EAFT']} under EAFT (Qwen3-4B-Instruct tuned on math)")
    return out


def read_manipulation_check(check: pd.DataFrame) -> list[str]:
    """The manipulation check of notebook 08: did each tuning raise held-out accuracy (interval above 0)?"""
    out = [f"{r.model}: held-out accuracy {r.accuracy:.1%} (n = {int(r.n)}), change from the untuned model "
           f"{100 * r.change:+.1f} points [{100 * r['change lo']:+.1f}, {100 * r['change hi']:+.1f}] → "
           + ("taught (the interval lies above 0)" if r.taught else "did not teach (the interval reaches 0 or below)")
           for _, r in check.iterrows()]
    out.append("manipulation check passed: the losses are compared below" if check.taught.all() else
               "manipulation check failed: every comparison of the losses below is inconclusive")
    return out


def read_selection(table: pd.DataFrame, choice: Mapping[str, float]) -> str:
    """The learning rate and step chosen on the validation split, against the untuned model's score there."""
    n = int(table["validation items"].iloc[0])
    row = table[(table.lr == choice["lr"]) & (table.step == choice["step"])].iloc[0]
    return (f"chosen on the validation split ({n} tuning items, never the held-out ones): lr {choice['lr']:g}, "
            f"step {int(choice['step'])} of {int(table.step.max())}: {row.accuracy:.1%} [{row.lo:.1%}, {row.hi:.1%}] "
            f"right, against {choice['untuned accuracy']:.1%} untuned")


def read_judge_agreement(table: pd.DataFrame) -> list[str]:
    """One sentence per call over all labels."""
    out = []
    for _, r in table[table.answers == "all"].iterrows():
        kappa = r["Cohen's kappa"]
        out.append(f"rule judge vs reference labels, {r.call}: agreement {r.agreement:.0%} on {int(r.responses)} answers "
                   f"(majority baseline {r['majority baseline']:.0%}), κ = {kappa:.2f}")
    return out


def read_reidentify(table: pd.DataFrame, bootstrap_jaccard: float | None) -> list[str]:
    """One sentence per model: the set found again and its overlap with notebook 03's, next to the overlap of
    notebook 03's own bootstrap refits (how much the set moves when only the training sample changes)."""
    out = []
    for _, r in table.iterrows():
        found, shared = int(r["H-neurons found"]), int(r["shared with 03's set"])
        jac, jac_t = r["Jaccard with 03's set"], r["Jaccard within the trained layers"]
        n_t, o_t = int(r["found in the trained layers"]), int(r["03's in the trained layers"])
        out.append(f"{r.model}: {found} H-neurons found again, {shared} of them in notebook 03's set; Jaccard {jac:.2f} "
                   f"overall, {jac_t:.2f} within the trained layers ({n_t} found there vs {o_t})")
    if bootstrap_jaccard is not None:
        out.append(f"for scale: notebook 03's bootstrap refits of the untuned model (resampled training questions) "
                   f"overlap its set by Jaccard {bootstrap_jaccard:.2f} on average, the overlap sampling noise alone leaves")
    return out


def forgetting_summary(outcomes: pd.DataFrame, versus: pd.DataFrame, drift: pd.DataFrame, detector: pd.DataFrame,
            conflicts: pd.DataFrame, *, again: pd.DataFrame | None = None, bootstrap_jaccard: float | None = None,
            agreement: pd.DataFrame | None = None, check: pd.DataFrame | None = None) -> list[str]:
    """The notebook's findings in a few sentences (also the run's RESULTS.md), every word chosen by an interval.
    Without ``check`` (a run from before the manipulation check) the tunings count as having taught only when
    every tuned model's held-out accuracy change has its interval above 0."""
    if check is None:
        learn = outcomes[outcomes.measure.str.startswith("new domain") & outcomes.change.notna()]
        taught = bool(len(learn)) and bool((learn["change lo"] > 0).all())
    else:
        taught = bool(check.taught.all())
    c = conflicts.set_index("measure")
    share = c.loc["share of tokens that are confident conflicts"]
    sft_l, eaft_l = (c.loc[f"share of the {k} loss on conflicts"] for k in ("SFT", "EAFT"))
    d = c.loc["EAFT − SFT share of the loss on conflicts"]
    out = [f"Confident conflicts are {share.value:.1%} [{share.lo:.1%}, {share.hi:.1%}] of the tuning targets "
           f"({int(share['conflict tokens'])} of {int(share.tokens)} tokens of {int(share.pairs)} conversations); they "
           f"carry {sft_l.value:.1%} [{sft_l.lo:.1%}, {sft_l.hi:.1%}] of the SFT loss and {eaft_l.value:.1%} "
           f"[{eaft_l.lo:.1%}, {eaft_l.hi:.1%}] of the EAFT loss (difference {100 * d.value:+.1f} points "
           f"[{100 * d.lo:+.1f}, {100 * d.hi:+.1f}], paired over conversations)."]
    out += read_changes(outcomes[~outcomes.measure.str.startswith("refusal")])
    if agreement is not None:
        out += [x[0].upper() + x[1:] for x in read_judge_agreement(agreement)]
    if check is not None:
        out += ["Manipulation check, " + x for x in read_manipulation_check(check)]
    out += read_head_to_head(versus, taught=taught)
    out += ["H-neuron drift under " + line for line in read_drift(drift)]
    out += ["Notebook 03's detector after " + line for line in read_detector(detector)]
    if again is not None:
        lines = read_reidentify(again, bootstrap_jaccard)
        out += ["Found again on " + x for x in lines[:len(again)]] + [x[0].upper() + x[1:] for x in lines[len(again):]]
    return out



# --------------------------------------------------------------------------- The streaming monitor

def _ci(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _pci(lo: float, hi: float) -> str:
    return f"[{100 * lo:.1f}%, {100 * hi:.1f}%]"


def versus(lo: float, hi: float, a: str, b: str, higher_is_better: bool = True) -> str:
    """Words for ``a`` against ``b`` from the 95% interval [lo, hi] of a − b (two-sided)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{a} and {b} cannot be compared here"
    if (lo > 0) if higher_is_better else (hi < 0):
        return f"{a} beats {b}"
    if (hi < 0) if higher_is_better else (lo > 0):
        return f"{a} is beaten by {b}"
    return f"no detectable difference between {a} and {b} at this n"


def read_abstain(a: pd.DataFrame, reference: str, coverage: float) -> str:
    base = a.set_index("guard").loc["no guard"]
    r = a.set_index("guard").loc[reference]
    lines = [f"Lower risk is better. Without a guard {base.risk:.1%} of the {int(base.n)} held-out answers are hallucinated. Answering the "
             f"{coverage:.0%} it is surest of, the {reference} guard leaves {r.risk:.1%} {_pci(r.risk_lo, r.risk_hi)} "
             f"hallucinated. Where an interval of a difference includes 0, its ends bound what this run rules out."]
    for _, row in a.iterrows():
        if row.guard in (reference, "no guard"):
            continue
        v = versus(row.diff_lo, row.diff_hi, "the monitor's guard", "it", higher_is_better=False)
        lines.append(f"  {row.guard}: {row.risk:.1%} {_pci(row.risk_lo, row.risk_hi)}; monitor minus it "
                     f"{row['monitor minus this']:+.1%} {_pci(row.diff_lo, row.diff_hi)} → {v}")
    return "\n".join(lines)


def read_agreement(a: pd.DataFrame) -> str:
    parts = []
    for _, r in a.iterrows():
        k = r["Cohen's kappa"]
        words = ("almost perfect" if k > 0.8 else "substantial" if k > 0.6 else "moderate" if k > 0.4
                 else "fair" if k > 0.2 else "slight or none")
        parts.append(f"{r.answers} ({int(r.responses)} answers): agreement {r['agreement (wrong vs not)']:.0%} "
                     f"(majority baseline {r['majority baseline']:.0%}), Cohen's κ = {k:.2f} ({words})")
    return "The outcome rule against reference labels, on wrong versus not — " + "; ".join(parts) + "."


def read_early(e: pd.DataFrame, reference: str) -> str:
    """AUROC after t tokens, per method: the first position whose interval lies above chance once corrected for
    every position and method tried (Bonferroni over them; the corrected bound is a normal approximation from
    each 95% interval: AUROC − z·(hi − lo)/3.92), and the last position's AUROC with its 95% interval."""
    from scipy.stats import norm

    tries = len(e)  # positions × methods looked at
    z = float(norm.ppf(1 - 0.025 / max(tries, 1)))
    lines = [f"(\"above chance\" = the lower bound of a {tries}-fold Bonferroni-corrected interval above 0.5)"]
    for name, g in e.groupby("method", sort=False):
        lower = g.auroc - z * (g.auroc_hi - g.auroc_lo) / 3.92
        above = g[lower > 0.5]
        t0 = int(above.tokens.iloc[0]) if len(above) else 0
        first = (f"first above chance after {t0} token{'s' if t0 > 1 else ''}" if len(above)
                 else "never above chance at these positions")
        last = g.iloc[-1]
        lines.append(f"{name}: {first}; after {int(last.tokens)} tokens {last.auroc:.3f} {_ci(last.auroc_lo, last.auroc_hi, 3)}")
    return "\n".join(lines)


def read_final(m: pd.DataFrame, d: pd.DataFrame, reference: str) -> str:
    r = m.set_index("method").loc[reference]
    lines = [f"Final AUC of the {reference}: {r.auroc:.3f} {_ci(r.auroc_lo, r.auroc_hi, 3)} "
             f"(n = {int(r.n_per_class)} per class at least); "
             + ("above chance." if r.auroc_lo > 0.5 else "the interval includes chance (0.5).")
             + " Paired differences (where an interval includes 0, its ends bound the differences this run rules out):"]
    for _, row in d.iterrows():
        lines.append(f"  minus {row.method}: {row.auroc_diff:+.3f} {_ci(row.auroc_diff_lo, row.auroc_diff_hi, 3)} → "
                     + versus(row.auroc_diff_lo, row.auroc_diff_hi, "the monitor", row.method))
    return "\n".join(lines)


def read_overhead(o: pd.Series) -> str:
    spread = ""
    if "overhead_first" in o:
        lo, hi = sorted([o.overhead_first, o.overhead_second])
        spread = (f"; the two plain/monitored pairs gave {lo:+.1%} and {hi:+.1%}, so this measurement's own "
                  f"noise is about {100 * (hi - lo):.0f} point{'' if round(100 * (hi - lo)) == 1 else 's'}")
    verdict = ("within the 15% target" if max(o.overhead, o.get("overhead_second", o.overhead),
                                                o.get("overhead_first", o.overhead)) <= 0.15 else "above the 15% target")
    passes = " (mean of two passes each)" if "overhead_first" in o else ""
    return (f"Monitored decoding took {o.monitored_seconds:.1f} s against {o.plain_seconds:.1f} s{passes} "
            f"for the same {int(o.plain_tokens)} greedy tokens with plain calls: overhead {o.overhead:+.1%}{spread} "
            f"({verdict}).")


def read_precision(p: pd.Series) -> str:
    if p["monitor dtype"] == p["reference dtype"]:
        return "The monitor runs in the classifiers' own precision: nothing to compare."
    return (f"On {p.answers} held-out answers, notebook 03's final score from the {p['monitor dtype']} monitor differs from "
            f"the {p['reference dtype']} teacher-forced score by {p['mean |score difference|']:.3f} on average (at most "
            f"{p['max |score difference|']:.3f}; correlation {p['score correlation']:.3f}; median relative CETT error "
            f"{p['median relative CETT error']:.1%}).")


def read_resample(t: pd.DataFrame, reference: str) -> str:
    base = t.set_index("guard").loc["no guard"]
    lines = []
    for _, r in t.iterrows():
        if r.guard == "no guard":
            continue
        moved = ("higher than" if r.acc_diff_lo > 0 else "lower than" if r.acc_diff_hi < 0
                 else "not detectably different from")
        lines.append(f"{r.guard}: answers {r.coverage:.0%} {_pci(r.coverage_lo, r.coverage_hi)} of {int(r.questions)} questions; "
                     f"{r['hallucinated among answered']:.1%} {_pci(r.risk_lo, r.risk_hi)} of its answers are hallucinated "
                     f"(unguarded {base['hallucinated among answered']:.1%}); accuracy over all questions {r.accuracy:.1%} "
                     f"{_pci(r.accuracy_lo, r.accuracy_hi)}, {moved} unguarded ({r['accuracy minus unguarded']:+.1%} "
                     f"{_pci(r.acc_diff_lo, r.acc_diff_hi)}); "
                     f"{r['resamples per question']:.2f} resamples and {r['tokens per question']:.0f} tokens per question "
                     f"(unguarded {base['tokens per question']:.0f}).")
    return "\n".join(lines)


def monitor_summary(auc: pd.DataFrame, auc_diff: pd.DataFrame, early: pd.DataFrame, abstain: pd.DataFrame,
            resample: pd.DataFrame, *, overhead: pd.Series, reference: str, coverage: float) -> list[str]:
    """The notebook's closing sentences."""
    return [read_final(auc, auc_diff, reference), "", "How early:", read_early(early, reference), "",
            "Abstaining guards:", read_abstain(abstain, reference, coverage), "", "Resampling guards:",
            read_resample(resample, reference), "", read_overhead(overhead)]



# --------------------------------------------------------------------------- Introspection

def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


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


def read_judges(agreement: pd.DataFrame, threshold: float = 0.6) -> list[str]:
    a = reference_columns(agreement[agreement.responses == "all"])
    return [f"Rule judge '{r['judge']}' vs {r['n']} reference labels ({r['reference positive']} positive in the reference labels): agreement "
            f"{_pct(r['agreement'])} (majority baseline {_pct(r['majority_baseline'])}), κ = {r['kappa']:.2f} "
            f"[{r['kappa lo']:.2f}, {r['kappa hi']:.2f}]"
            + ("" if r["kappa"] >= threshold else f": not validated (κ below {threshold})") + "."
            for _, r in a.iterrows()]


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


def introspection_summary(controls: pd.DataFrame, cells: pd.DataFrame, depth: Mapping[int, str], leak: pd.DataFrame,
            aurocs: pd.DataFrame, *, alphas: pd.DataFrame, versus: pd.DataFrame, agreement: pd.DataFrame) -> list[str]:
    """The notebook's findings (also the run's RESULTS.md), every verb chosen by an interval."""
    return [*read_judges(agreement), *read_controls(controls)[:1], *read_best(cells, depth), *read_leak(leak),
            *read_confidence(aurocs, alphas, versus)]


def read_span_rules(table: pd.DataFrame) -> list[str]:
    """One line per answer-span rule of notebook 03's ``03_span_rules`` table: set size, AUROC and
    length-controlled AUROC with intervals, answer length alone, and the verdict against the best baseline."""
    out = []
    for r in table.to_dict("records"):
        matched = (f"{r['H length-controlled AUROC']:.3f} [{r['H length-controlled lo']:.3f}, "
                   f"{r['H length-controlled hi']:.3f}] on {int(r['length-matched pairs'])} same-length pairs"
                   if r["length-matched pairs"] else "not measurable (no same-length pair)")
        out.append(f"{r['span rule']}: {int(r['H-neurons'])} H-neurons (C = {r['C']:g}); AUROC {r['H AUROC']:.3f} "
                   f"[{r['H AUROC lo']:.3f}, {r['H AUROC hi']:.3f}], length-controlled {matched}; answer length "
                   f"alone {r['answer length AUROC']:.3f} [{r['answer length AUROC lo']:.3f}, "
                   f"{r['answer length AUROC hi']:.3f}]; {r['H vs best']} (H − best: {r['H minus best AUROC']:+.3f} "
                   f"[{r['H minus best lo']:+.3f}, {r['H minus best hi']:+.3f}])")
    return out


def headline_view(headline: pd.DataFrame) -> pd.DataFrame:
    """Notebook 03's headline as ten readable rows (numbers to 3 decimals, intervals in brackets)."""
    h = headline.iloc[0]

    def iv(a: str, lo: str, hi: str) -> str:
        return f"{h[a]:.3f} {_ci(h[lo], h[hi], 3)}"

    rows = {"test questions per class": f"{int(h['test per class'])} (train {int(h['train per class'])})",
            "H-neurons (C, rule)": f"{int(h['H-neurons'])} ({h['permille']:.3f}‰; C = {h['C']:g}, {h['C rule']} rule)",
            "H-neuron AUROC": iv("H AUROC", "H AUROC lo", "H AUROC hi"),
            "random neurons AUROC (mean of draws)": f"{h['random AUROC']:.3f} ({int(h['random draws'])} draws)",
            "answer length alone AUROC": f"{h['length AUROC']:.3f}",
            "best baseline": f"{h['best baseline']}: {iv('best baseline AUROC', 'best baseline AUROC lo', 'best baseline AUROC hi')}",
            "H-neurons minus best baseline": iv("H minus best AUROC", "H minus best lo", "H minus best hi"),
            "verdict": str(h["H vs best"])}
    if "bootstrap Jaccard median" in h and pd.notna(h["bootstrap Jaccard median"]):
        rows["stability (bootstrap Jaccard)"] = (f"median {h['bootstrap Jaccard median']:.2f}, range "
                                                 f"{h['bootstrap Jaccard min']:.2f}–{h['bootstrap Jaccard max']:.2f} "
                                                 f"({int(h['bootstrap refits'])} refits)")
        rows["stability-selected set"] = (f"{int(h['stable H-neurons'])} neurons"
                                          + (f", AUROC {iv('stable AUROC', 'stable AUROC lo', 'stable AUROC hi')}"
                                             if pd.notna(h["stable AUROC"]) else ""))
    return pd.Series(rows, name="03 headline").to_frame()
