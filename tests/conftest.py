import os

import pytest

# Tests never reach the network: an uncached `imagenet` weights request fails fast instead.
os.environ.setdefault("EDGECNN_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
