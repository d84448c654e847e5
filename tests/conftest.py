import os

import matplotlib.image
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def figure_stats():
    """A PNG's width, height, share of inked (non-white) pixels and number of distinct colours."""
    def stats(path):
        pixels = matplotlib.image.imread(path)[..., :3]
        colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        return pixels.shape[1], pixels.shape[0], float((pixels < 0.9).any(axis=-1).mean()), colours
    return stats


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory):
    """One embedded-model cache for every micro-world test, so the micro models are trained once a session."""
    return tmp_path_factory.mktemp("micro-cache")
