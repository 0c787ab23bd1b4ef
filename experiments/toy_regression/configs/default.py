"""The settings every variant starts from: the CPU study of the results page (the ``full`` preset).

Nine arms on the same trunk, data streams, optimiser and schedule (6000 steps of 256); 5 seeds
trained together; per arm, the learning rate of {1e-3, 3e-3, 1e-2, 3e-2} (extended by one 1-3-10
step while a choice sits on an edge) with the least area under the validation-MAE curve. Test
MAE at log-spaced steps (every 10 to step 100, then at most 10 % apart). The model and schedule
constants are ``train.TrainConfig``'s, the task's ``task.TaskConfig``'s.
"""

from __future__ import annotations

import dataclasses

from ..model import LOSSES
from ..task import TaskConfig
from ..train import TrainConfig


@dataclasses.dataclass(frozen=True)
class EarlySettings:
    """The early-resolution rerun (``--early``): each arm of a finished run retrained at its chosen
    learning rate, stopped at ``stop``, evaluated every ``fine_every`` steps up to ``fine`` and
    every ``every`` steps after."""

    stop: int = 1400
    fine: int = 300
    fine_every: int = 2
    every: int = 10
    thresholds: tuple[float, ...] = (0.2, 0.1)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    losses: tuple[str, ...] = LOSSES
    seeds: int = 5
    first_seed: int = 0
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    extend_lr_grid: bool = True  # a choice on an edge of the grid adds the next 1-3-10 value
    lr_range: tuple[float, float] = (1e-4, 1.0)  # the grid is never extended beyond this
    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval_every: int = 10  # finest evaluation spacing (steps)
    eval_ratio: float = 1.1  # growth of the evaluation spacing
    eval_size: int = 2048  # validation and test signals
    eval_seed: int = 10_000_001  # the fixed held-out sets, shared by every run
    test_seed: int = 10_000_002
    thresholds: tuple[float, ...] = (0.2, 0.1, 0.07, 0.06)  # test MAE, bins
    floor_margin: float = 1.1  # one more threshold: the noise floor x this
    reference: str = "dfl"  # every arm is paired against it
    # Further pairs (arm, against), paired per seed and in the Holm family with the reference pairs.
    comparisons: tuple[tuple[str, str], ...] = (("l1_std", "l1"), ("l2", "l1"), ("smooth_l1", "l1"))
    timing_rounds: int = 7  # the round-robin ms/step pass
    early: EarlySettings = EarlySettings()


def get_config() -> ToyConfig:
    return ToyConfig()
