"""Trainer callbacks: a terminal progress bar with the loss, and the NaN guard."""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback


class NanGuard(TrainerCallback):
    """Stops training at the first loss that is not a finite number."""

    def __init__(self) -> None:
        self.bad_loss: float | None = None
        self.first_loss: float | None = None
        self.last_loss: float | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if not math.isfinite(loss):
            self.bad_loss = loss
            control.should_training_stop = True
        else:
            self.first_loss = loss if self.first_loss is None else self.first_loss
            self.last_loss = loss


class LossBar(TrainerCallback):
    def __init__(self) -> None:
        self._bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=state.max_steps, desc="training", unit="step", dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        if self._bar is not None and logs and "loss" in logs:
            self._bar.set_postfix(loss=f"{logs['loss']:.3f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
