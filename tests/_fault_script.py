"""Helper for the fault-point tests: train a small DIGLM, then fit the exact Bayesian head on its features.

``python _fault_script.py WORKDIR FAULT`` where FAULT is ``none``, ``step:K`` (SIGKILL just before the K-th
optimiser step), ``write:K`` (SIGKILL halfway through writing the K-th checkpoint), ``head:enter`` (SIGKILL as
the Bayesian head's fit starts) or ``head:exit`` (SIGKILL when it has fit but before the result is saved).
The process always resumes from ``WORKDIR/ckpt.pt`` when it exists, so running it again after a kill is the
resume. It writes ``WORKDIR/final.pt`` (flow parameters and the posterior) and, with ``record``, a copy of
every checkpoint it writes (``WORKDIR/epoch<K>.pt``), so the test can tell whether a file left on disk after
a kill is one that an uninterrupted run also wrote.
"""

import os
import signal
import sys
from pathlib import Path

import torch

import bayes_diglm.training.checkpoint as checkpoint_module
from bayes_diglm.flows import realnvp
from bayes_diglm.inference import ConjugateLinearRegression
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import train_module

EPOCHS, N, BATCH = 4, 600, 50  # 12 optimiser steps an epoch, 48 in all


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_fault(fault: str) -> None:
    kind, _, where = fault.partition(":")
    if kind == "step":
        original, count = torch.optim.Adam.step, [0]

        def step(self, *args, **kwargs):
            count[0] += 1
            if count[0] == int(where):
                _die()
            return original(self, *args, **kwargs)

        torch.optim.Adam.step = step
    elif kind == "write":
        original_fdopen, count = os.fdopen, [0]

        class HalfWriter:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.handle.__exit__(*exc)

            def write(self, data):
                data = memoryview(data)
                self.handle.write(data[: len(data) // 2])
                self.handle.flush()
                _die()

            def __getattr__(self, name):
                return getattr(self.handle, name)

        def fdopen(fd, *args, **kwargs):
            count[0] += 1
            handle = original_fdopen(fd, *args, **kwargs)
            return HalfWriter(handle) if count[0] == int(where) else handle

        checkpoint_module.os.fdopen = fdopen
    elif kind == "head":
        original_fit = ConjugateLinearRegression.fit

        def fit(self, *args, **kwargs):
            if where == "enter":
                _die()
            result = original_fit(self, *args, **kwargs)
            _die()
            return result

        ConjugateLinearRegression.fit = fit
    elif kind != "none":
        raise SystemExit(f"unknown fault {fault!r}")


def main(workdir: str, fault: str, record: bool) -> None:
    torch.set_num_threads(1)
    work = Path(workdir)
    ckpt = work / "ckpt.pt"
    if record:
        original_save = checkpoint_module.save_checkpoint

        def save(obj, path):
            out = original_save(obj, path)
            original_save(obj, work / f"epoch{obj['epoch']}.pt")
            return out

        import bayes_diglm.training.loop as loop_module

        loop_module.save_checkpoint = save
    _install_fault(fault)
    g = torch.Generator().manual_seed(11)
    X = torch.randn(N, 3, generator=g)
    y = X[:, 0] - torch.sin(2 * X[:, 1]) + 0.3 * torch.randn(N, generator=g)
    torch.manual_seed(0)
    model = DIGLM(realnvp(3, num_layers=2, hidden_dims=(16, 16)), make_head("gaussian", 3), px_weight=0.1)
    train_module(model, X, y, epochs=EPOCHS, batch_size=BATCH, seed=5, quiet=True, checkpoint_path=ckpt,
                 resume=ckpt.exists())
    with torch.no_grad():
        Z = model.features(X)
    head = ConjugateLinearRegression().fit(Z.numpy(), y.numpy())
    torch.save({"model": model.state_dict(), "coef": torch.as_tensor(head.coef_),
                "intercept": torch.as_tensor(head.intercept_), "log_evidence": head.log_evidence(),
                "predict": torch.as_tensor(head.predict(Z.numpy()[:50]))}, work / "final.pt")
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "record")
