"""``t2i_train``'s ``lr_warmup_steps`` and ``lr_schedule``: the learning rates rise linearly over
the first steps, then stay or decay on a cosine (the maths: ``tests/test_lr_schedule.py``).

The option was added in issue 10 as the example of "one place (the schema) plus the job code":
the Runs tab's form and the CLI's ``--lr-warmup-steps`` come from its declaration alone
(``tests/test_job_kinds.py`` checks that for every field). Here the real job runs on the tiny
Stable Diffusion pipeline, as in ``tests/test_t2i_train.py``, whose data and helpers it reuses.
"""

from __future__ import annotations

import pytest

from backend.jobs.configs import ConfigError, make_config
from backend.workspace import Workspace
from tests.test_t2i_train import BASE_CFG, data_ws, metrics, run_inline, sd_base  # noqa: F401

pytest_plugins = ("tests.tiny_models",)
pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("keep_root_logging")]


def test_the_learning_rates_warm_up_then_decay(data_ws: Workspace, sd_base: str) -> None:  # noqa: F811
    values = {
        **BASE_CFG,
        "base": sd_base,
        "train": "both",
        "steps": 4,
        "lr_warmup_steps": 2,
        "lr_schedule": "cosine",
    }
    final = run_inline(data_ws, values)
    assert final.config["lr_warmup_steps"] == 2 and final.config["lr_schedule"] == "cosine"
    lr = metrics(data_ws, int(final.id))["lr"]  # the first group's (the UNet's) rate after each step
    # warm-up: 1/2, 2/2; then the cosine over the last 2 steps: 1, 0.5 (1 + cos(pi / 2))
    assert lr == pytest.approx({1: 0.5e-3, 2: 1e-3, 3: 1e-3, 4: 0.5e-3})


def test_warmup_and_decay_are_off_by_default_and_checked() -> None:
    assert make_config("t2i_train", {"dataset": "d"})["lr_warmup_steps"] == 0
    assert make_config("t2i_train", {"dataset": "d"})["lr_schedule"] == "constant"
    with pytest.raises(ConfigError, match="lr_warmup_steps must be at least 0"):
        make_config("t2i_train", {"dataset": "d", "lr_warmup_steps": -1})
    with pytest.raises(ConfigError, match="lr_schedule"):
        make_config("t2i_train", {"dataset": "d", "lr_schedule": "linear"})
