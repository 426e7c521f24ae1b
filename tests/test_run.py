import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from hneuron_utils import config, run


def test_only_selects_and_rejects_unknown_numbers():
    assert [p.name[:2] for p in run.notebooks(["00"])] == ["00"]
    with pytest.raises(config.ConfigError, match="unknown notebook numbers"):
        run.notebooks(["99"])


@pytest.mark.notebooks
def test_failing_notebook_is_named_with_its_cell(tmp_path):
    nb = new_notebook(metadata={"kernelspec": {"name": run.KERNEL_NAME, "display_name": "x", "language": "python"}})
    p = new_code_cell("seed = 0")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, new_code_cell("x = 1"), new_code_cell("raise ValueError('boom')")]
    src = tmp_path / "07_fail.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(run.NotebookFailed) as e:
        run.run_notebook(src, tmp_path / "out.ipynb", {"seed": 1}, run.ensure_kernel(), log_output=False)
    msg = str(e.value)
    assert "07_fail.ipynb failed in cell" in msg and "ValueError: boom" in msg
