"""torch.distributed on 2 local processes (gloo): all-reduced posterior and DDP training vs one process."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bayes_diglm.flows import realnvp
from bayes_diglm.inference.conjugate import ConjugateLinearRegression
from bayes_diglm.models import DIGLM, make_head
from bayes_diglm.training import distributed as dt
from bayes_diglm.training import loop as training

WORLD = 2
N_POST, N_TRAIN, BATCH, EPOCHS = 2001, 256, 64, 2


def _regression(n, seed=0, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + X @ np.linspace(1.0, -1.0, d) + 0.3 * rng.normal(size=n)
    return X, y


def _feature_flow():
    torch.manual_seed(1)
    flow = realnvp(4, num_layers=2, hidden_dims=(16,))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow.eval()


def _model():
    torch.manual_seed(0)
    return DIGLM(realnvp(4, num_layers=2, hidden_dims=(16,)), make_head("gaussian", 4), px_weight=0.25)


def _train(model, X, y, **kwargs):
    return training.train_module(model, torch.from_numpy(X), torch.from_numpy(y), epochs=EPOCHS, batch_size=BATCH,
                                lr=3e-3, seed=0, quiet=True, **kwargs)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    ctx = dt.init_distributed("gloo")
    try:
        out = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend}
        # 1. the exact posterior from all-reduced statistics of each rank's (uneven) shard
        X, y = _regression(N_POST)
        lo, hi = dt.shard_range(N_POST, ctx.rank, ctx.world_size)
        chunks = [(X[i:min(i + 300, hi)], y[i:min(i + 300, hi)]) for i in range(lo, hi, 300)]
        head = dt.fit_conjugate_distributed(ConjugateLinearRegression(prior_precision=0.5), _feature_flow().features,
                                            chunks, dtype=torch.float64)
        post = head.posterior_
        out["posterior"] = (post.mean, post.precision_cholesky, post.a, post.b)
        # 2. DDP training; 3. one epoch, checkpoint by rank 0, then every rank resumes for the second
        saves = []
        real_save = training.save_checkpoint
        training.save_checkpoint = lambda obj, path: (saves.append(ctx.rank), real_save(obj, path))[1]
        Xt, yt = _regression(N_TRAIN, seed=1)
        model = _model()
        history = _train(model, Xt, yt, distributed=True)
        out["ddp_state"] = {k: v.clone() for k, v in model.state_dict().items()}
        out["ddp_loss"] = [e["loss"] for e in history.epochs]
        ckpt = os.path.join(out_dir, "ckpt.pt")
        training.train_module(_model(), torch.from_numpy(Xt), torch.from_numpy(yt), epochs=1, batch_size=BATCH,
                             lr=3e-3, seed=0, quiet=True, distributed=True, checkpoint_path=ckpt)
        resumed = _model()
        _train(resumed, Xt, yt, distributed=True, checkpoint_path=ckpt, resume=True)
        out["resumed_state"] = resumed.state_dict()
        out["saves"] = saves
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dt.shutdown_distributed()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    # fork, as DataLoader workers do (each sets one thread first): a spawned child re-imports torch and pyro,
    # which costs 5x the whole test on a loaded 2-core machine.
    mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True, start_method="fork")
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_ranks_joined_one_gloo_group(ranks):
    assert [r["rank"] for r in ranks] == [0, 1]
    assert {r["world"] for r in ranks} == {2} and {r["backend"] for r in ranks} == {"gloo"}


def test_all_reduced_posterior_equals_single_process(ranks, float64):
    X, y = _regression(N_POST)
    flow = _feature_flow()
    single = ConjugateLinearRegression(prior_precision=0.5).fit(flow.features(torch.from_numpy(X)).detach(), y)
    for r in ranks:
        mean, chol, a_n, b_n = r["posterior"]
        np.testing.assert_allclose(mean, single.posterior_.mean, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(chol, single.posterior_.precision_cholesky, rtol=1e-10, atol=1e-10)
        assert a_n == pytest.approx(single.posterior_.a, rel=1e-12)
        assert b_n == pytest.approx(single.posterior_.b, rel=1e-10)


def test_ddp_training_matches_single_process(ranks, float64):
    X, y = _regression(N_TRAIN, seed=1)
    model = _model()
    history = _train(model, X, y)
    reference = model.state_dict()
    for r in ranks:
        assert r["ddp_state"].keys() == reference.keys()
        for name, value in reference.items():
            # 16 Adam steps in float64; the only differences are the order of gradient sums across ranks
            torch.testing.assert_close(r["ddp_state"][name], value, rtol=1e-9, atol=1e-9, msg=name)
        np.testing.assert_allclose(r["ddp_loss"], [e["loss"] for e in history.epochs], rtol=1e-10)
    # and training really moved the parameters (the comparison is not between two initial states)
    assert not torch.allclose(reference["head.linear.weight"], _model().state_dict()["head.linear.weight"])


def test_checkpoints_by_rank_zero_and_every_rank_resumes(ranks):
    assert ranks[0]["saves"] == [0, 0] and ranks[1]["saves"] == []
    for r in ranks:
        for name, value in r["ddp_state"].items():
            torch.testing.assert_close(r["resumed_state"][name], value, rtol=1e-12, atol=1e-12, msg=name)


def test_distributed_batches_tile_the_single_process_batches():
    n, batch, world = 103, 12, 3
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(7 + 2))
    per_rank = [dt.distributed_batches(n, batch, epoch=2, seed=7, rank=r, world_size=world) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1  # every rank takes the same number of steps
    padded = torch.cat([perm, perm[: 105 - n]])  # DistributedSampler pads to a multiple of the world size
    for k in range(len(per_rank[0])):
        union = torch.cat([b[k] for b in per_rank]).sort().values
        torch.testing.assert_close(union, padded[k * batch:(k + 1) * batch].sort().values)


def test_errors_without_a_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        training.train_module(_model(), torch.randn(8, 4), torch.randn(8), epochs=1, distributed=True)
    saved = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(RuntimeError, match="torchrun"):
            dt.init_distributed()
    finally:
        os.environ.update(saved)
    with pytest.raises(ValueError, match="multiple"):
        dt.distributed_batches(10, 5, epoch=0, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        dt.shard_range(10, 2, 2)
    with pytest.raises(TypeError, match="SufficientStats"):
        dt.all_reduce_stats(np.zeros(3))
    assert dt.is_main_process() and dt.current_context() is None
