"""The shared base of every lit_lm LightningModule: backbone construction, pretrained initialisation,
optimizer and learning-rate schedule, checkpoint metadata."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import nn

from lit_lm import __version__
from lit_lm._lightning import attached_trainer
from lit_lm.callbacks import time_budget
from lit_lm.config import PRESETS, TransformerConfig
from lit_lm.data.core.tokenizer import Tokenizer
from lit_lm.errors import CheckpointError, ConfigError
from lit_lm.model import Transformer, build_backbone
from lit_lm.model.transformer import without_full_mask
from lit_lm.serialization import LIT_LM_KEY, read_checkpoint
from lit_lm.tasks.pretrained import config_from_checkpoint, load_pretrained, merge_config


class LMTask(L.LightningModule):
    """Base class: owns a backbone (:class:`~lit_lm.model.Encoder` or :class:`~lit_lm.model.Decoder`) and the
    optimisation recipe; subclasses add heads and the objective.

    The backbone is built in ``__init__`` when everything is known, else in :meth:`configure_model`, where
    ``vocab_size`` (and the label count of classifiers) come from the attached DataModule. The resolved values are
    written back into ``hparams``, so ``load_from_checkpoint`` rebuilds the same network.

    Args:
        preset: Name of a :data:`lit_lm.config.PRESETS` architecture (ignored with ``init_from``).
        config: TransformerConfig fields to override, e.g. ``{n_layer: 2, dropout: 0.0}``. With ``init_from``
            only dropout, attention_dropout and attention_backend may change.
        vocab_size: Size of the token embedding. Default: the DataModule's tokenizer size.
        init_from: Start from pretrained weights: a lit_lm ``.ckpt`` (of any task) or a Hugging Face checkpoint
            directory (BERT / OpenAI GPT). Heads that the source has and this task uses are loaded too.
        learning_rate: Peak learning rate of AdamW.
        weight_decay: Decoupled weight decay; not applied to biases, LayerNorm weights and embeddings.
        betas: AdamW betas.
        eps: AdamW epsilon.
        warmup_steps: Linear warm-up length: a number of optimizer steps, or a fraction of all steps if < 1.
        lr_schedule: Decay after warm-up: ``linear`` to ``min_lr_ratio * lr`` (BERT), ``cosine`` (GPT-1),
            or ``constant``. The decay ends with the run's budget: ``max_steps`` (or the epochs), or the trainer's
            ``max_time``, whichever is used up first, so that a run bounded by time also ends at ``min_lr_ratio``
            (the budget-aware schedules of Geiping & Goldstein 2022, "Cramming").
        min_lr_ratio: Final learning rate as a fraction of the peak.
    """

    def __init__(
        self,
        preset: str = "gpt-mini",
        config: dict[str, Any] | None = None,
        vocab_size: int | None = None,
        init_from: str | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        warmup_steps: float = 0.0,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        min_lr_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # collects the arguments of the subclass's __init__ as well
        if lr_schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"lr_schedule must be linear, cosine or constant, got {lr_schedule!r}")
        if warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.backbone: Transformer | None = None
        self._tokenizer_json: str | None = None
        if init_from is None:
            config_now = self._config_from_preset(vocab_size or 1)  # validates preset and overrides at once
            if vocab_size is not None and self._labels_known():
                self._build(config_now)

    # ------------------------------------------------------------------------------------ subclass hooks
    def build_heads(self, config: TransformerConfig) -> None:
        """Create the task's heads (and metrics that depend on sizes) once the backbone exists."""

    def _labels_known(self) -> bool:
        """Whether all sizes the heads need are known without a DataModule."""
        return True

    def _resolve_data_settings(self, datamodule: Any) -> None:
        """Copy sizes the heads need (e.g. number of labels) from the DataModule into ``hparams``."""

    def head_flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token of the task's heads (forward + backward); see :meth:`flops_per_token`."""
        return 0.0

    # ------------------------------------------------------------------------------------ throughput
    def flops_per_token(self, seq_len: int) -> float:
        """Model FLOPs of one training step per token (forward + backward, 6 per weight per token plus
        attention, PaLM appendix B): the backbone's :meth:`~lit_lm.model.Transformer.flops_per_token` plus the
        heads' (:meth:`head_flops_per_token`). Used by :class:`lit_lm.callbacks.TokenThroughputMonitor` for MFU."""
        return float(self.backbone.flops_per_token(seq_len)) + self.head_flops_per_token(seq_len)

    def log_unigram_baseline(self, stage: str = "val") -> None:
        """Log the DataModule's unigram scores of the ``stage`` text (a context-free model's loss, accuracy, bpc:
        ``val_unigram``, or ``unigram("test")``) once per run as ``baseline/unigram_*`` (``baseline/test_unigram_*``
        for ``test``): the line the curves must get below. A no-op for DataModules without one."""
        datamodule = getattr(self.trainer, "datamodule", None)
        logged = getattr(self, "_unigram_logged", set())
        if stage in logged or self.trainer.sanity_checking or datamodule is None:
            return
        baseline = getattr(datamodule, "val_unigram", None) if stage == "val" else None
        if stage != "val" and hasattr(datamodule, "unigram"):
            baseline = datamodule.unigram(stage)
        if baseline:
            self._unigram_logged = logged | {stage}
            prefix = "baseline/unigram_" if stage == "val" else f"baseline/{stage}_unigram_"
            for name, value in baseline.items():
                self.log(f"{prefix}{name}", float(value), sync_dist=False)

    def setup(self, stage: str) -> None:
        # Lightning warns once that this module's on_before_batch_transfer is used although a DataModule is
        # attached; that is the intent (the DataModule does not define the hook), so the warning is only noise.
        noise = r"You have overridden `on_before_batch_transfer` in `LightningModule` but"
        warnings.filterwarnings("ignore", message=noise)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Drop an all-ones ``attention_mask`` while the batch is still on the host
        (:func:`~lit_lm.model.transformer.without_full_mask`), so it never reaches the device."""
        if isinstance(batch, dict) and isinstance(batch.get("attention_mask"), torch.Tensor):
            if without_full_mask(batch["attention_mask"]) is None:
                batch = {k: v for k, v in batch.items() if k != "attention_mask"}
        return batch

    # ------------------------------------------------------------------------------------ building
    @property
    def backbone_config(self) -> TransformerConfig:
        if self.backbone is None:
            raise RuntimeError("the backbone is not built yet: pass vocab_size or fit with a DataModule")
        return self.backbone.config

    def _config_from_preset(self, vocab_size: int) -> TransformerConfig:
        overrides = dict(self.hparams.get("config") or {})
        overrides["vocab_size"] = vocab_size
        return TransformerConfig.from_name(self.hparams.preset, **overrides)

    def _build(self, config: TransformerConfig) -> None:
        self.backbone = build_backbone(config)
        self.build_heads(config)
        # Written back so that load_from_checkpoint rebuilds exactly this network without the DataModule.
        self.hparams["vocab_size"] = config.vocab_size
        self.hparams["config"] = {k: v for k, v in config.to_dict().items()}
        self.hparams["preset"] = config.name if config.name in PRESETS else self.hparams.preset

    def configure_model(self) -> None:
        """Build the network from the DataModule's sizes, a resumed checkpoint or ``init_from``."""
        if self.backbone is not None:
            return
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is not None:
            self._resolve_data_settings(datamodule)
        data_vocab = getattr(datamodule, "vocab_size", None)
        resume = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        init_from = self.hparams.get("init_from")

        if resume:  # architecture from the checkpoint being resumed; its weights are restored by Lightning
            config = config_from_checkpoint(read_checkpoint(resume), resume)
            self._build(config)
        elif init_from and trainer is not None:
            pretrained = load_pretrained(init_from)
            config = merge_config(pretrained.config, self.hparams.get("config"), init_from)
            try:  # first: a wrong kind of backbone for this task is the clearer error
                self._build(config)
            except ConfigError as e:
                raise CheckpointError(f"{init_from}: {e}") from None
            if data_vocab is not None and data_vocab != config.vocab_size:
                raise CheckpointError(
                    f"the DataModule's tokenizer has {data_vocab} tokens but the pretrained backbone in {init_from} "
                    f"has {config.vocab_size}; fine-tune with the tokenizer it was trained with "
                    f"(data tokenizer: {init_from})"
                )
            _check_same_tokenizer(getattr(datamodule, "tokenizer", None), pretrained.tokenizer_json, init_from)
            self._load_pretrained_weights(self._align_labels(pretrained.state_dict, pretrained.label_names,
                                                             init_from), init_from)  # fmt: skip
            self._tokenizer_json = pretrained.tokenizer_json
        else:
            vocab = self.hparams.get("vocab_size") or data_vocab
            if vocab is None:
                raise ConfigError(
                    f"{type(self).__name__} needs vocab_size: pass it, or fit with a DataModule that has a tokenizer"
                )
            if data_vocab is not None and vocab != data_vocab:
                raise ConfigError(f"model vocab_size={vocab} but the DataModule's tokenizer has {data_vocab} tokens")
            self._build(self._config_from_preset(vocab))
        self._check_data_fits(datamodule)

    def _check_data_fits(self, datamodule: Any) -> None:
        n_positions = self.backbone_config.n_positions
        for attr in ("max_seq_length", "block_size"):
            length = getattr(datamodule, attr, None)
            if length is not None and length > n_positions:
                raise ConfigError(
                    f"data {attr}={length} exceeds the model's n_positions={n_positions}; lower data.{attr} "
                    f"or use a model with more positions"
                )

    #: Heads whose output rows are this task's labels (in ``hparams.label_names`` order).
    _LABELLED_HEADS = ("classifier.classifier.", "token_classifier.classifier.")

    def _align_labels(
        self, state_dict: dict[str, torch.Tensor], labels: list[str] | None, source: str
    ) -> dict[str, torch.Tensor]:
        """A source's classifier head, its rows put in this task's label order (same names, any order or case);
        a head trained on other labels is left out (the task starts a new one), with a warning naming both."""
        ours = self.hparams.get("label_names")
        head = [k for k in state_dict if k.startswith(self._LABELLED_HEADS)]
        if not head or not labels or not ours or list(labels) == list(ours):
            return state_dict
        index = {name.lower(): i for i, name in enumerate(labels)}
        if sorted(index) != sorted(n.lower() for n in ours):
            warnings.warn(f"{source}: its classifier was trained on the labels {list(labels)}, this task's are "
                          f"{list(ours)}: a new classifier is trained", UserWarning, stacklevel=2)  # fmt: skip
            return {k: v for k, v in state_dict.items() if k not in head}
        order = torch.tensor([index[n.lower()] for n in ours])
        return {k: (v[order] if k in head else v) for k, v in state_dict.items()}

    def _load_pretrained_weights(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load the backbone (all keys must match) and any heads of this task present in the source."""
        own = self.state_dict()
        backbone = {k: v for k, v in state_dict.items() if k.startswith("backbone.")}
        missing = sorted(k for k in own if k.startswith("backbone.") and k not in backbone)
        unexpected = sorted(k for k in backbone if k not in own)
        shapes = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in backbone.items()
            if k in own and v.shape != own[k].shape
        ]
        if missing or unexpected or shapes:
            raise CheckpointError(
                f"{source}: backbone does not fit: missing {missing}, unexpected {unexpected}, shapes {shapes}"
            )
        heads = {k: v for k, v in state_dict.items() if not k.startswith("backbone.") and k in own}
        heads = {k: v for k, v in heads.items() if v.shape == own[k].shape}
        self.load_state_dict({**backbone, **heads}, strict=False)

    # ------------------------------------------------------------------------------------ checkpoints
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; a strict load of weights that do not fit this network is refused with one
        :class:`CheckpointError` naming the file (instead of torch's list of tensor names). A non-strict load
        (``strict=False``, ``strict_loading = False``) is left to torch."""
        if strict:
            self._check_weights_fit(state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _check_weights_fit(self, theirs: Mapping[str, Any]) -> None:
        source = getattr(attached_trainer(self), "ckpt_path", None) or "checkpoint"
        own = self.state_dict()
        missing = sorted(k for k in own if k not in theirs)
        unexpected = sorted(k for k in theirs if k not in own)
        shapes = [
            f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} here"
            for k, v in theirs.items()
            if k in own and hasattr(v, "shape") and v.shape != own[k].shape
        ]
        kinds = ((missing, "weights missing"), (unexpected, "unexpected weights"), (shapes, "shape mismatches"))
        problems = [f"{len(found)} {what} (e.g. {found[0]})" for found, what in kinds if found]
        if problems:
            raise CheckpointError(
                f"{source}: its weights do not fit this {type(self).__name__} ({'; '.join(problems)}); was it written "
                "by a run with another task, number of labels or architecture?"
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Before Lightning restores the weights (``fit``/``validate``/``test``/``predict`` with ``ckpt_path``):
        refuse a DataModule whose tokenizer is not the one the checkpoint was trained with."""
        trainer = attached_trainer(self)
        datamodule = getattr(trainer, "datamodule", None)
        meta = checkpoint.get(LIT_LM_KEY)
        if datamodule is not None and isinstance(meta, dict):
            _check_same_tokenizer(getattr(datamodule, "tokenizer", None), meta.get("tokenizer"),
                                  str(getattr(trainer, "ckpt_path", None) or "the checkpoint"))  # fmt: skip

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(attached_trainer(self), "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        tok_json = tokenizer.hf.to_str() if hasattr(tokenizer, "hf") else self._tokenizer_json
        checkpoint[LIT_LM_KEY] = {
            "version": __version__,
            "config": self.backbone_config.to_dict(),
            "tokenizer": tok_json,
            # how the data was laid out, for an export that must reproduce it (None: not known)
            "data": {"format": getattr(datamodule, "format", None), "views": getattr(datamodule, "views", None),
                     "start_token": getattr(datamodule, "start_token", None)},
        }

    # ------------------------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: decay on weight matrices; none on biases, LayerNorm and embeddings (as in the papers)."""
        no_decay: set[int] = set()
        for module in self.modules():
            if isinstance(module, (nn.LayerNorm, nn.Embedding)):
                no_decay.update(id(p) for p in module.parameters(recurse=False))
        decay, plain, seen = [], [], set()
        for p in self.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (plain if id(p) in no_decay or p.ndim < 2 else decay).append(p)
        return [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ]

    def configure_optimizers(self):
        hp = self.hparams
        # the fused kernel: on CPUs too (3.3 ms against 11.7 ms a step for gpt-mini's 5.3M weights on 2 EPYC cores),
        # but not where fp16 gradients are scaled and clipped: the fused step would unscale them only after clipping
        clipping = (self.trainer.gradient_clip_val or 0) > 0
        fused = self.device.type in ("cuda", "cpu") and not (_grad_scaler(self.trainer) is not None and clipping)
        optimizer = torch.optim.AdamW(
            self.parameter_groups(), lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps, fused=fused
        )
        total = self.trainer.estimated_stepping_batches
        schedule = lr_lambda(hp.lr_schedule, hp.warmup_steps, total, hp.min_lr_ratio, time_budget_used(self.trainer))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clip as the Trainer says; under ``bf16-mixed`` also before a fused AdamW step, which Lightning's
        MixedPrecision plugin refuses for any optimizer that could unscale its own gradients: bf16 scales none."""
        plugin = self.trainer.precision_plugin
        if isinstance(plugin, MixedPrecision) and _grad_scaler(self.trainer) is None and gradient_clip_val:
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or GradClipAlgorithmType.NORM)
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)  # the base class: no refusal
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


def _grad_scaler(trainer: Any) -> Any:
    """The fp16 GradScaler of ``trainer``'s precision plugin (``16-mixed``), or None."""
    plugin = trainer.precision_plugin
    return plugin.scaler if isinstance(plugin, MixedPrecision) else None


def _check_same_tokenizer(data_tokenizer: Any, model_json: str | None, source: str) -> None:
    """Refuse data tokenized otherwise than the model's checkpoint was trained: with the same size but other tokens,
    every embedding row would stand for another token and nothing would fail loudly."""
    if not isinstance(data_tokenizer, Tokenizer) or not model_json:
        return
    from tokenizers import Tokenizer as HFTokenizer

    differ = data_tokenizer.difference(Tokenizer(HFTokenizer.from_str(model_json), source))
    if differ is not None:
        where = data_tokenizer.path or "the DataModule's tokenizer"
        raise CheckpointError(
            f"the data tokenizer ({where}) is not the one the model in {source} was trained with ({differ}); leave "
            f"data.tokenizer unset to use the checkpoint's, or set it to {source}"
        )


def time_budget_used(trainer: L.Trainer) -> Callable[[], float] | None:
    """A function giving the share of the trainer's ``max_time`` used so far
    (:func:`lit_lm.callbacks.time_budget`), or None when time does not bound the run."""
    if time_budget(trainer) is None:
        return None

    def used() -> float:
        budget = time_budget(trainer)
        return 1.0 if budget is None else budget[0] / max(budget[1], 1e-9)

    return used


def lr_lambda(
    schedule: str, warmup: float, total_steps: float, min_ratio: float, time_used: Callable[[], float] | None = None
):
    """Multiplier of the peak learning rate at each optimizer step: linear warm-up, then the decay.

    The decay's progress is the larger of the steps done after warm-up over those planned (``total_steps``) and,
    with a time budget, the share of it used (``time_used()``, 0 to 1). ``total_steps`` may be infinite; with no
    time budget either, decay cannot be planned and the rate stays at its peak after warm-up.
    """
    finite = math.isfinite(total_steps)
    warmup_steps = int(warmup * total_steps) if 0 < warmup < 1 and finite else int(warmup)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant" or not (finite or time_used):
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps) if finite else 0.0
        if time_used is not None:
            progress = max(progress, time_used())
        progress = min(1.0, progress)
        if schedule == "linear":
            return min_ratio + (1 - min_ratio) * (1 - progress)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
