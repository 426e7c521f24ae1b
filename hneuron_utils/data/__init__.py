"""Question-answer records: the dataset files, reading, writing and sampling them.

The logic lives in :mod:`hneuron_utils.data.records`; this file only re-exports it."""

from hneuron_utils.data.records import (  # noqa: F401
    DataError,
    QARecord,
    DATASETS,
    data_dir,
    read_jsonl,
    json_objects,
    records_from_lines,
    write_jsonl,
    load_dataset,
    sample,
)
