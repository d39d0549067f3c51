"""Lesson 4: the ladder's gradients agree in float64 and every rung learns."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foundations import two_layer_net as tln

CFG = tln.LadderConfig()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def problem() -> tln.Problem:
    return tln.make_problem(CFG)


def _rel(a: np.ndarray, b) -> float:
    b = b.detach().numpy() if torch.is_tensor(b) else b
    return float(np.abs(a - b).max() / np.abs(a).max())


def test_problem_is_float64_with_the_notes_sizes(problem):
    assert problem.x.shape == (64, 1000) and problem.y.shape == (64, 10)
    assert problem.w1.shape == (1000, 100) and problem.w2.shape == (100, 10)
    assert problem.x.dtype == np.float64


def test_numpy_gradients_equal_every_torch_rung(problem):
    p = problem
    loss_np, g1_np, g2_np = tln.numpy_gradients(p.x, p.y, p.w1, p.w2)
    x, y, w1, w2 = (torch.from_numpy(a) for a in (p.x, p.y, p.w1, p.w2))
    rungs = {
        "tensors": tln.tensor_gradients(x, y, w1.clone(), w2.clone()),
        "autograd": tln.autograd_gradients(x, y, w1, w2),
        "autograd.Function": tln.autograd_gradients(x, y, w1, w2, relu=tln.MyReLU.apply),
    }
    for name, (loss, g1, g2) in rungs.items():
        assert loss == pytest.approx(loss_np, rel=1e-12), name
        assert _rel(g1_np, g1) < 1e-10, name
        assert _rel(g2_np, g2) < 1e-10, name


@pytest.mark.parametrize("make", [lambda: tln.sequential_model(CFG), lambda: tln.TwoLayerNet(1000, 100, 10).double()])
def test_nn_layers_from_the_shared_init_give_the_numpy_gradients(problem, make):
    model = make()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    tln.load_shared_init(tuple(linears), problem)
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    torch.nn.MSELoss(reduction="sum")(model(x), y).backward()
    _, g1_np, g2_np = tln.numpy_gradients(problem.x, problem.y, problem.w1, problem.w2)
    assert _rel(g1_np, linears[0].weight.grad.T) < 1e-10
    assert _rel(g2_np, linears[1].weight.grad.T) < 1e-10


def test_my_relu_gradient_passes_gradcheck():
    x = torch.randn(5, 3, dtype=torch.float64)
    x = x + 0.1 * torch.sign(x)  # keep away from the kink at 0, where ReLU has no derivative
    assert torch.autograd.gradcheck(tln.MyReLU.apply, (x.requires_grad_(),))


def test_dynamic_net_changes_depth_between_forwards_and_shares_weights():
    net = tln.DynamicNet(4, 3, 2, rng=random.Random(0)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    outputs = {tuple(net(x).flatten().tolist()) for _ in range(20)}
    assert len(outputs) > 1  # 0..3 middle layers: different graphs for the same input
    assert sum(p.numel() for p in net.parameters()) == 4 * 3 + 3 + 3 * 3 + 3 + 3 * 2 + 2


LADDER_SCRIPT = """
import json, torch
from foundations.two_layer_net import LadderConfig, run_ladder
torch.set_num_threads(1)
print(json.dumps(run_ladder(LadderConfig())))
"""


def test_every_rung_lowers_the_loss_tenfold_in_500_steps():
    # A fresh process with one BLAS/OpenMP thread: on a loaded shared machine, multi-threaded BLAS on
    # these small matrices slows down 20-30x, and thread counts cannot be changed once numpy is loaded.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", LADDER_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 8
    for name, losses in results.items():
        assert len(losses) == 500, name
        assert losses[-1] * 10 <= losses[0], f"{name}: {losses[0]:.3g} -> {losses[-1]:.3g}"
    # rungs 1-4 share the initialisation and the update rule, so their curves coincide
    for name in ("tensors", "autograd", "autograd.Function"):
        assert np.allclose(results[name], results["numpy"], rtol=1e-8), name
