"""Lightning callbacks for training runs: throughput / MFU logging and a stop on non-finite losses.

- :class:`TokenThroughputMonitor`: tokens/s, samples/s, model TFLOP/s and MFU in the logger every N optimizer
  steps, counted from tensor shapes (no host sync in the hot path). (``ThroughputMonitor``, its former name, is a
  deprecated alias: Lightning has a different callback of that name.)
- :class:`NaNGuard`: a NaN/inf training loss ends the run with a message naming the step and the loss, before the
  bad update is applied and before any checkpoint with non-finite weights can be written.
- :func:`progress_bar`: Lightning's progress bar showing the step/time budget and a true epoch counter.
- :class:`CompileModel`: ``torch.compile`` the backbone in place (``--trainer.callbacks+=CompileModel``).

Both work with any LightningModule; MFU needs a ``flops_per_token(seq_len)`` method (every
:class:`lit_lm.tasks.LMTask` has one).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, Timer, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_warn

from lit_lm._lightning import rich_available
from lit_lm.errors import NonFiniteLossError
from lit_lm.hardware import cpu_name  # re-exported from its old home

__all__ = [
    "GPU_PEAK_FLOPS",
    "BudgetRichProgressBar",
    "BudgetTQDMProgressBar",
    "CompileModel",
    "NaNGuard",
    "NonFiniteLossError",
    "TokenThroughputMonitor",
    "cpu_name",
    "peak_flops_for",
    "progress_bar",
    "time_budget",
    "training_budget",
]

#: Dense (no sparsity) datasheet peaks in FLOP/s per GPU: fp32 (CUDA cores), tf32 and bf16/fp16 tensor cores, for
#: the GPUs lit_lm is benchmarked on. :func:`peak_flops_for` asks Lightning first and uses this table where Lightning
#: has no figure (an H200 that reports itself as plain ``NVIDIA H200``) or a with-sparsity one (see there).
#: Matched against ``torch.cuda.get_device_name()`` (all words of the key must occur; first match wins).
GPU_PEAK_FLOPS: dict[str, dict[str, float]] = {
    "h200": {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12},  # SXM (the NVL part is ~15% lower)
    "h100 pcie": {"fp32": 51.2e12, "tf32": 378e12, "bf16": 756e12},
    "h100": {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12},  # SXM
    "a100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12},
}


#: Lightning's with-sparsity figures are twice the dense ones; a Lightning figure above this multiple of the table's
#: dense one for the same chip is taken for a sparsity figure.
_SPARSE_FIGURE_RATIO = 1.5

_PRECISION_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16, "32": torch.float32, "64": torch.float64}


def _precision_dtype(precision: str) -> torch.dtype | None:
    """The compute dtype of a Lightning ``precision`` (``"bf16-mixed"``, ``"16-true"``, ``"32"``, ...), or None."""
    return _PRECISION_DTYPES.get(str(precision).split("-", 1)[0])


def _table_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """:data:`GPU_PEAK_FLOPS`' figure for a CUDA ``device`` and compute ``dtype`` (None if not listed)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16, torch.float32):
        return None
    if dtype is torch.float32:
        key = "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"
    else:
        key = "bf16"  # fp16 runs at the same tensor-core rate
    name = torch.cuda.get_device_name(device).lower()
    for chip, peaks in GPU_PEAK_FLOPS.items():
        if all(word in name for word in chip.split()):
            return peaks[key]
    return None


def peak_flops_for(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of ``device`` for a Lightning ``precision`` string, or None where it is not known.

    The figure comes from Lightning's :func:`~lightning.fabric.utilities.throughput.get_available_flops` (CUDA GPUs
    and TPUs), with :data:`GPU_PEAK_FLOPS` for the chips where Lightning has none, or lists the with-sparsity peak
    (twice the dense one: H100 NVL and H200 in Lightning 2.6, Lightning issue #21677). Lightning's "FLOPs not
    found" warnings are passed on only when neither knows the device. The device is queried here, not on import.
    """
    dtype = _precision_dtype(precision)
    if dtype is None:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning_peak = get_available_flops(device, dtype)
    table_peak = _table_peak(device, dtype)
    if lightning_peak is not None and (table_peak is None or lightning_peak <= _SPARSE_FIGURE_RATIO * table_peak):
        return float(lightning_peak)
    if table_peak is None:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return table_peak


def _batch_shape(batch: Any) -> tuple[int, int, int] | None:
    """(tokens, samples, seq_len) of a batch from ``input_ids``' shape (metadata only: no device sync)."""
    ids = batch.get("input_ids") if isinstance(batch, dict) else batch
    if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], torch.Tensor):
        ids = ids[0]
    if not isinstance(ids, torch.Tensor) or ids.dim() < 2:
        return None
    return ids.numel(), ids.size(0), ids.size(-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TokenThroughputMonitor(L.Callback):
    """Log training throughput and model FLOPs utilisation every ``log_every_n_steps`` optimizer steps.

    Unlike Lightning's :class:`~lightning.pytorch.callbacks.ThroughputMonitor`, it needs no ``batch_size_fn`` or
    ``length_fn`` (it reads ``input_ids``' shape) and counts FLOPs with the model's ``flops_per_token`` instead of
    measuring them once per run.

    Logged (to every logger, from rank 0, at ``trainer.global_step``):

    - ``throughput/tokens_per_sec``, ``throughput/samples_per_sec``: all devices together (the per-device rate
      times the world size, assuming the ranks' batches are alike);
    - ``throughput/tokens_per_sec_per_device``;
    - ``throughput/tflops_per_device``: achieved model TFLOP/s (``pl_module.flops_per_token(seq_len)`` per token,
      i.e. 6 FLOPs per weight per token plus attention and the heads' useful work; padding tokens count);
    - ``throughput/mfu``: those FLOP/s over the device's peak for the run's precision, when the peak is known
      (``peak_flops``, or :func:`peak_flops_for`: Lightning's table of GPUs and TPUs, :data:`GPU_PEAK_FLOPS`);
    - ``throughput/tokens_seen``: all training tokens so far, all devices, every batch counted (padding included),
      kept in the checkpoint so that a resumed run goes on counting; logged on the same grid and at the end.

    Tokens and samples are read from ``batch["input_ids"].shape``: no ``.item()``, no sync in the hot path. The
    clock is read (after one ``cuda.synchronize``) only on logging steps, so the figures are averages over the
    last window. The first batch (warm-up, lazy initialisation, compilation) is left out, and so is the time spent
    in validation.

    Args:
        log_every_n_steps: Window length in optimizer steps (default: the Trainer's ``log_every_n_steps``).
        peak_flops: The device's peak FLOP/s for MFU (per device). Default: :func:`peak_flops_for` on known GPUs,
            none (no MFU) elsewhere; on a CPU measure it, e.g. with ``benchmarks/train_throughput.py``.
    """

    def __init__(self, log_every_n_steps: int | None = None, peak_flops: float | None = None) -> None:
        super().__init__()
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be >= 1, got {log_every_n_steps}")
        if peak_flops is not None and peak_flops <= 0:
            raise ValueError(f"peak_flops must be > 0, got {peak_flops}")
        self.log_every_n_steps = log_every_n_steps
        self.peak_flops = peak_flops
        #: The last logged values (on every rank), for inspection.
        self.metrics: dict[str, float] = {}
        self._available: float | None = None
        self._device = torch.device("cpu")
        self._t_last: float | None = None
        self._val_t0: float | None = None
        self._flops_cache: dict[int, float | None] = {}
        self._warned = False
        #: Training tokens so far on this rank (``input_ids`` elements of every batch), restored on resume.
        self.tokens_seen = 0
        self._reset_window(0)

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens_seen = int(state_dict.get("tokens_seen", 0))

    def _reset_window(self, step: int) -> None:
        self._tokens = self._samples = 0
        self._flops = 0.0
        self._window_start_step = step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._device = trainer.strategy.root_device
        self._available = self.peak_flops or peak_flops_for(self._device, trainer.precision)
        self._flops_cache.clear()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t_last = None

    def _flops_per_token(self, pl_module: L.LightningModule, seq_len: int) -> float | None:
        if seq_len not in self._flops_cache:
            fn = getattr(pl_module, "flops_per_token", None)
            self._flops_cache[seq_len] = float(fn(seq_len)) if callable(fn) else None
        return self._flops_cache[seq_len]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        shape = _batch_shape(batch)
        if shape is None:
            if not self._warned:
                rank_zero_warn(
                    "TokenThroughputMonitor: the batch has no (B, ..., T) `input_ids` tensor; nothing logged"
                )
                self._warned = True
            return
        step = trainer.global_step
        self.tokens_seen += shape[0]
        if self._t_last is None:  # the clock starts after the first batch: warm-up is not counted
            _sync(self._device)
            self._t_last = time.perf_counter()
            self._reset_window(step)
            return
        tokens, samples, seq_len = shape
        self._tokens += tokens
        self._samples += samples
        fpt = self._flops_per_token(pl_module, seq_len)
        if fpt is not None:
            self._flops += fpt * tokens
        every = self.log_every_n_steps or trainer.log_every_n_steps or 50
        if step == self._window_start_step or step % every != 0:
            return  # not an optimizer-step boundary on the logging grid (or still accumulating gradients)
        _sync(self._device)
        now = time.perf_counter()
        elapsed = max(now - self._t_last, 1e-9)
        world = trainer.world_size
        metrics = {
            "throughput/tokens_per_sec": self._tokens * world / elapsed,
            "throughput/samples_per_sec": self._samples * world / elapsed,
            "throughput/tokens_per_sec_per_device": self._tokens / elapsed,
            "throughput/tokens_seen": float(self.tokens_seen * world),
        }
        if self._flops:
            flops_per_sec = self._flops / elapsed
            metrics["throughput/tflops_per_device"] = flops_per_sec / 1e12
            if self._available:
                metrics["throughput/mfu"] = flops_per_sec / self._available
        self.metrics = metrics
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        self._t_last = now
        self._reset_window(step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.tokens_seen:
            for logger in trainer.loggers:
                logger.log_metrics({"throughput/tokens_seen": float(self.tokens_seen * trainer.world_size)},
                                   step=trainer.global_step)  # fmt: skip

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t_last is not None and not trainer.sanity_checking:
            _sync(self._device)
            self._val_t0 = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_t0 is not None and self._t_last is not None:
            _sync(self._device)
            self._t_last += time.perf_counter() - self._val_t0  # validation time does not count
        self._val_t0 = None


#: Deprecated alias of :class:`TokenThroughputMonitor` (its name until it was renamed so as not to shadow Lightning's
#: ``lightning.pytorch.callbacks.ThroughputMonitor``); kept for configs with ``lit_lm.callbacks.ThroughputMonitor``.
ThroughputMonitor = TokenThroughputMonitor


class CompileModel(L.Callback):
    """``torch.compile`` the module's ``backbone`` when a fit, validation, test or predict run starts.

    The backbone is compiled in place (:meth:`torch.nn.Module.compile`), not wrapped, so its state-dict keys, the
    checkpoints, resuming, export and DDP see the same module as without compiling. The heads (and the LM heads'
    chunked loss) stay eager. lit_lm's own CPU dropout and the attention backend probe step aside inside a
    compiled graph (``F.dropout`` and SDPA there).

    Args:
        mode: ``torch.compile``'s mode: ``None`` (default), ``reduce-overhead``, ``max-autotune``...
        dynamic: ``True`` (default): sequence lengths are symbolic from the first batch, so fine-tuning batches of
            any length share one graph instead of compiling one per length; ``None``: PyTorch's choice (one
            recompilation at the first new length, then symbolic); ``False``: one graph per shape.
        backend: ``inductor`` (default; generates C++ on CPUs and Triton on GPUs) or another registered backend.
        fullgraph: Refuse graph breaks (an error instead of falling back to Python between graphs).
    """

    def __init__(self, mode: str | None = None, dynamic: bool | None = True, backend: str = "inductor",
                 fullgraph: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.mode, self.dynamic, self.backend, self.fullgraph = mode, dynamic, backend, fullgraph

    def _compile(self, pl_module: L.LightningModule) -> None:
        backbone = getattr(pl_module, "backbone", None)
        if not isinstance(backbone, torch.nn.Module):
            raise TypeError(f"CompileModel compiles a module's `backbone`; {type(pl_module).__name__} has none")
        if getattr(backbone, "_compiled_call_impl", None) is None:
            backbone.compile(mode=self.mode, dynamic=self.dynamic, backend=self.backend, fullgraph=self.fullgraph)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._compile(pl_module)


class NaNGuard(L.Callback):
    """Stop training at the first NaN/inf loss, before the bad update and before a broken checkpoint.

    The check runs in ``on_before_backward``, so the step with the bad loss is never applied: the weights in
    memory stay those of the last good step. Every step the loss's finiteness is folded into a flag on the
    device (no sync); every ``check_every_n_steps`` steps the flag is read (one host sync; under DDP reduced over
    the ranks so that all of them stop together) and the run ends with :class:`NonFiniteLossError` naming the
    first bad step and its loss value. Before every checkpoint the flag is read regardless, and the weights are
    checked to be finite (a loss can be finite while an overflowing gradient already wrecked the weights), so a
    checkpoint with non-finite weights is never written.

    Trade-off of ``check_every_n_steps``: 1 (default) stops at once and, since the step is refused before
    backward, keeps the weights clean, at the cost of one host sync per step (a small stall on GPUs; free on
    CPUs; Lightning's progress bar already syncs on the logged loss each refresh). With N > 1 no sync happens in
    between, the run stops up to N - 1 steps later, and those steps' updates (with NaN gradients) have been
    applied to the in-memory weights, but still no checkpoint is written from them. Unlike
    ``Trainer(detect_anomaly=True)`` this costs nothing in backward, and unlike ``EarlyStopping(check_finite)`` it
    does not need a monitored metric and acts before the update.

    Args:
        check_every_n_steps: Read the flag every N training batches (see above).
        check_weights_on_save: Also refuse checkpoints whose weights are not all finite.
    """

    def __init__(self, check_every_n_steps: int = 1, check_weights_on_save: bool = True) -> None:
        super().__init__()
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps
        self.check_weights_on_save = check_weights_on_save
        self._bad: torch.Tensor | None = None  # () bool: a non-finite loss was seen
        self._first_step: torch.Tensor | None = None  # () long: global step of the first one
        self._first_value: torch.Tensor | None = None  # () float: its value
        self._seen = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        self._bad = torch.zeros((), dtype=torch.bool, device=device)
        self._first_step = torch.full((), -1, dtype=torch.long, device=device)
        self._first_value = torch.zeros((), dtype=torch.float32, device=device)
        self._seen = 0

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if self._bad is None:
            self.on_train_start(trainer, pl_module)
        value = loss.detach().float().sum()
        # all on the device, no sync (torch.full launches a fill kernel with the step as an argument: no copy)
        new = ~torch.isfinite(value) & ~self._bad
        step = torch.full((), trainer.global_step, dtype=torch.long, device=value.device)
        self._first_step = torch.where(new, step, self._first_step)
        self._first_value = torch.where(new, value, self._first_value)
        self._bad = self._bad | new
        self._seen += 1
        if self._seen % self.check_every_n_steps == 0:
            self._raise_if_bad(trainer, "training")

    def _raise_if_bad(self, trainer: L.Trainer, when: str) -> None:
        if self._bad is None:
            return
        bad = trainer.strategy.reduce_boolean_decision(bool(self._bad), all=False)  # any rank
        if not bad:
            return
        if bool(self._bad):
            step, value = int(self._first_step), float(self._first_value)
            where = f"at global step {step} (rank {trainer.global_rank}): loss = {value}"
        else:
            where = "on another rank"
        applied = "was not applied" if self.check_every_n_steps == 1 else "may have reached the weights in memory"
        raise NonFiniteLossError(
            f"NaNGuard: non-finite training loss {where}; the run was stopped during {when}: its update {applied}, "
            "and no checkpoint was written after it. Lower the learning rate or raise warm-up, enable "
            "gradient clipping (trainer.gradient_clip_val), use bf16-mixed rather than 16-mixed, or check the "
            "data of that step (e.g. an all-ignored label batch)."
        )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._raise_if_bad(trainer, "a checkpoint save")
        if not self.check_weights_on_save:
            return
        named = list(pl_module.named_parameters())
        bad: list[str] = []
        if named:
            finite = torch.stack([torch.isfinite(p).all() for _, p in named])
            if not bool(finite.all()):  # one host sync per checkpoint
                bad = [n for (n, _), f in zip(named, finite.tolist(), strict=True) if not f]
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            raise NonFiniteLossError(
                f"NaNGuard: refusing to write a checkpoint at global step {trainer.global_step}: non-finite weights "
                f"in {bad[:5] or 'another rank'}{' ...' if len(bad) > 5 else ''}. Lower the learning rate, enable "
                "gradient clipping, or resume from the last good checkpoint."
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._raise_if_bad(trainer, "the end of training")


# ================================================================================================ progress bar
def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def time_budget(trainer: L.Trainer) -> tuple[float, float] | None:
    """``(seconds used, seconds in all)`` of the trainer's ``max_time`` (Lightning's ``Timer``: it counts from the
    start of training, validation included, and resumes with the checkpoint), or None when time does not bound the
    run."""
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    if timer is None:
        return None
    elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
    return None if remaining is None else (elapsed, elapsed + remaining)


def training_budget(trainer: L.Trainer) -> dict[str, str]:
    """What bounds the run, as progress-bar items: ``step: 120/300`` (``max_steps``), ``time: 1:20/8:00``
    (``max_time``); empty for a run bounded by epochs only (the epoch counter shows that)."""
    items = {}
    if trainer.max_steps is not None and trainer.max_steps > 0:
        items["step"] = f"{trainer.global_step}/{trainer.max_steps}"
    budget = time_budget(trainer)
    if budget is not None:
        items["time"] = f"{_clock(budget[0])}/{_clock(budget[1])}"
    return items


class _BudgetItems:
    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return {**training_budget(trainer), **super().get_metrics(trainer, pl_module)}


class BudgetTQDMProgressBar(_BudgetItems, TQDMProgressBar):
    """Lightning's TQDM bar plus the run's step and time budget (:func:`training_budget`)."""


class BudgetRichProgressBar(_BudgetItems, RichProgressBar):
    """Lightning's Rich bar plus the run's step and time budget (:func:`training_budget`); the epoch counter
    reads ``Epoch 3`` where Lightning's reads ``Epoch 3/-2`` (``max_epochs`` is -1 when steps or time bound the
    run)."""

    def _get_train_description(self, current_epoch: int) -> str:  # private: see lit_lm._lightning
        description = super()._get_train_description(current_epoch)
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs < 0:
            description = description.replace(f"Epoch {current_epoch}/{max_epochs - 1}", f"Epoch {current_epoch}")
        return description


def progress_bar() -> ProgressBar:
    """The bar Lightning would choose (Rich where ``rich`` is installed, else TQDM), with the budget items."""
    return BudgetRichProgressBar() if rich_available() else BudgetTQDMProgressBar()
