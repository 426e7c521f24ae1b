import json

import pandas as pd

from hneuron_utils.workbook import figures


def test_tour_figure_draws_from_table_and_redraws(tmp_path):
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    pd.DataFrame({"model": "m", "layer": 3, "neuron": range(50), "cett": [1 / (i + 1) for i in range(50)]}).to_csv(
        run / "tables" / "00_tour_cett.csv", index=False)
    (run / "run_log.json").write_text(json.dumps({"params": {"run_name": "x", "figures_dir": str(tmp_path / "f")}}))
    written = figures.redraw_run(run)
    assert [p.name for p in written] == ["00_tour_cett.png"]
    assert written[0].stat().st_size > 5_000


def test_missing_table_is_reported(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="run its notebook first"):
        figures.draw("00_tour_cett", tmp_path, tmp_path)


def test_transfer_figure_draws_small_sets_only_when_no_set_reaches_the_minimum(tmp_path):
    import pandas as pd

    from hneuron_utils.workbook import figures

    rows = []
    for s, n in (("A", 3), ("B", 2), ("C", 0)):
        for kind in ("random neurons (20 draws)", "H-neurons"):
            rows.append({"set": s, "classifier": kind, "n faithful": n, "n hallucinated": n,
                         "auroc": 0.5 if n else None, "auroc_lo": 0.1 if n else None, "auroc_hi": 0.9 if n else None})
    t = pd.DataFrame(rows)
    fig = figures.REGISTRY["06_transfer"].draw(t)            # a smoke run: every set is small
    assert "fewer than 10 examples per class" in " ".join(x.get_text() for x in fig.texts)
    assert len(fig.axes[0].get_xticklabels()) == 2           # A and B drawn, C (empty) named
    big = t.assign(**{"n faithful": t["n faithful"].replace(3, 40), "n hallucinated": t["n hallucinated"].replace(3, 40)})
    fig = figures.REGISTRY["06_transfer"].draw(big)
    assert len(fig.axes[0].get_xticklabels()) == 1 and "not drawn" in fig.texts[0].get_text()
    fig = figures.REGISTRY["06_transfer"].draw(t.assign(**{"n faithful": 0}))   # nothing has both classes
    assert fig.axes[0].texts[0].get_text() == "no set has both classes on the base model"
