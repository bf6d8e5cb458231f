"""Every private Lightning member lit_lm relies on, in one place.

Lightning may rename, drop or re-sign underscore names in any release. lit_lm imports them from here only, and lists
here the private methods and attributes of the Lightning classes it subclasses, so that
``tests/test_lightning_compat.py`` checks all of them against the installed Lightning: an upgrade that breaks one
fails there, naming the member, instead of somewhere inside a training run.

Class names are given as ``"module:Class"`` strings so that importing this module does not import
``lightning.pytorch.cli`` (and with it jsonargparse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.fabric.connector import _convert_precision_to_unified_args
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

if TYPE_CHECKING:
    import lightning as L

__all__ = [
    "CALLED_PRIVATE_METHODS",
    "CKPT_HPARAMS_PRIVATE_KEYS",
    "HPARAMS_CLASS_PATH_KEY",
    "HPARAMS_INSTANTIATOR_KEY",
    "OVERRIDDEN_PRIVATE_METHODS",
    "PRIVATE_ATTRIBUTES",
    "attached_trainer",
    "is_local_path",
    "rich_available",
    "unified_precision",
]

#: ``is_local_path(path)``: True for a plain or ``file://`` path, False for ``s3://`` and other fsspec protocols.
is_local_path = _is_local_file_protocol

#: ``unified_precision(precision)``: the name the Trainer gives a precision setting (``32`` -> ``"32-true"``,
#: ``"bf16"`` -> ``"bf16-mixed"``; ``str(trainer.precision)``); ValueError for an unknown one.
unified_precision = _convert_precision_to_unified_args


def rich_available() -> bool:
    """Whether ``rich`` is installed in a version Lightning's ``RichProgressBar`` supports."""
    return bool(_RICH_AVAILABLE)


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer ``module`` is attached to, or None (the public ``module.trainer`` raises when there is none)."""
    return module._trainer


#: Private methods of Lightning classes that lit_lm overrides, so Lightning calls ours: (Lightning class, method,
#: parameter names, the lit_lm class that overrides it). A rename would silently bypass the override.
OVERRIDDEN_PRIVATE_METHODS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("lightning.pytorch.callbacks:RichProgressBar", "_get_train_description", ("self", "current_epoch"),
     "lit_lm.callbacks:BudgetRichProgressBar"),
    ("lightning.pytorch.cli:LightningCLI", "_parse_ckpt_path", ("self",), "lit_lm.cli:LitLMCLI"),
)  # fmt: skip

#: Private methods lit_lm's subclasses call on themselves: (Lightning class, method, parameter names).
#: Used by :class:`lit_lm.checkpointing.LastCheckpoint`.
CALLED_PRIVATE_METHODS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_should_skip_saving_checkpoint", ("self", "trainer")),
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_save_last_checkpoint", ("self", "trainer", "monitor_candidates")),
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_monitor_candidates", ("self", "trainer")),
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_should_save_on_train_epoch_end", ("self", "trainer")),
)

#: Private instance attributes lit_lm reads: (Lightning class, attribute). ``LastCheckpoint`` reads the first two
#: on itself; :func:`attached_trainer` reads the last.
PRIVATE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_last_global_step_saved"),
    ("lightning.pytorch.callbacks:ModelCheckpoint", "_every_n_epochs"),
    ("lightning.pytorch:LightningModule", "_trainer"),
)

#: Keys LightningCLI adds to a checkpoint's ``hyper_parameters`` (the model's class path, and the instantiator that
#: is no hyperparameter) and reads back in ``LightningCLI._parse_ckpt_path``; ``lit_lm.cli`` reads them too.
HPARAMS_CLASS_PATH_KEY = "_class_path"
HPARAMS_INSTANTIATOR_KEY = "_instantiator"
CKPT_HPARAMS_PRIVATE_KEYS: tuple[str, ...] = (HPARAMS_CLASS_PATH_KEY, HPARAMS_INSTANTIATOR_KEY)
