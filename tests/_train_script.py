"""Helper script for the fault tests: train a small DIGLM with per-epoch checkpoints (run in a subprocess)."""

import signal
import sys

import torch

from bayes_diglm.flows import realnvp
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import train_module


def main(checkpoint: str, final: str, epochs: int, resume: bool) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(123)
    X = torch.randn(2000, 4, generator=g)
    y = (X[:, 0] * X[:, 1] > 0).long()
    torch.manual_seed(0)
    model = DIGLM(realnvp(4, num_layers=3, hidden_dims=(32, 32)), make_head("bernoulli", 4), px_weight=0.1)
    history = train_module(model, X, y, epochs=epochs, batch_size=50, seed=7, quiet=True,
                          checkpoint_path=checkpoint, resume=resume)
    torch.save({"model": model.state_dict(), "stopped": history.stopped,
                "epochs": [r["epoch"] for r in history.epochs]}, final)
    print("finished", history.stopped, flush=True)


if __name__ == "__main__":
    # A process started from a non-interactive shell's background job inherits SIGINT as ignored, and Python
    # then installs no KeyboardInterrupt handler: restore it, since the tests interrupt this script on purpose.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume")
