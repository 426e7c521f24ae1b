"""Progress bars for long loops: shown in an interactive session, never in a batch run.

The workbook's runner sets ``HNEURON_BATCH=1`` while papermill executes a notebook (the kernel inherits it), so
executed notebooks carry no progress bars, whatever a function's own ``progress`` argument says.
"""

from __future__ import annotations

import os
from typing import Any

BATCH_ENV = "HNEURON_BATCH"  # set to "1" by the runner while papermill executes a notebook


def batch_run() -> bool:
    """Whether this process runs under the workbook's runner (no progress bars, quiet loops)."""
    return os.environ.get(BATCH_ENV) == "1"


def bar(iterable: Any = None, *, show: bool = True, **kwargs: Any) -> Any:
    """A tqdm progress bar, shown when ``show`` and this is not a batch run (:func:`batch_run`)."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not show or batch_run(), **kwargs)
