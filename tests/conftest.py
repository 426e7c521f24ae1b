import pytest


@pytest.fixture(scope="session")
def tiny():
    """The in-code tiny-random model (float32 so numerical comparisons are tight)."""
    from hneuron_utils import models

    return models.load_model("tiny-random", dtype="float32")
