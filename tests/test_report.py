import pytest

from hneuron_utils import report
from hneuron_utils.paths import project_root

RUN = project_root() / "results" / "default"


@pytest.mark.skipif(not (RUN / "run_log.json").exists(), reason="no committed default run yet")
def test_readme_results_block_matches_committed_default_run():
    assert report.readme_block() == report.results_block(RUN), \
        "README results are stale: run `python -m hneuron_utils.report --update-readme`"
