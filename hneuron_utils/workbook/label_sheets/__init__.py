"""Reference-label sheets: seeded draws of real responses for an LLM labeller, one sheet per judged concept.

Each sheet is a JSONL file of real responses with the label field empty and the judge's verdict left out, so
the labeller is not primed by it; the labelled lines go to ``data/labels/`` (``data/labels/README.md`` gives
each file's label meanings and the command that drew it). One command, a subcommand per sheet
(``__main__.py``):

    python -m hneuron_utils.workbook.label_sheets nonexist ...        # abstention on NonExist questions
    python -m hneuron_utils.workbook.label_sheets overcompliance ...  # FalseQA, jailbreak, sycophancy, counterfactual
    python -m hneuron_utils.workbook.label_sheets monitor ...         # long-form answers, guarded or not
    python -m hneuron_utils.workbook.label_sheets finetune ...        # TriviaQA answers of the fine-tuned models
    python -m hneuron_utils.workbook.label_sheets introspection ...   # concept-injection trial responses

This file holds no logic.
"""
