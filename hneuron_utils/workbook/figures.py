"""Every figure of the workbook, drawn from saved result tables, so `make figures` needs no model.

Each figure is registered with the tables it reads (under ``results/<run>/tables/``). Notebooks call
:func:`draw` right after saving a table; ``python -m hneuron_utils.workbook.figures --run results/default``
re-draws all figures whose tables exist into that run's figures folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg") if "ipykernel" not in sys.modules else None
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hneuron_utils.paths import figures_dir, project_root  # noqa: E402


@dataclass(frozen=True)
class Figure:
    name: str
    tables: tuple[str, ...]
    draw: Callable[..., plt.Figure]


REGISTRY: dict[str, Figure] = {}


def register(name: str, *tables: str):
    def deco(fn):
        REGISTRY[name] = Figure(name, tables, fn)
        return fn
    return deco


def _set_label(name: str) -> str:
    """A neuron set's legend entry: 'random 0' (the table's index of a random draw) reads 'random set 1'."""
    parts = str(name).split()
    if len(parts) == 2 and parts[0] == "random" and parts[1].isdigit():
        return f"random set {int(parts[1]) + 1} (same size)"
    return str(name)


@register("00_tour_cett", "00_tour_cett.csv")
def _tour_cett(t: pd.DataFrame) -> plt.Figure:
    """CETT of every neuron of one layer at one token, sorted: how concentrated is the FFN output?"""
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    v = np.sort(t["cett"].to_numpy())[::-1]
    axes[0].plot(np.arange(1, len(v) + 1), v, lw=1.5)
    axes[0].set(xscale="log", yscale="log", xlabel="neuron rank (by CETT)", ylabel="CETT",
                title=f"layer {int(t['layer'].iloc[0])}, last prompt token")
    axes[1].plot(np.arange(1, len(v) + 1), np.cumsum(v) / v.sum(), lw=1.5)
    axes[1].set(xscale="log", xlabel="top-k neurons", ylabel="share of the layer's total CETT",
                title="cumulative share", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{t['model'].iloc[0]}: CETT = |z_j|·‖W_down[:,j]‖ / ‖h‖", fontsize=10)
    fig.tight_layout()
    return fig


@register("01_histogram", "01_histogram.csv")
def _histogram(t: pd.DataFrame) -> plt.Figure:
    """Correct samples out of K per question: the paper keeps only the two end bars."""
    subsets = [s for s in ("unscreened", "sampled") if s in set(t["subset"])]
    fig, axes = plt.subplots(1, len(subsets), figsize=(5 * len(subsets), 3.6), squeeze=False)
    k = int(t["correct_of_K"].max())
    titles = {"unscreened": "random check subset (every question sampled)",
              "sampled": "all questions sampled K times (screen-selected)"}
    for ax, s in zip(axes[0], subsets):
        d = t[t["subset"] == s]
        colors = ["tab:red" if x == 0 else "tab:green" if x == k else "tab:gray" for x in d["correct_of_K"]]
        ax.bar(d["correct_of_K"], d["questions"], color=colors)
        for x, y in zip(d["correct_of_K"], d["questions"]):
            ax.text(x, y, str(int(y)), ha="center", va="bottom", fontsize=8)
        ax.set(xlabel=f"correct samples out of K = {k}", ylabel="questions", xticks=range(k + 1),
               title=f"{titles[s]}, n = {int(d['questions'].sum())}")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Consistency of sampled answers (red: all wrong → hallucinated; green: all right → faithful)",
                 fontsize=10)
    fig.tight_layout()
    return fig


@register("01_span_lengths", "01_span_lengths.csv")
def _span_lengths(t: pd.DataFrame) -> plt.Figure:
    """Mean answer tokens per class under each span rule: the class gap a rule adds before any neuron is read."""
    import numpy as np

    t = t.assign(weighted=t["mean_tokens"] * t["examples"])
    g = t.groupby(["rule", "class"], sort=False)[["weighted", "examples"]].sum().reset_index()
    g["mean"] = g["weighted"] / g["examples"]
    rules = list(dict.fromkeys(g["rule"]))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(rules))
    for k, (cls, color) in enumerate((("faithful", "tab:green"), ("hallucinated", "tab:red"))):
        d = g[g["class"] == cls].set_index("rule").reindex(rules)
        bars = ax.bar(x + (k - 0.5) * 0.38, d["mean"], width=0.38, color=color,
                      label=f"{cls} (n = {int(d['examples'].iloc[0])})")
        for b, v in zip(bars, d["mean"]):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set(xticks=x, xticklabels=rules, ylabel="mean answer tokens per example", ylim=(0, None),
           title="Answer-span length by class under each span rule (train + test)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("02_layer_means", "02_layer_means.csv")
def _layer_means(t: pd.DataFrame) -> plt.Figure:
    """Mean CETT per layer for answer tokens (by class) and other tokens."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, d in t.groupby("tokens"):
        ax.plot(d["layer"], d["mean_cett"], marker="o", ms=3, label=name)
    ax.set(xlabel="layer", ylabel="mean CETT over neurons and examples", title="CETT by layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("03_c_grid", "03_c_grid.csv")
def _c_grid(t: pd.DataFrame) -> plt.Figure:
    """Neurons selected and held-out performance across the C grid."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(t["C"], t["n_positive"], marker="o", label="positive (H-neurons)")
    axes[0].plot(t["C"], t["n_nonzero"], marker="s", ls="--", label="non-zero")
    axes[0].set_yscale("symlog", linthresh=1)
    axes[0].set(xscale="log", xlabel="C (inverse L1 strength)", ylabel="neurons (0, then log scale)",
                title="neurons selected by the L1 probe")
    axes[0].set_ylim(bottom=0)
    from hneuron_utils.probes.probe import select_c

    for rule, ls in (("held_out", "-"), ("paper", "--")):
        try:
            c = float(select_c(t, rule)["C"])
        except (KeyError, ValueError):
            continue
        for ax in axes:
            ax.axvline(c, color="tab:green" if rule == "held_out" else "tab:purple", lw=1.2, ls=ls,
                       label=f"C chosen by the {rule.replace('_', '-')} rule ({c:g})")
    axes[0].legend(fontsize=8)
    axes[1].plot(t["C"], t["val_accuracy"], marker="o", label="held-out accuracy")
    axes[1].plot(t["C"], t["val_auroc"], marker="s", label="held-out AUROC")
    if "suppressed_accuracy" in t and t["suppressed_accuracy"].notna().any():
        axes[1].plot(t["C"], t["suppressed_accuracy"], marker="^", label="TriviaQA acc., neurons suppressed")
    axes[1].axhline(0.5, color="gray", lw=0.8, ls=":", label="chance (0.5)")
    axes[1].set(xscale="log", xlabel="C", ylabel="accuracy / AUROC (0–1)", ylim=(0, 1.02),
                title="selection criteria (validation split)")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("03_test", "03_test.csv")
def _test(t: pd.DataFrame) -> plt.Figure:
    """Held-out accuracy and AUROC: probe and H-neurons with 95% bootstrap intervals; random neurons as the
    mean of the draws with the range of the draws (a spread of sets, not a sampling interval, so drawn apart)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    labels = [f"{c.split(' (')[0]} ({n})" for c, n in zip(t["classifier"], t["neurons"])]
    is_random = t["classifier"].str.startswith("random").to_numpy()
    for ax, m in zip(axes, ("accuracy", "auroc")):
        colors = ["tab:gray" if r else c for r, c in zip(is_random, ["tab:blue", "tab:red", "tab:orange", "tab:green"])]
        ax.barh(labels, t[m], color=colors)
        for i, (lo, mid, hi, r) in enumerate(zip(t[f"{m}_lo"], t[m], t[f"{m}_hi"], is_random)):
            if r:  # the range of the random draws: a dotted span with end ticks, labelled as a range
                ax.plot([lo, hi], [i, i], color="k", lw=1.2, ls=":", marker="|", ms=12)
            else:
                ax.errorbar(mid, i, xerr=[[mid - lo], [hi - mid]], color="k", capsize=4, lw=1.2)
        ax.axvline(0.5, color="k", lw=0.8, ls=":")
        ax.set(xlim=(0, 1), xlabel=m, title=f"held-out TriviaQA {m}")
        ax.grid(axis="x", alpha=0.3)
    n = int(t["n_per_class"].iloc[0]) if "n_per_class" in t else None
    fig.suptitle("solid bars: 95% bootstrap interval over test questions; dotted: range of the random draws"
                 + (f" (n = {n} + {n})" if n else ""), fontsize=9)
    fig.tight_layout()
    return fig


@register("03_baselines", "03_baselines.csv")
def _baselines(t: pd.DataFrame) -> plt.Figure:
    """AUROC of the H-neuron classifiers and of every baseline on the same held-out questions, plain and
    length-controlled (same-length pairs only), with 95% intervals."""
    import numpy as np

    t = pd.concat([t[t.method.str.startswith("H-neurons")], t[~t.method.str.startswith("H-neurons")]])
    pairs = int(t["matched_pairs"].iloc[0]) if "matched_pairs" in t else 0
    cols = [("auroc", "AUROC"), ("matched_auroc", "length-controlled AUROC")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(t) + 1.8), sharey=True)
    labels = [f"{m} ({n})" for m, n in zip(t["method"], t["neurons_or_features"])]
    colours = ["tab:red" if m.startswith("H-neurons") else "tab:gray" for m in t["method"]]
    n_pc = int(t["n_per_class"].iloc[0])
    for ax, (m, title) in zip(axes, cols):
        ax.set(xlim=(0, 1), xlabel=title)
        ax.axvline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
        ax.grid(axis="x", alpha=0.3)
        if m not in t or not t[m].notna().any():
            ax.text(0.5, 0.5, "no test pair of the two classes\nhas the same answer length", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)
            ax.set_title(f"{title}\n(0 same-length pairs)", fontsize=10)
            continue
        v = t[m].to_numpy(dtype=float)
        err = np.vstack([v - t[f"{m}_lo"], t[f"{m}_hi"] - v])
        for j in range(len(labels)):
            ax.errorbar(v[j], j, xerr=err[:, j:j + 1], fmt="o", color=colours[j], capsize=3)
        extra = f", {pairs} same-length pairs" if m == "matched_auroc" else ""
        ax.set_title(f"{title}, 95% CI\n(n = {n_pc} per class{extra})", fontsize=10)
    axes[0].set(yticks=range(len(labels)), yticklabels=labels, ylim=(len(labels) - 0.5, -0.5))  # H-neuron rows on top
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


@register("03_layers", "03_layers.csv")
def _layers(t: pd.DataFrame) -> plt.Figure:
    """How many H-neurons each layer holds."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(t["layer"], t["h_neurons"], color="tab:red")
    ax.set(xlabel="layer", ylabel="H-neurons", title=f"H-neurons by layer (total {int(t['h_neurons'].sum())})")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


MIN_PER_CLASS_DRAWN = 10
"""A set is drawn in a transfer figure only with at least this many examples per class: below it an AUROC's
interval spans most of [0, 1] and the bar says nothing (the set is named under the figure with its counts)."""


def _scored_sets(t: pd.DataFrame, min_per_class: int = 1) -> tuple[list[str], str]:
    """The sets of a results table with at least ``min_per_class`` examples of each class (in table order), and
    a note naming the others with their counts ("" when every set is drawn)."""
    n = t.drop_duplicates("set").set_index("set")
    order = list(dict.fromkeys(t["set"]))
    small = [s for s in order if min(n.loc[s, "n faithful"], n.loc[s, "n hallucinated"]) < min_per_class]
    note = ", ".join(f"{s} ({int(n.loc[s, 'n faithful'])} faithful, {int(n.loc[s, 'n hallucinated'])} hallucinated)"
                     for s in small)
    return [s for s in order if s not in small], note


@register("04_generalisation", "04_results.csv")
def _generalisation(t: pd.DataFrame) -> plt.Figure:
    """The TriviaQA-trained classifiers on each set: accuracy and AUROC with 95% intervals."""
    import numpy as np

    sets, note = _scored_sets(t)
    wide = len(sets) > 3  # many sets: one panel above the other, so the labels stay readable
    fig, axes = (plt.subplots(2, 1, figsize=(max(8.0, 1.5 * len(sets)), 7.5)) if wide
                 else plt.subplots(1, 2, figsize=(11, 3.6)))
    if note:
        fig.text(0.5, -0.04, "not shown (a class is empty, no balanced test set): " + note, ha="center", fontsize=8)
    for ax, m in zip(axes, ("accuracy", "auroc")):
        for off, (prefix, color, label) in zip((-0.12, 0.12), (("random", "tab:gray", "random neurons (draws: mean, 2.5–97.5%)"),
                                                           ("H-neurons", "tab:red", "H-neurons (bootstrap 95% CI)"))):
            d = t[t.classifier.str.startswith(prefix)].set_index("set").reindex(sets)
            x = np.arange(len(sets)) + off
            ax.errorbar(x, d[m], yerr=[d[m] - d[f"{m}_lo"], d[f"{m}_hi"] - d[m]], fmt="o", color=color,
                        capsize=4, label=label)
        n = t.drop_duplicates("set").set_index("set").reindex(sets)
        ax.set_xticks(range(len(sets)), [f"{s.replace(' (', chr(10) + '(')}\nn = {min(a, b)}/class" for s, a, b in
                                          zip(sets, n["n faithful"], n["n hallucinated"])], fontsize=8)
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
        name = "AUROC" if m == "auroc" else m
        ax.set(ylim=(0, 1.02), ylabel=name, title=f"test {name}, classifiers trained on TriviaQA only")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


@register("05_compliance", "05_rates.csv")
def _compliance(t: pd.DataFrame) -> plt.Figure:
    """The Fig-3 analogue: compliance versus α per benchmark, H-neurons against random neurons."""
    benches = list(dict.fromkeys(t["benchmark"]))
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 3.8), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], benches):
        d = t[t.benchmark == b]
        h = d[d.neurons == "H-neurons"].sort_values("alpha")
        r = d[d.neurons.str.startswith("random (")].sort_values("alpha")
        ax.plot(h.alpha, h.rate, "o-", color="tab:red", label="H-neurons (95% CI)")
        ax.fill_between(h.alpha, h.lo, h.hi, color="tab:red", alpha=0.15)
        ax.plot(r.alpha, r.rate, "s--", color="tab:gray", label="random neurons (mean; band = draws' range)")
        ax.fill_between(r.alpha, r.lo, r.hi, color="tab:gray", alpha=0.2)
        for name, m in d[d.neurons.str.startswith("layer-matched")].groupby("neurons"):
            m = m.sort_values("alpha")
            ax.plot(m.alpha, m.rate, "^:", color="tab:blue", label="layer-matched random set")
        ax.axvline(1.0, color="k", lw=0.8, ls=":")
        lo_n, hi_n = (int(h.n.min()), int(h.n.max())) if len(h) else (0, 0)
        n_txt = f"{lo_n}" if lo_n == hi_n else f"{lo_n}–{hi_n}"
        flag = "\n(at the ceiling: every judged item complied)" if len(h) and (h.rate >= 1).all() else \
            "\n(at the floor: no judged item complied)" if len(h) and (h.rate <= 0).all() else ""
        if "judge" in d and (st := str(d.judge.iloc[0])) != "validated":
            flag += f"\n({st}: not a finding)"
        ax.set(xlabel="α (1 = unmodified)", ylim=(-0.02, 1.02))
        ax.set_title(f"{b}\n(n judged = {n_txt} per α){flag}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("compliance rate")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


@register("05_side_effects", "05_side_effects.csv")
def _side_effects(t: pd.DataFrame) -> plt.Figure:
    """TriviaQA accuracy, perplexity and response length versus α (bands: 95% bootstrap intervals)."""
    cols = ["TriviaQA accuracy", "perplexity", "mean response tokens"]
    bands = {"TriviaQA accuracy": ("accuracy lo", "accuracy hi"), "perplexity": ("perplexity lo", "perplexity hi")}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, c in zip(axes, cols):
        for nset, d in t.groupby("neurons", sort=False):
            d = d.sort_values("alpha")
            color = "tab:red" if nset == "H-neurons" else "tab:gray"
            ax.plot(d.alpha, d[c], "o-" if nset == "H-neurons" else "s--", color=color, label=_set_label(nset))
            if c in bands and bands[c][0] in d:
                ax.fill_between(d.alpha, d[bands[c][0]], d[bands[c][1]], color=color, alpha=0.15)
        ax.axvline(1.0, color="k", lw=0.8, ls=":")
        n = f" (n = {int(t['n questions'].iloc[0])})" if c == "TriviaQA accuracy" and "n questions" in t else ""
        n = f" (n = {int(t['n passages'].iloc[0])} passages)" if c == "perplexity" and "n passages" in t else n
        ax.set(xlabel="α (1 = unmodified)", title=c + n)
        if c == "TriviaQA accuracy":
            ax.set_ylim(0, 1.02)
        else:  # from 0, with headroom above the highest line or band (the autoscaled top clipped the tokens line)
            top = max(float(t[c].max()), float(t[bands[c][1]].max()) if c in bands and bands[c][1] in t else 0.0)
            ax.set_ylim(0, 1.12 * top if top > 0 else 1.0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("06_tuning_loss", "06_tuning_loss.csv")
def _tuning_loss(t: pd.DataFrame) -> plt.Figure:
    """Training loss of the instruction tuning (response tokens only), per step and smoothed."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(t.step, t.loss, color="tab:blue", alpha=0.35, lw=1, label="per step")
    ax.plot(t.step, t.loss.rolling(10, min_periods=1).mean(), color="tab:blue", lw=2, label="10-step mean")
    ax.set(xlabel="optimiser step", ylabel="cross-entropy on response tokens", title="instruction tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("06_transfer", "06_transfer.csv")
def _transfer(t: pd.DataFrame) -> plt.Figure:
    """The tuned model's classifiers applied unchanged to the base model: AUROC with 95% intervals."""
    import numpy as np

    sets, note = _scored_sets(t, MIN_PER_CLASS_DRAWN)
    caption = f"not drawn (fewer than {MIN_PER_CLASS_DRAWN} per class on the base model): " + note
    if not sets:  # no set reaches the minimum (a smoke run): draw those with both classes, and say so
        sets, note = _scored_sets(t)
        caption = (f"every set has fewer than {MIN_PER_CLASS_DRAWN} examples per class: intervals span most of [0, 1]"
                   + ("; not drawn (a class is empty): " + note if note else ""))
    t = t[t["set"].isin(sets)]
    fig, ax = plt.subplots(figsize=(1.9 * max(len(sets), 1) + 2.5, 3.6))
    if note or caption.startswith("every"):
        fig.text(0.5, -0.04, caption, ha="center", fontsize=8)
    if t.empty:
        ax.text(0.5, 0.5, "no set has both classes on the base model", ha="center", va="center", transform=ax.transAxes)
        ax.set(ylabel="AUROC on the base model", ylim=(0, 1.05), title="backward transfer: tuned-model probe on base-model CETT")
        fig.tight_layout()
        return fig
    kinds = list(dict.fromkeys(t.classifier))
    w = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        d = t[t.classifier == kind].set_index("set").reindex(sets)
        x = np.arange(len(sets)) + (k - (len(kinds) - 1) / 2) * w
        err = np.vstack([d.auroc - d.auroc_lo, d.auroc_hi - d.auroc]).clip(min=0)
        ax.bar(x, d.auroc, w, yerr=err, capsize=3, label=kind,
               color="tab:red" if kind.startswith("H") else "tab:gray")
    ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
    ax.set_xticks(np.arange(len(sets)), [f"{s}\n(n = {int(min(a, b))}/class)" for s, a, b in
                                          t.drop_duplicates("set")[["set", "n faithful", "n hallucinated"]].values])
    ax.set(ylabel="AUROC on the base model", ylim=(0, 1.05), title="backward transfer: tuned-model probe on base-model CETT")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@register("06_drift", "06_drift_h.csv", "06_inertia.csv")
def _drift(h: pd.DataFrame, tests: pd.DataFrame) -> plt.Figure:
    """The Fig-4b analogue: normalised drift ranks of the H-neurons (0 = changed most, 1 = changed least);
    all neurons are uniform on [0, 1] by construction."""
    import numpy as np

    cols = [c for c in ("rank_global", "rank_layer") if c in h]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.2 * len(cols), 3.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        z = c.split("_")[1]
        row = tests[tests.zscore == z].iloc[0]
        ax.hist(h[c], bins=np.linspace(0, 1, 11), density=True, color="tab:red", alpha=0.7,
                label=f"H-neurons (n = {len(h)})")
        ax.axhline(1.0, color="tab:gray", ls="--", label="all neurons (uniform)")
        ax.axvline(row["H mean rank"], color="tab:red", lw=2, label=f"H-neurons' mean rank ({row['H mean rank']:.3f})")
        ax.axvline(0.5, color="tab:gray", lw=1, label="all neurons' mean rank (0.5)")
        ax.set(xlabel="normalised drift rank (1 = least changed)", ylabel="density", xlim=(0, 1),
               )
        two = "p (t-test, two-sided)" in row
        ax.set_title(f"z-scored {'globally' if z == 'global' else 'within each layer'}\n"
                     + (f"H − others {row['difference (H - others)']:+.3f} [{row['difference lo']:+.3f}, "
                        f"{row['difference hi']:+.3f}], two-sided\nt-test p = {row['p (t-test, two-sided)']:.3g}, "
                        f"permutation p = {row['p (permutation, two-sided)']:.3g}" if two else
                        f"did the H-neurons change less? (one-sided)\n"
                        f"t-test p = {row['p (t-test, one-sided)']:.3g}, permutation p = {row['p (permutation)']:.3g}"),
                     fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


_MONITOR_COLOURS = {"H-neurons": "tab:red", "random": "tab:gray", "residual": "tab:blue", "03 classifier": "tab:orange",
                    "log-probability": "tab:green", "answer length": "tab:brown"}


def _colour(method: str) -> str:
    if method.startswith("H-neurons · step probe"):
        return "tab:pink"
    return next((c for k, c in _MONITOR_COLOURS.items() if method.startswith(k)), "k")


@register("07_trace", "07_trace.csv")
def _trace(t: pd.DataFrame) -> plt.Figure:
    """The monitor's dashboard: one held-out hallucinated and one correct answer, token by token."""
    import textwrap

    panels = list(dict.fromkeys(t.panel))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 4.3 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        d = t[t.panel == panel]
        ax.plot(d.token, d["03 running score"], color="tab:orange", lw=1, label="notebook 03's score, running (per token)")
        ax.plot(d.token, d["prefix probe"], color="tab:red", lw=2, label="prefix probe (the monitor)")
        for s, g in d.groupby("sentence"):
            ax.hlines(g["step probe"].iloc[0], g.token.min() - 0.5, g.token.max() + 0.5, color="tab:purple", lw=3,
                      alpha=0.6, label="step probe (per sentence)" if s == 1 else None)
            ax.axvline(g.token.max() + 0.5, color="k", lw=0.5, ls=":")
            ax.text((g.token.min() + g.token.max()) / 2, 0.03, f"S{s}", ha="center", fontsize=9, fontweight="bold")
        ax.axhline(d.tau.iloc[0], color="k", lw=1, ls="--", label=f"guard threshold τ = {d.tau.iloc[0]:.3f}")
        words = " ".join(f"[S{s}] " + "".join(g.text).strip() for s, g in d.groupby("sentence"))
        ax.set(xlabel="answer tokens generated", ylabel="P(hallucinated)", ylim=(0, 1.05), xlim=(0.5, d.token.max() + 0.5))
        ax.set_title(f"held-out answer judged {panel}: {textwrap.shorten(d.question.iloc[0], 90)}", fontsize=10)
        ax.text(0, -0.2, textwrap.fill(words, 150), transform=ax.transAxes, fontsize=7, va="top")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(h_pad=5, rect=(0, 0, 1, 0.96))
    return fig


@register("07_final_auc", "07_final_auc.csv")
def _final_auc(t: pd.DataFrame) -> plt.Figure:
    """Final AUC of every monitor on held-out streams, with 95% intervals."""
    import numpy as np

    t = t.sort_values("auroc")
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(t) + 1.4))
    y = np.arange(len(t))
    err = np.vstack([t.auroc - t.auroc_lo, t.auroc_hi - t.auroc]).clip(min=0)
    ax.barh(y, t.auroc, xerr=err, capsize=3, color=[_colour(m) for m in t.method])
    ax.axvline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
    ax.set_yticks(y, t.method, fontsize=8)
    ax.set(xlabel="AUROC after the last sentence (held-out answers, 95% interval)", xlim=(0, 1),
           title=f"Final AUC: hallucinated vs correct long-form answers (n ≥ {int(t.n_per_class.min())} per class)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@register("07_early", "07_early.csv")
def _early(t: pd.DataFrame) -> plt.Figure:
    """How early the monitors know: AUROC after t generated tokens, with 95% bands."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for m, g in t.groupby("method", sort=False):
        ax.plot(g.tokens, g.auroc, marker="o", ms=3, color=_colour(m), label=m)
        ax.fill_between(g.tokens, g.auroc_lo, g.auroc_hi, color=_colour(m), alpha=0.12)
    ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
    ax.set(xscale="log", xlabel="answer tokens generated so far", ylabel="AUROC (held-out, 95% band)", ylim=(0.3, 1),
           title=f"How early does the monitor know? (n = {int(t.n.iloc[0])} held-out answers)")
    ax.set_xticks(sorted(t.tokens.unique()), [str(int(v)) for v in sorted(t.tokens.unique())])
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("07_risk_coverage", "07_risk_coverage.csv")
def _risk_coverage(t: pd.DataFrame) -> plt.Figure:
    """Abstaining guards: hallucination rate among answered questions against the share answered."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for m, g in t.groupby("method", sort=False):
        g = g.sort_values("coverage")
        ax.step(g.coverage, g.risk, where="post", color=_colour(m), ls="--" if "post hoc" in m else "-", label=m)
    base = t[t.coverage == 1].risk.iloc[0]
    ax.axhline(base, color="k", lw=0.8, ls=":", label=f"no guard ({base:.0%})")
    ax.set(xlabel="coverage (share of held-out questions answered)", ylabel="hallucinated among answered",
           xlim=(0, 1.01), ylim=(0, 1), title="Guards that abstain: risk against coverage (lower is better)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@register("07_resample", "07_resample.csv")
def _resample(t: pd.DataFrame) -> plt.Figure:
    """Resampling guards against the unguarded answers: coverage, risk among answered, accuracy."""
    import numpy as np

    cols = [("coverage", "coverage_lo", "coverage_hi", "answered"),
            ("hallucinated among answered", "risk_lo", "risk_hi", "hallucinated among answered"),
            ("accuracy", "accuracy_lo", "accuracy_hi", "accuracy over all questions")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (c, lo, hi, title) in zip(axes, cols):
        x = np.arange(len(t))
        ax.bar(x, t[c], yerr=np.vstack([t[c] - t[lo], t[hi] - t[c]]).clip(min=0), capsize=3,
               color=["tab:gray" if g == "no guard" else _colour(g) for g in t.guard])
        ax.set_xticks(x, [g.replace(" · ", "\n") for g in t.guard], fontsize=7)
        ax.set(title=title, ylim=(0, 1))
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Guards that resample a flagged sentence (n = {int(t.questions.iloc[0])} held-out questions, 95% intervals)",
                 fontsize=10)
    fig.tight_layout()
    return fig


_LOSS_COLOURS = {"untuned": "0.5", "SFT": "tab:red", "EAFT": "tab:blue"}


@register("08_conflicts", "08_conflict_tokens.csv")
def _conflicts(t: pd.DataFrame) -> plt.Figure:
    """Each tuning target token under the untuned model: probability of the target vs normalised entropy,
    coloured by the EAFT weight; the confident-conflict corner shaded (thresholds of the default profile)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    w = (t.entropy_topk / 3.0).clip(upper=1.2)
    sc = ax.scatter(t.entropy_norm, t.p_target, c=w, cmap="viridis", s=9, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="EAFT weight H₂₀ / 3.0 (α = 1)")
    ax.set_yscale("log")
    p_max, h_max = float(t.max_prob.iloc[0]), float(t.max_entropy.iloc[0])
    bottom = min(float(t.p_target.min()), p_max) * 0.5
    ax.fill_between([0, h_max], bottom, p_max, color="tab:red", alpha=0.1,
                    label=f"confident conflicts (p < {p_max:g}, H/ln 20 < {h_max:g}): "
                          f"{int(((t.p_target < p_max) & (t.entropy_norm < h_max)).sum())} tokens")
    ax.set_ylim(bottom=bottom)
    ax.set(xlabel="normalised top-20 entropy of the untuned model's prediction", xlim=(0, 1),
           ylabel="probability of the target token",
           title=f"Tuning targets as the untuned model sees them ({len(t)} tokens, {t.pair.nunique()} conversations)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@register("08_tuning", "08_tuning.csv")
def _tuning_curves(t: pd.DataFrame) -> plt.Figure:
    """Cross-entropy of each batch and the batch's mean EAFT weight, per step, for both tunings."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for loss, g in t.groupby("loss"):
        axes[0].plot(g.step, g.cross_entropy, color=_LOSS_COLOURS.get(loss, "k"), label=loss, lw=1.2)
        axes[1].plot(g.step, g.mean_weight, color=_LOSS_COLOURS.get(loss, "k"), label=loss, lw=1.2)
    axes[0].set(xlabel="step", ylabel="cross-entropy of the batch's targets", title="Training cross-entropy (both losses)")
    axes[1].set(xlabel="step", ylabel="mean token weight", title="Weight on the batch's target tokens (SFT: 1)")
    for ax in axes:
        ax.legend(fontsize=8, title="loss", title_fontsize=8)
    fig.tight_layout()
    return fig


@register("08_selection", "08_selection.csv")
def _selection(t: pd.DataFrame) -> plt.Figure:
    """Validation accuracy per step for each learning rate tried (SFT on the fitting split), with Wilson 95%
    intervals; step 0 is the untuned model (the dashed line), the ringed point the setting kept."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.8))
    lrs = sorted(t.lr.unique())
    width = 0.12 * max(1, t.step.max()) / max(1, len(lrs))
    for k, lr in enumerate(lrs):
        g = t[t.lr == lr].sort_values("step")
        x = g.step + (k - (len(lrs) - 1) / 2) * width
        err = np.vstack([g.accuracy - g.lo, g.hi - g.accuracy]).clip(min=0)
        ax.errorbar(x, 100 * g.accuracy, yerr=100 * err, fmt="o-", capsize=3, lw=1.2, label=f"lr {lr:g}")
        if "chosen" in g and g.chosen.any():
            c = g[g.chosen]
            ax.plot(x[g.chosen], 100 * c.accuracy, "o", ms=14, mfc="none", mec="k", label="kept")
    base = t[t.step == 0].accuracy
    if len(base):
        ax.axhline(100 * base.iloc[0], color="grey", ls="--", lw=1, label="untuned")
    n = int(t["validation items"].iloc[0])
    ax.set(xlabel="tuning step", ylabel=f"validation items right (%, n = {n})", ylim=(0, 100),
           title="Choosing the learning rate and the steps (validation split, never the held-out items)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("08_learning_forgetting", "08_outcomes.csv")
def _learning_forgetting(t: pd.DataFrame) -> plt.Figure:
    """Change from the untuned model on every measure, per tuning, with 95% paired intervals."""
    import numpy as np

    d = t.dropna(subset=["change"]).copy()
    ppl = d.measure.str.contains("perplexity")
    d.loc[ppl, ["change", "change lo", "change hi"]] = 100 * (d.loc[ppl, ["change", "change lo", "change hi"]] - 1)
    d.loc[~ppl, ["change", "change lo", "change hi"]] *= 100
    measures = list(dict.fromkeys(d.measure))
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(measures) + 1.5))
    for k, (loss, g) in enumerate(d.groupby("model", sort=False)):
        g = g.set_index("measure").loc[measures]
        y = np.arange(len(measures)) + (k - 0.5) * 0.3
        err = np.vstack([g.change - g["change lo"], g["change hi"] - g.change]).clip(min=0)
        ax.errorbar(g.change, y, xerr=err, fmt="o", capsize=3, color=_LOSS_COLOURS.get(loss, "k"), label=loss)
    ax.axvline(0, color="k", lw=0.8)
    labels = [m + (" (% change)" if "perplexity" in m else " (points)") for m in measures]
    n = t.groupby("measure").n.max()
    ax.set_yticks(np.arange(len(measures)), [f"{lab}\nn = {int(n[m])}" for lab, m in zip(labels, measures)], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="change from the untuned model (95% paired interval)",
           title="What each tuning learned and forgot")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@register("08_drift", "08_drift_ranks.csv")
def _drift_ranks(t: pd.DataFrame) -> plt.Figure:
    """The H-neurons' normalised drift ranks in the trained layers under each loss (0 = changed most); all
    trained neurons' ranks are uniform on [0, 1] by construction (mean 0.5)."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    if t.empty:
        ax.text(0.5, 0.5, "no H-neuron lies in the trained layers", ha="center", va="center")
        ax.set_axis_off()
        return fig
    losses = list(dict.fromkeys(t.loss))
    rng = np.random.default_rng(0)
    for k, loss in enumerate(losses):
        r = t[t.loss == loss]["rank"].to_numpy()
        ax.scatter(r, k + rng.uniform(-0.15, 0.15, len(r)), color=_LOSS_COLOURS.get(loss, "k"), s=18, alpha=0.8)
        ax.plot([r.mean()] * 2, [k - 0.3, k + 0.3], color="k", lw=2)
    ax.axvline(0.5, color="k", ls=":", lw=0.8, label="mean of all trained neurons (0.5)")
    ax.set_yticks(range(len(losses)), losses)
    ax.set(xlim=(0, 1), xlabel="normalised drift rank (0 = changed most, 1 = least); bar = H-neurons' mean",
           title=f"H-neurons in the trained layers (n = {t.groupby('loss').size().iloc[0]}) under each loss")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


@register("08_detector", "08_detector.csv")
def _detector(t: pd.DataFrame) -> plt.Figure:
    """Notebook 03's H-neuron classifier on each model's CETT (AUROC, 95% interval) and the random-neuron control."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(t) + 1.4))
    y = np.arange(len(t))
    err = np.vstack([t.auroc - t["auroc lo"], t["auroc hi"] - t.auroc]).clip(min=0)
    ax.barh(y, t.auroc, xerr=err, capsize=3, color=[_LOSS_COLOURS.get(m, "k") for m in t.model], label="H-neurons")
    ax.scatter(t["random neurons (mean AUROC)"], y, marker="|", s=300, color="k", label="random neurons (mean)")
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    ax.set_yticks(y, t.model)
    ax.set(xlim=(0, 1), xlabel="AUROC on notebook 03's test examples (95% interval)",
           title=f"Notebook 03's detector after tuning (n = {int(t['n faithful'][0])} + {int(t['n hallucinated'][0])})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


_MEASURE_TITLES = {"claims": "claims a detection", "names": "names the concept",
                   "detect_and_name": "claims and names", "coherent": "coherent"}
_CONDITION_TITLES = {"concept": "concept injected,\ndetection question", "random": "random vector (same norm),\ndetection question",
                     "neutral": "concept injected,\nneutral request"}


@register("09_injection", "09_cells.csv")
def _injection(t: pd.DataFrame) -> plt.Figure:
    """Share of trials per layer × strength, for each measure (rows) and condition (columns)."""
    import numpy as np

    conds = [c for c in _CONDITION_TITLES if c in set(t.condition)]
    fig, axes = plt.subplots(len(_MEASURE_TITLES), len(conds), figsize=(3.6 * len(conds), 2.6 * len(_MEASURE_TITLES)),
                             squeeze=False)
    n = int(t.n.max())
    for i, (m, mt) in enumerate(_MEASURE_TITLES.items()):
        for j, c in enumerate(conds):
            ax = axes[i, j]
            g = t[(t.measure == m) & (t.condition == c)].pivot_table(index="layer", columns="strength", values="rate")
            ax.imshow(g.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (r, k), v in np.ndenumerate(g.to_numpy()):
                ax.text(k, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=8, color="w" if v < 0.6 else "k")
            ax.set_xticks(range(g.shape[1]), [f"{x:g}" for x in g.columns])
            ax.set_yticks(range(g.shape[0]), [str(x) for x in g.index])
            if i == 0:
                ax.set_title(_CONDITION_TITLES[c], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{mt}\nlayer", fontsize=9)
            if i == len(_MEASURE_TITLES) - 1:
                ax.set_xlabel("strength (× residual norm)", fontsize=8)
    fig.suptitle(f"Concept injection: % of trials (n = {n} concepts per cell)", fontsize=11)
    fig.tight_layout()
    return fig


@register("09_confidence", "09_stated_points.csv", "09_confidence_alpha.csv")
def _confidence(points: pd.DataFrame, t: pd.DataFrame) -> plt.Figure:
    """Stated confidence for right and wrong answers, and its mean under each α of the H-neurons vs a random set."""
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 21)
    for w, lab, col in ((0, "answered right", "tab:green"), (1, "answered wrong", "tab:red")):
        v = points[points.wrong == w].p_yes.dropna()
        a.hist(v, bins=bins, alpha=0.6, color=col, label=f"{lab} (n = {len(v)})")
    top = points.confidence.value_counts()
    said = (f"; stated number {top.index[0]:g} in {top.iloc[0]} of {len(points)} replies" if len(top) else "")
    a.set(xlabel='P(yes) to "Is your answer correct?", unmodified model', ylabel="answers",
          title="Does the self-assessment track correctness?" + said)
    a.title.set_fontsize(9)
    a.legend(fontsize=8)
    t = t[t.measure == "p_yes"] if "measure" in t else t
    for k, (name, g) in enumerate(t.groupby("neurons", sort=False)):
        g = g.sort_values("alpha")
        b.errorbar(g.alpha + 0.04 * k, g["mean confidence"], yerr=[g["mean confidence"] - g.lo, g.hi - g["mean confidence"]],
                   marker="o", capsize=3, label=_set_label(name))
    b.set_ylim(0, 1)
    b.set(xlabel="α (scale of the neurons' activations during the confidence turn)", ylabel="mean P(yes) (axis from 0)",
          title=f"Scaling the neurons (n = {int(t.n.max())} answers; 95% intervals of each mean,\n"
                "the paired changes from α = 1 are much tighter: table 09_confidence_alpha)")
    b.title.set_fontsize(9)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def draw(name: str, tables_dir: Path, out_dir: Path) -> plt.Figure:
    """Draw figure ``name`` from its saved tables and write ``<out_dir>/<name>.png``."""
    f = REGISTRY[name]
    missing = [t for t in f.tables if not (tables_dir / t).exists()]
    if missing:
        raise FileNotFoundError(f"figure {name} needs tables {missing} in {tables_dir}: run its notebook first")
    fig = f.draw(*[pd.read_csv(tables_dir / t) for t in f.tables])
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / f"{name}.png", dpi=130, bbox_inches="tight")
    return fig


def redraw_run(run: Path) -> list[Path]:
    """Re-draw every registered figure whose tables exist in ``run/tables``; return the files written."""
    log = json.loads((run / "run_log.json").read_text()) if (run / "run_log.json").exists() else {}
    params = log.get("params", {})
    out_dir = figures_dir(params.get("run_name", run.name), params.get("figures_dir"))
    written = []
    for name, f in REGISTRY.items():
        if all((run / "tables" / t).exists() for t in f.tables):
            plt.close(draw(name, run / "tables", out_dir))
            written.append(out_dir / f"{name}.png")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.figures", description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="results/default")
    args = ap.parse_args(argv)
    run = Path(args.run) if Path(args.run).is_absolute() else project_root() / args.run
    if not (run / "tables").exists():
        print(f"error: {run}/tables not found: run the notebooks first (make reproduce)", file=sys.stderr)
        return 1
    for p in redraw_run(run):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
