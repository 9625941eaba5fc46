"""The training loop for heads on fixed features: AdamW (constant or cosine rate), early stopping on
validation, a checkpoint every epoch, data parallel over MPI ranks. Short enough to read in one sitting.

Exact resume: the only randomness is the per-epoch shuffle (a generator seeded from the run seed and the epoch
number, so it needs no state) and the global torch RNG (shots, noise and dropout draws), whose state every rank
saves in the checkpoint together with the model, the optimizer, the curves and the best state so far; the rate
schedule is a function of the epoch. A run killed at any moment and resumed from its last checkpoint therefore
ends exactly as an unbroken run would.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hpcq.data.ranks import partition
from hpcq.energy import EnergyMeter
from hpcq.errors import ConfigError, HpcqError
from hpcq.runtime import World
from hpcq.train.checkpoint import load_run_checkpoint, save_checkpoint
from hpcq.train.dataparallel import allreduce_gradients, allreduce_sum, barrier, broadcast, gather_to_root


@dataclass
class Split:
    """Features [n, d] and integer labels [n] of one part of the data."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainState:
    """Everything that carries over from one epoch to the next (and into a checkpoint)."""

    epoch: int = 0  # epochs completed
    curves: dict[str, list[float]] = field(default_factory=lambda: {
        "train_loss": [], "train_accuracy": [], "val_loss": [], "val_accuracy": []})
    step_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    best_model: dict[str, torch.Tensor] | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values, so a checkpoint loads with `weights_only` (numpy's
    key array becomes a list of ints)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": (name, keys.tolist(), position, has_gauss, cached_gaussian),
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(state["python"])


class TrainingDiverged(HpcqError):
    """The loss became NaN or infinite: the run stops before a meaningless result is written."""


def check_finite_loss(loss: float, where: str, settings: str) -> None:
    """Stop a diverged run. A NaN loss would otherwise train on and its result be saved (and aggregated) like
    any other; `where` names the epoch and step, `settings` the config values to check."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the training loss is {loss} at {where}: the run diverged; check {settings} "
                               "(a smaller train.lr usually fixes it); no result was written")


@torch.no_grad()
def evaluate(model: torch.nn.Module, split: Split, world: World, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over `split`; each rank evaluates its slice and the sums are reduced."""
    model.eval()
    rows = partition(len(split), world.rank, world.size)
    loss_sum = correct = 0.0
    for start in range(rows.start, rows.stop, batch_size):
        x, y = split.x[start:min(start + batch_size, rows.stop)], split.y[start:min(start + batch_size, rows.stop)]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    loss_sum, correct = allreduce_sum([loss_sum, correct], world)
    return loss_sum / len(split), correct / len(split)


def train_epoch(model, optimizer, train: Split, epoch: int, seed: int, batch_size: int, world: World,
                state: TrainState) -> tuple[float, float]:
    """One pass over the shuffled training set; returns (mean loss, accuracy) of the batches as trained."""
    model.train()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    loss_total = correct_total = 0.0
    for start in range(0, len(train), batch_size):
        batch = order[start:start + batch_size]
        mine = batch[partition(len(batch), world.rank, world.size)]
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = 0.0
        if len(mine):  # a rank can get no rows of a short last batch; it still joins the allreduce
            logits = model(train.x[mine])
            loss_sum = F.cross_entropy(logits, train.y[mine], reduction="sum")
            (loss_sum / len(batch)).backward()  # the GLOBAL batch size: summed over ranks, the batch mean
            correct = (logits.argmax(dim=1) == train.y[mine]).sum().item()
        allreduce_gradients(model.parameters(), world)
        optimizer.step()
        batch_loss, batch_correct = allreduce_sum([loss_sum.item(), correct], world)
        # every rank sees the same reduced loss, so all ranks stop together
        check_finite_loss(batch_loss, f"epoch {epoch + 1}, step {start // batch_size + 1}", _lr_settings(optimizer))
        state.step_loss.append(batch_loss / len(batch))
        loss_total += batch_loss
        correct_total += batch_correct
    return loss_total / len(train), correct_total / len(train)


def _lr_settings(optimizer: torch.optim.Optimizer) -> str:
    """The learning rates in use, named as the run config names them: task head has one parameter group, task
    joint's head group (train.lr) comes before its body group (train.body_lr), which a frozen body lacks."""
    names = ("train.lr", "train.body_lr")
    return ", ".join(f"{name}={group.get('initial_lr', group['lr']):g}"
                     for name, group in zip(names, optimizer.param_groups))


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The fraction of train.lr that epoch `epoch` (0-based) of `epochs` trains at: 1 for `constant`, a half
    cosine from 1 down towards 0 for `cosine`. A function of the epoch alone, so a resumed run needs no
    scheduler state."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return 1.0


def _improved(state: TrainState, val_loss: float, val_accuracy: float, select: str) -> bool:
    """Whether this epoch beats the best so far by train.select: `val_accuracy` (ties, frequent on 77
    validation rows, go to the lower loss) or `val_loss` (the validation cross-entropy, which moves smoothly where
    accuracy on a small validation set moves in steps of one row and can crown an under-trained epoch)."""
    if select == "val_loss":
        return val_loss < state.best_loss
    return val_accuracy > state.best_accuracy or (val_accuracy == state.best_accuracy and val_loss < state.best_loss)


def _checkpoint(path: Path, model, optimizer, state: TrainState, config: dict, world: World) -> None:
    rng_states = gather_to_root(rng_state(), world)
    if world.rank == 0:
        save_checkpoint(path, {"config": config, "state": state, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "rng": rng_states, "ranks": world.size})
    barrier(world)


def _resume(path: Path, model, optimizer, config: dict, world: World) -> TrainState | None:
    saved = load_run_checkpoint(path, config, types=[TrainState])
    if saved is None:
        return None
    if saved["ranks"] != world.size:
        raise ConfigError(f"checkpoint {path} was written by {saved['ranks']} MPI rank(s); resume it with the "
                          f"same number (this job has {world.size})")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    set_rng_state(saved["rng"][world.rank])
    return saved["state"]


def fit(model: torch.nn.Module, train: Split, validation: Split, config: dict, world: World,
        checkpoint_file: Path, resume: bool, progress: bool = True) -> TrainState:
    """Train `model` with the run config's `train` section (AdamW on every trainable parameter); the returned
    state holds the best model."""
    t = config["train"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t["lr"],
                                  weight_decay=t["weight_decay"])
    return fit_epochs(model, optimizer, train, validation, config, world, checkpoint_file, resume, progress)


def whole_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every tensor of `model`'s state: what a head run keeps of its best epoch."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def fit_epochs(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train: Split, validation: Split,
               config: dict, world: World, checkpoint_file: Path, resume: bool, progress: bool = True,
               select: Callable[[torch.nn.Module], dict[str, torch.Tensor]] = whole_state,
               desc: str = "train") -> TrainState:
    """Epochs of `train_epoch` until train.epochs, or train.patience epochs without a better validation score
    (train.select); a checkpoint after each. The state keeps `select(model)` of the best epoch."""
    t = config["train"]
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    state = (_resume(checkpoint_file, model, optimizer, config, world) if resume else None) or TrainState()
    finished = state.stopped_early or state.epoch >= t["epochs"]
    with tqdm(total=t["epochs"], initial=state.epoch, desc=desc, unit="epoch",
              disable=not progress or world.rank != 0) as bar:  # closed before an error is printed
        while not finished:
            started = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * lr_factor(t["schedule"], state.epoch, t["epochs"])
            train_loss, train_accuracy = train_epoch(model, optimizer, train, state.epoch, config["seed"],
                                                     t["batch_size"], world, state)
            val_loss, val_accuracy = evaluate(model, validation, world, t["eval_batch_size"])
            state.epoch += 1
            for name, value in (("train_loss", train_loss), ("train_accuracy", train_accuracy),
                                ("val_loss", val_loss), ("val_accuracy", val_accuracy)):
                state.curves[name].append(value)
            if _improved(state, val_loss, val_accuracy, t["select"]):
                state.best_accuracy, state.best_loss, state.best_epoch = val_accuracy, val_loss, state.epoch
                state.best_model = select(model)
                state.epochs_without_improvement = 0
            else:
                state.epochs_without_improvement += 1
            state.stopped_early = state.epochs_without_improvement >= t["patience"]
            finished = state.stopped_early or state.epoch >= t["epochs"]
            state.epoch_seconds.append(broadcast(time.perf_counter() - started, world))
            _checkpoint(checkpoint_file, model, optimizer, state, config, world)
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_accuracy:.3f}",
                            best=f"{state.best_accuracy:.3f}")
        shown = not bar.disable
    if state.stopped_early and shown:  # say why the bar ended short of train.epochs
        tqdm.write(f"stopped early after epoch {state.epoch}: no better {t['select']} for {t['patience']} epochs "
                   f"(train.patience); keeping epoch {state.best_epoch} (val_acc {state.best_accuracy:.3f}, "
                   f"val_loss {state.best_loss:.3f})",
                   file=sys.stderr)
    return state


RANK_SEED_STRIDE = 7919
"""Rank r of a run with seed s draws its shots, noise and dropout from seed s + 7919·r + 1: rank 0 keeps the
single-rank stream (s itself seeded the initial weights, identical on every rank), and a prime stride keeps
the streams of the ranks of one run apart from those of the next seeds of a study."""


@dataclass
class Tested:
    """A trained model's selected state, its test accuracy, and the test's seconds and the run's energy."""

    state: TrainState
    test_accuracy: float
    test_seconds: float
    energy: dict[str, Any]

    def result(self, started: float, world: World, sizes: dict[str, int], n_trainable: int,
               **facts: Any) -> dict[str, Any]:
        """The metrics, final, timing and energy groups of the run file, `facts` added to final."""
        state = self.state
        return {
            "metrics": {**state.curves, "step_loss": state.step_loss},
            "final": {"val_accuracy": state.best_accuracy, "test_accuracy": self.test_accuracy, **sizes,
                      "n_trainable_params": n_trainable, "best_epoch": state.best_epoch,
                      "epochs_run": state.epoch, "stopped_early": state.stopped_early, **facts},
            "timing": {"epoch_s": state.epoch_seconds, "total_s": time.perf_counter() - started,
                       "test_s": self.test_seconds, "ranks": world.size},
            "energy": self.energy,
        }

    def weights(self) -> dict[str, np.ndarray]:
        """The selected state's tensors as arrays (the run file's weights)."""
        return {name: value.cpu().numpy() for name, value in self.state.best_model.items()}


def fit_and_test(model: torch.nn.Module, test: Split, config: dict, world: World,
                 fit_model: Callable[[], TrainState], strict: bool = True) -> Tested | None:
    """Seed each rank's own stream (`RANK_SEED_STRIDE`), then under the energy meter: `fit_model()`, the
    selected state loaded into `model` (`strict`: it must name every tensor) and the test accuracy. Ranks other
    than 0 wait at a barrier for rank 0 and get None; rank 0 writes the result and then joins that barrier."""
    torch.manual_seed(config["seed"] + RANK_SEED_STRIDE * world.rank + 1)
    with EnergyMeter(config["energy"]["method"]) as meter:
        state = fit_model()
        model.load_state_dict(state.best_model, strict=strict)
        test_started = time.perf_counter()
        _, test_accuracy = evaluate(model, test, world, config["train"]["eval_batch_size"])
        test_seconds = time.perf_counter() - test_started
    if world.rank != 0:
        barrier(world)
        return None
    return Tested(state, test_accuracy, test_seconds, meter.reading.as_dict())
