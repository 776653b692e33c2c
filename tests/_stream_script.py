"""Helper for the streaming fault test: sum conjugate statistics over a stream, optionally SIGKILL part-way.

``python _stream_script.py SOURCE WORKDIR KILL_AT`` with SOURCE ``synthetic`` (a seeded stream of 40 chunks)
or ``us2001`` (the 2,900,000 training flights of the paper's protocol, standardised attributes, 50,000-row
chunks), and KILL_AT the number of chunks after which the process kills itself (0: never). Resumes from
``WORKDIR/stream.pt`` when it exists; writes the posterior's mean and covariance factor to
``WORKDIR/posterior.pt``.
"""

import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

from bayes_diglm.inference import ConjugateLinearRegression, SufficientStats
from bayes_diglm.training.stream import accumulate_stats


def synthetic_chunks():
    rng = np.random.default_rng(7)
    for _ in range(40):
        X = rng.normal(size=(997, 5))
        yield X, X @ np.arange(1.0, 6.0) + rng.normal(size=997)


def us2001_chunks():
    from bayes_diglm.data.flights_us import split_flights_us

    return split_flights_us().chunks("train", chunk_rows=50_000)


def main(source: str, workdir: str, kill_at: int) -> None:
    torch.set_num_threads(1)
    count = [0]

    def stats(chunk):
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        X, y = (np.asarray(c, dtype=np.float64) for c in chunk[:2])
        return SufficientStats.from_data(X, y, fit_intercept=True)

    chunks = synthetic_chunks() if source == "synthetic" else us2001_chunks()
    total = accumulate_stats(stats, chunks, checkpoint_path=Path(workdir) / "stream.pt", checkpoint_every=3,
                             resume=True)
    head = ConjugateLinearRegression().fit_stats(total)
    torch.save({"mean": torch.as_tensor(head.posterior_.mean), "n": total.n,
                "stats": total.as_tensor()}, Path(workdir) / "posterior.pt")
    print("finished", total.n, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
