"""Run by test_train.py under torchrun: a few DDP steps of LeNet-5 on the digits, then each rank
writes its parameters so the test can check they stayed in sync."""

import os
import sys

import torch

from edgecnn.data import Preprocess, open_dataset
from edgecnn.train import TrainOptions, fit
from edgecnn.zoo import card_for, load_model

out = sys.argv[1]
torch.manual_seed(0)
model = load_model("lenet5").module
data = open_dataset("digits", Preprocess.for_model(card_for("lenet5")), split="train")
result = fit(model, data, None, TrainOptions(epochs=1, max_steps=8, batch_size=32, lr=0.01))
rank = int(os.environ["RANK"])
torch.save({"state": model.state_dict(), "world": int(os.environ["WORLD_SIZE"])}, f"{out}/rank{rank}.pt")
torch.distributed.destroy_process_group()
