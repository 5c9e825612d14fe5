"""Trainer callbacks: a terminal progress bar with the loss, the NaN guard, and the best epoch on the fold."""

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


class BestOnFold(TrainerCallback):
    """Keeps the adapter's weights where the calibration fold's loss was lowest, and stops training once
    `patience` measurements in a row found none lower (the small-models seed's practice: the last epoch
    is not always the best, least of all at a few examples a label). `curve` records each measurement."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = math.inf
        self.best_step: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.curve: list[dict[str, float | None]] = []
        self._since_best = 0
        self._train_loss: float | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self._train_loss = logs["loss"]

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    model: Any = None, **_: Any) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None or model is None:
            return
        self.curve.append({"step": state.global_step, "epoch": round(state.epoch or 0.0, 2),
                           "train_loss": round(self._train_loss, 4) if self._train_loss is not None else None,
                           "fold_loss": round(loss, 4)})
        if loss < self.best_loss:
            from peft import get_peft_model_state_dict

            self.best_loss, self.best_step, self._since_best = loss, state.global_step, 0
            self.best_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
        else:
            self._since_best += 1
            control.should_training_stop = self._since_best >= self.patience

    def restore(self, model: Any) -> bool:
        """Puts the best weights back; True if they differ from the last step's."""
        if self.best_state is None or not self.curve or self.best_step == self.curve[-1]["step"]:
            return False
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, self.best_state)
        return True
