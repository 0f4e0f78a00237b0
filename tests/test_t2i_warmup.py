"""``t2i_train``'s ``lr_warmup_steps``: the learning rates rise linearly over the first steps.

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


def test_the_learning_rates_warm_up_over_the_first_steps(data_ws: Workspace, sd_base: str) -> None:  # noqa: F811
    final = run_inline(data_ws, {**BASE_CFG, "base": sd_base, "train": "both", "lr_warmup_steps": 2})
    assert final.config["lr_warmup_steps"] == 2
    lr = metrics(data_ws, int(final.id))["lr"]  # the first group's (the UNet's) rate after each step
    assert lr == pytest.approx({1: 0.5e-3, 2: 1e-3, 3: 1e-3})


def test_warmup_is_off_by_default_and_never_negative() -> None:
    from training.jobs.t2i_train import warmup_factor

    assert make_config("t2i_train", {"dataset": "d"})["lr_warmup_steps"] == 0
    assert [warmup_factor(step, 0) for step in range(3)] == [1.0, 1.0, 1.0]
    assert [warmup_factor(step, 4) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ConfigError, match="lr_warmup_steps must be at least 0"):
        make_config("t2i_train", {"dataset": "d", "lr_warmup_steps": -1})
