"Shared pytest fixtures: the shared data folder (skip cleanly when absent) and a tiny model."
import pytest
from sherlock_instruct.load import find_data_dir


@pytest.fixture(scope="session")
def data_dir():
    d = find_data_dir()
    if d is None:
        pytest.skip("shared data folder not found: set SHERLOCK_DATA or put the data at ../shared/data beside the checkout")
    return d


@pytest.fixture(scope="session")
def tiny():
    from sherlock_instruct.load import tiny_model
    return tiny_model()
