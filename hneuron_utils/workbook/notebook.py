"""One notebook's run bookkeeping: its folders, the inputs it needs from earlier notebooks, saving a
table (and its figure), and timing its stages. Every numbered notebook opens with
``nb = Notebook("03", cfg, needs=[...])`` and closes with ``nb.finish()``.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from hneuron_utils import paths
from hneuron_utils.progress import batch_run


class Notebook:
    """Folders and records of notebook ``number`` in run ``cfg.run_name``.

    ``needs`` lists files of ``results/<run>/data/`` that earlier notebooks write (their names start
    with the writing notebook's number); a missing one stops the notebook with a message that names the
    notebook to run first. Every input read through the notebook (its ``needs``, :meth:`need`,
    :meth:`read_table`) is recorded with a digest of its bytes; :meth:`finish` writes them to
    ``tables/<NN>_inputs.csv``, so a later report can tell whether an input changed after the notebook ran.
    """

    @property
    def progress(self) -> bool:
        """Whether long loops show progress bars: yes in an interactive session, no when the runner executes
        the notebook through papermill (it sets ``HNEURON_BATCH``), so executed notebooks stay readable."""
        return not batch_run()

    def __init__(self, number: str, cfg: Any, needs: Sequence[str] = ()):
        if not (len(number) == 2 and number.isdigit()):
            raise ValueError(f"notebook number must be two digits, got {number!r}")
        self.number, self.cfg = number, cfg
        self.run = paths.run_dir(cfg.run_name)
        self.tables, self.data = self.run / "tables", self.run / "data"
        self.figures = paths.figures_dir(cfg.run_name, getattr(cfg, "figures_dir", None))
        self.timings: dict[str, float] = {}
        self.inputs: dict[str, str] = {}
        missing = [f for f in needs if not (self.data / f).exists()]
        if missing:
            first = sorted({f[:2] for f in missing})
            raise FileNotFoundError(
                f"{', '.join(str(self.data / f) for f in missing)} not found: run notebook(s) {', '.join(first)} "
                f"with run_name={cfg.run_name!r} first")
        self.tables.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        for f in needs:
            self._record(self.data / f)

    # ------------------------------------------------------------------ inputs
    def path(self, name: str) -> Path:
        """A data file of this run (``results/<run>/data/<name>``)."""
        return self.data / name

    def read_jsonl(self, name: str) -> pd.DataFrame:
        """A JSONL data file of this run as a table."""
        return pd.read_json(self.need(name), lines=True)

    def read_json(self, name: str) -> Any:
        return json.loads(self.need(name).read_text())

    def read_table(self, name: str, **kw: Any) -> pd.DataFrame:
        """A saved table (``tables/<name>.csv``) of this or an earlier notebook."""
        p = self.tables / f"{name}.csv"
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: run notebook {name[:2]} with run_name={self.cfg.run_name!r} first")
        self._record(p)
        return pd.read_csv(p, **kw)

    def need(self, name: str) -> Path:
        p = self.data / name
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: run notebook {name[:2]} with run_name={self.cfg.run_name!r} first")
        self._record(p)
        return p

    def _record(self, p: Path) -> None:
        """Remember the digest of an input of an earlier notebook (this notebook's own files are outputs)."""
        from hneuron_utils.cache import file_digest

        if not p.name.startswith(self.number):
            self.inputs[str(p.relative_to(self.run))] = file_digest(p)

    # ------------------------------------------------------------------ outputs
    def save(self, table: pd.DataFrame | pd.Series, name: str, figure: bool | str = False, index: bool | None = None
             ) -> pd.DataFrame | pd.Series:
        """Write ``tables/<name>.csv`` (a Series as one ``value`` column), draw a figure from the saved
        tables if asked (``True``: the figure called ``name``; a string: that figure), and return the table
        for display."""
        if isinstance(table, pd.Series):
            table.to_frame(table.name or "value").to_csv(self.tables / f"{name}.csv")
        else:
            table.to_csv(self.tables / f"{name}.csv", index=bool(index))
        if figure:
            from hneuron_utils.workbook import figures

            figures.draw(name if figure is True else figure, self.tables, self.figures)
        return table

    def write_jsonl(self, name: str, rows: pd.DataFrame | Sequence[dict]) -> Path:
        """Write rows (a table or dicts) to ``data/<name>`` as JSON lines."""
        if isinstance(rows, pd.DataFrame):  # NaN → null (json.dumps would write NaN, which is not JSON)
            recs = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
        else:
            recs = list(rows)
        p = self.data / name
        with open(p, "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.data / name
        p.write_text(json.dumps(obj, indent=1, default=str))
        return p

    # ------------------------------------------------------------------ time
    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to stage ``stage``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0

    def finish(self) -> pd.DataFrame:
        """Save the stage timings as ``tables/<NN>_timings.csv`` and the inputs read (file, digest) as
        ``tables/<NN>_inputs.csv``; return the timings."""
        t = pd.Series(self.timings, name="seconds", dtype=float).round(1).to_frame()
        t.to_csv(self.tables / f"{self.number}_timings.csv")
        pd.DataFrame(sorted(self.inputs.items()), columns=["file", "digest"]).to_csv(
            self.tables / f"{self.number}_inputs.csv", index=False)
        return t
