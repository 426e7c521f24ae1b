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
