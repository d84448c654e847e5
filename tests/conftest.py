import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory):
    """One embedded-model cache for every micro-world test, so the micro models are trained once a session."""
    return tmp_path_factory.mktemp("micro-cache")
