"""Lesson 7: 2-process DDP with gloo on the CPU matches one process on the combined batch."""

import torch

from foundations import data_parallel as dp


def test_two_process_ddp_equals_one_process_on_the_combined_batch():
    cfg = dp.DDPConfig(world_size=2, steps=10)
    states = dp.run_ddp(cfg)
    single = dp.train_single(cfg)
    _, _, start = dp.make_data(cfg)
    assert len(states) == 2
    for state in states:
        assert dp.max_difference(state, single) <= 1e-6
    assert dp.max_difference(single, start) > 1e-3  # training really moved the parameters
    # a run on other data (a half-size batch) ends elsewhere, so the 1e-6 agreement above is not vacuous
    half = dp.DDPConfig(batch_size=cfg.batch_size // 2, steps=cfg.steps)
    assert dp.max_difference(dp.train_single(half), single) > 1e-4


def test_wrap_data_parallel_leaves_a_single_device_model_alone():
    model = dp.ToyModel()
    wrapped = dp.wrap_data_parallel(model)
    assert wrapped is model or isinstance(wrapped, torch.nn.DataParallel)
    assert wrapped(torch.randn(3, 10)).shape == (3, 5)


def test_data_parallel_demo_feeds_every_row_through_the_model(capsys):
    dp.demo_data_parallel(batch_size=30, data_size=100)
    outside = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Outside")]
    # 100 rows in batches of 30: three full batches and a last one of 10, each answered row for row
    assert outside == [f"Outside: input size ({n}, 5) output_size ({n}, 2)" for n in (30, 30, 30, 10)]
