"""Progress bars: shown interactively, never in a batch run."""


def test_progress_bars_are_silent_in_a_batch_run(monkeypatch, capsys):
    """The runner sets HNEURON_BATCH=1: no function's own progress=True may draw a bar into an executed notebook."""
    from hneuron_utils import progress

    monkeypatch.setenv(progress.BATCH_ENV, "1")
    for _ in progress.bar(range(3), show=True, desc="loop"):
        pass
    assert "loop" not in capsys.readouterr().err
    monkeypatch.delenv(progress.BATCH_ENV)
    for _ in progress.bar(range(3), show=True, desc="loop", mininterval=0):
        pass
    assert "loop" in capsys.readouterr().err
    for _ in progress.bar(range(3), show=False, desc="quiet"):
        pass
    assert "quiet" not in capsys.readouterr().err
