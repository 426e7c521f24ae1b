"""Rebuilding the packaged data files from their pinned upstream sources, or checking them byte for byte.

One module per family of files, one command for all of them (``__main__.py``):

    python -m hneuron_utils.data.build triviaqa [--check]                       # TriviaQA and NQ-Open files
    python -m hneuron_utils.data.build biomed [--check] [--shared DIR]          # data/biomed_*.jsonl
    python -m hneuron_utils.data.build medmc [--check] [--shared DIR]           # data/medical_mc.jsonl
    python -m hneuron_utils.data.build overcompliance [--check] [--shared DIR]  # data/overcompliance/*.jsonl

Sources, versions, licences and counts are in ``data/README.md``; this file holds no logic.
"""
