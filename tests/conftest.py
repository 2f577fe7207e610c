import os

import pytest

# Tests never reach the network: an uncached `imagenet` weights request fails fast instead.
os.environ.setdefault("EDGECNN_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_trust_left():
    """A command's --trust-code holds for that command; in one test process it must not outlive a test."""
    yield
    from edgecnn.zoo.external import reset_trust

    reset_trust()


@pytest.fixture(scope="session")
def lenet_weights(tmp_path_factory):
    """LeNet-5 trained for three epochs on the bundled digits (~92% test top-1): int8 agreement on a
    trained model means something, unlike on random weights whose outputs nearly tie."""
    import numpy as np
    import torch

    from edgecnn.data import Preprocess, open_dataset
    from edgecnn.zoo import load_model

    torch.manual_seed(0)
    model = load_model("lenet5").module.train()
    train = open_dataset(
        "digits", Preprocess.for_model(load_model("lenet5", device="meta").card), split="train"
    )
    x = torch.from_numpy(np.stack([train[i][0] for i in range(len(train))]))
    y = torch.from_numpy(train.labels)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(3):
        for i in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    path = tmp_path_factory.mktemp("w") / "lenet5_digits.pth"
    torch.save(model.state_dict(), path)
    return path
