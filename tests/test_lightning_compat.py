"""The private Lightning members lit_lm relies on (all gathered in :mod:`lit_lm._lightning`) still exist, with the
signatures lit_lm expects, in the installed Lightning. A failure names the member and the Lightning version: adapt
``lit_lm/_lightning.py`` and the code that uses the member, or pin Lightning below that version."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType
from typing import Any

import lightning as L
import pytest

VERSION = L.__version__


def _compat() -> ModuleType:
    try:
        return importlib.import_module("lit_lm._lightning")
    except ImportError as e:  # an imported private name is gone
        pytest.fail(f"lit_lm._lightning no longer imports with lightning {VERSION}: {e}")


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _parameters(fn: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(fn).parameters)


def _ids(entries: tuple[tuple[Any, ...], ...]) -> list[str]:
    return [f"{entry[0].split(':')[1]}.{entry[1]}" for entry in entries]


_lit = _compat()


def test_imported_private_functions_behave_as_lit_lm_expects():
    assert _parameters(_lit.is_local_path) == ("path",), (
        f"lightning {VERSION}: lightning.fabric.utilities.cloud_io._is_local_file_protocol(path) changed its "
        f"signature to {inspect.signature(_lit.is_local_path)}"
    )
    assert _lit.is_local_path("/tmp/x.ckpt") and _lit.is_local_path("file:///tmp/x.ckpt"), (
        f"lightning {VERSION}: _is_local_file_protocol no longer treats plain paths as local"
    )
    assert not _lit.is_local_path("s3://bucket/x.ckpt"), (
        f"lightning {VERSION}: _is_local_file_protocol treats s3:// as local"
    )
    assert [_lit.unified_precision(p) for p in (32, "32", "bf16", "bf16-mixed")] == ["32-true", "32-true",
                                                                                  "bf16-mixed", "bf16-mixed"], (
        f"lightning {VERSION}: _convert_precision_to_unified_args no longer gives the Trainer's precision names"
    )
    assert isinstance(_lit.rich_available(), bool), (
        f"lightning {VERSION}: lightning.pytorch.utilities.imports._RICH_AVAILABLE is no longer a boolean flag"
    )


def test_attached_trainer_reads_lightning_modules_private_trainer():
    module = L.LightningModule()
    assert _lit.attached_trainer(module) is None, (
        f"lightning {VERSION}: LightningModule._trainer is not None on a module without a Trainer"
    )
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    assert _lit.attached_trainer(module) is trainer, (
        f"lightning {VERSION}: LightningModule.trainer no longer stores the Trainer in LightningModule._trainer"
    )


@pytest.mark.parametrize(
    ("lightning_class", "method", "parameters", "ours"),
    _lit.OVERRIDDEN_PRIVATE_METHODS,
    ids=_ids(_lit.OVERRIDDEN_PRIVATE_METHODS),
)
def test_overridden_private_methods_keep_their_signature(lightning_class, method, parameters, ours):
    cls = _resolve(lightning_class)
    where = f"{lightning_class.replace(':', '.')}.{method}"
    assert callable(getattr(cls, method, None)), (
        f"lightning {VERSION}: {where} is gone, so the override in {ours.replace(':', '.')} is never called"
    )
    assert _parameters(getattr(cls, method)) == parameters, (
        f"lightning {VERSION}: {where} changed its signature to {inspect.signature(getattr(cls, method))}; "
        f"lit_lm's override in {ours.replace(':', '.')} expects {parameters}"
    )


@pytest.mark.parametrize(
    ("lightning_class", "method", "parameters", "ours"),
    _lit.OVERRIDDEN_PRIVATE_METHODS,
    ids=_ids(_lit.OVERRIDDEN_PRIVATE_METHODS),
)
def test_our_overrides_match_the_listed_signature(lightning_class, method, parameters, ours):
    cls = _resolve(ours)
    assert method in vars(cls), f"{ours} no longer overrides {method}: remove it from OVERRIDDEN_PRIVATE_METHODS"
    assert issubclass(cls, _resolve(lightning_class))
    assert _parameters(vars(cls)[method]) == parameters


@pytest.mark.parametrize(
    ("lightning_class", "method", "parameters"),
    _lit.CALLED_PRIVATE_METHODS,
    ids=_ids(_lit.CALLED_PRIVATE_METHODS),
)
def test_called_private_methods_keep_their_signature(lightning_class, method, parameters):
    cls = _resolve(lightning_class)
    where = f"{lightning_class.replace(':', '.')}.{method}"
    assert callable(getattr(cls, method, None)), f"lightning {VERSION}: {where}, which lit_lm calls, is gone"
    assert _parameters(getattr(cls, method)) == parameters, (
        f"lightning {VERSION}: {where} changed its signature to {inspect.signature(getattr(cls, method))}; "
        f"lit_lm calls it with {parameters[1:]}"
    )


@pytest.mark.parametrize(("lightning_class", "attribute"), _lit.PRIVATE_ATTRIBUTES, ids=_ids(_lit.PRIVATE_ATTRIBUTES))
def test_private_attributes_still_exist(lightning_class, attribute):
    instance = _resolve(lightning_class)()
    assert hasattr(instance, attribute), (
        f"lightning {VERSION}: {lightning_class.replace(':', '.')} instances no longer have {attribute!r}, "
        "which lit_lm reads"
    )


def test_lightning_cli_still_reads_its_private_checkpoint_hparams_keys():
    from lightning.pytorch.cli import LightningCLI

    source = inspect.getsource(LightningCLI._parse_ckpt_path)
    for key in _lit.CKPT_HPARAMS_PRIVATE_KEYS:
        assert repr(key) in source or f'"{key}"' in source, (
            f"lightning {VERSION}: LightningCLI._parse_ckpt_path no longer handles the checkpoint hyperparameter "
            f"{key!r}; lit_lm.cli's override reads it the same way and needs updating"
        )
