import subprocess
import sys

import pytest

from hneuron_utils import data
from hneuron_utils.paths import project_root


@pytest.mark.parametrize("name,n", [("triviaqa", 8837), ("nq_open", 3610)])
def test_packaged_datasets(name, n):
    recs = data.load_dataset(name)
    assert len(recs) == n
    assert len({r.id for r in recs}) == n
    assert all(r.question and r.answers and all(a for a in r.answers) for r in recs)
    assert all(r.source == name for r in recs)


def test_no_leftover_csv_quoting():
    recs = data.load_dataset("triviaqa")
    assert not [r.question for r in recs if r.question.startswith('"') and r.question.endswith('"')
                and '""' in r.question]


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(data.DataError, match="Known"):
        data.load_dataset("popqa")
    with pytest.raises(data.DataError, match="not found"):
        data.read_jsonl(tmp_path / "nope.jsonl")


def test_roundtrip_and_sample(tmp_path):
    recs = [data.QARecord(id=f"q{i}", question=f"Q{i}?", answers=(f"a{i}",), source="t") for i in range(10)]
    data.write_jsonl(recs, tmp_path / "x.jsonl")
    back = data.read_jsonl(tmp_path / "x.jsonl")
    assert back == recs
    assert data.sample(back, 4, seed=1) == data.sample(back, 4, seed=1) != data.sample(back, 4, seed=2)
    with pytest.raises(data.DataError):
        data.sample(back, 11, seed=0)


@pytest.mark.network
def test_data_rebuilds_identically_from_upstream():
    r = subprocess.run([sys.executable, "-m", "hneuron_utils.data.build", "triviaqa", "--check"],
                       capture_output=True, text=True, cwd=project_root())
    assert r.returncode == 0, r.stdout + r.stderr
