"""``python -m lit_lm``: LightningCLI for every task and DataModule, plus ``tokenizer`` and ``prepare``.

    python -m lit_lm fit --config experiments/quickstart/gpt_pretrain.yaml
    python -m lit_lm fit --config experiments/quickstart/gpt_nli.yaml
    python -m lit_lm fit --config ... --ckpt_path last          # resume the run in trainer.default_root_dir
    python -m lit_lm fit --config ... --checkpoint_every_n_steps 500 --checkpoint_every_n_minutes 30
    python -m lit_lm tokenizer --files corpus/ --vocab_size 30000 --out tok.json
    python -m lit_lm prepare --files corpus/ --tokenizer tok.json --out_dir data/prepared
    python -m lit_lm export --ckpt_path runs/x/checkpoints/best.ckpt --out hf/x
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from lit_lm import console, prerequisites, serialization
from lit_lm._lightning import HPARAMS_CLASS_PATH_KEY, HPARAMS_INSTANTIATOR_KEY
from lit_lm.callbacks import NaNGuard, TokenThroughputMonitor, progress_bar
from lit_lm.checkpointing import AtomicCheckpointIO, LastCheckpoint, TrainingRNG, resume_command
from lit_lm.cli_parser import LitLMArgumentParser
from lit_lm.errors import CheckpointError, ConfigError, LitLMError
from lit_lm.hardware import PrecisionChoice, detect_precision
from lit_lm.tasks import LMTask

_EXTRA_COMMANDS = {
    "tokenizer": "train a WordPiece (BERT) or byte-level BPE (GPT: --kind bpe) tokenizer: "
    "python -m lit_lm tokenizer --help",
    "prepare": "tokenize a corpus once into memory-mapped arrays: python -m lit_lm prepare --help",
    "export": "write a checkpoint as a Hugging Face directory: python -m lit_lm export --help",
    "suite": "fine-tune a checkpoint on every task, seeds x (pretrained, scratch), and tabulate: "
    "python -m lit_lm suite --help",
}


class LitLMCLI(LightningCLI):
    """LightningCLI with lit_lm's defaults: any :class:`~lit_lm.tasks.LMTask` as ``model`` and any
    LightningDataModule as ``data``; TensorBoard logs and checkpoints (``last.ckpt`` + best by the DataModule's
    ``main_metric``, the highest ``val/<main_metric>``, or else the lowest ``val/loss``) under
    ``trainer.default_root_dir``, so that ``--ckpt_path last`` resumes and a fine-tuning config can name the
    pretraining checkpoint by path.

    Fault tolerance (see :mod:`lit_lm.checkpointing`): checkpoints are written crash-safe
    (:class:`~lit_lm.checkpointing.AtomicCheckpointIO`, unless another CheckpointIO plugin is configured);
    ``last.ckpt`` is kept current (:class:`~lit_lm.checkpointing.LastCheckpoint`: ``--checkpoint_every_n_steps``,
    ``--checkpoint_every_n_minutes``, at the end, and on Ctrl-C/SIGTERM, after which the process exits with status
    128 + the signal number and prints the command that resumes); the training random streams are checkpointed
    (:class:`~lit_lm.checkpointing.TrainingRNG`), so a resumed run continues step-exactly."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self._argv = list(sys.argv[1:] if args is None else args)
        # --trust_checkpoint holds while this CLI instantiates and runs, and no longer (tests run several in a process)
        with contextlib.ExitStack() as self._trust:
            super().__init__(
                model_class=LMTask,
                datamodule_class=L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                parser_class=LitLMArgumentParser,
                parser_kwargs={"parser_mode": "omegaconf"} if _has_omegaconf() else {},
                args=args,
                run=run,
            )

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        parser.argv = self._argv  # for error messages: where in the --config files a bad key is
        return parser

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--trust_checkpoint",
            type=bool,
            default=False,
            help="Read checkpoint files (--ckpt_path, model.init_from, data.tokenizer) with a full unpickler, which "
            "lets a file run code. Only for files whose origin you trust; by default only tensors and plain data are "
            "read (torch.load(weights_only=True)) and a file holding anything else is refused.",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int | None,
            default=None,
            help="Write checkpoints/last.ckpt every N optimizer steps (default, with no interval in minutes "
            "either: at the end of each validation).",
        )
        parser.add_argument(
            "--checkpoint_every_n_minutes",
            type=float | None,
            default=None,
            help="Write checkpoints/last.ckpt when this many minutes of training have passed since the last write "
            "(combines with --checkpoint_every_n_steps).",
        )

    def parse_arguments(self, parser, args) -> None:
        if args is None:
            super().parse_arguments(parser, args)
        else:  # explicit args are this CLI's whole command line (the suite's runs): the process's own argv is not
            # this CLI's, and Lightning's warning about giving both would repeat once per run
            argv, sys.argv = sys.argv, sys.argv[:1]
            try:
                super().parse_arguments(parser, args)
            finally:
                sys.argv = argv
        config = self.config.get(self.config.get("subcommand"), self.config)
        trusted = bool(config.get("trust_checkpoint")) or config.get("weights_only") is False
        self._trust.enter_context(serialization.trust_checkpoints(trusted))
        if trusted:
            config["weights_only"] = False  # Lightning's own load of --ckpt_path

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        trainer = config["trainer"]
        root = Path(trainer.get("default_root_dir") or "runs/default")
        trainer["default_root_dir"] = str(root)
        self._resolve_ckpt_path()
        prerequisites.check_inputs(config)  # a missing input that another config's run writes: name it
        self._use_the_model_tokenizer(config)
        self._precision_choice: PrecisionChoice | None = None
        if trainer.get("precision") is None:  # not set by the config or the command line: the machine's fastest
            accelerator = trainer.get("accelerator")
            self._precision_choice = detect_precision(accelerator if isinstance(accelerator, str) else "auto")
            trainer["precision"] = self._precision_choice.precision
            rank_zero_info(
                f"lit_lm: precision {self._precision_choice.precision} (detected: {self._precision_choice.reason}; "
                "set --trainer.precision to choose)"
            )
        if trainer.get("logger") in (None, True):
            trainer["logger"] = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(root), "name": "tensorboard", "version": ""},
            }

    def _use_the_model_tokenizer(self, config: Any) -> None:
        """One tokenizer per model: a run with a checkpoint (``--ckpt_path``, else ``model.init_from``) reads its data
        with that checkpoint's tokenizer. An unset ``data.tokenizer`` becomes the checkpoint (a lit_lm ``.ckpt``
        stores its tokenizer; a Hugging Face directory holds one), so no new tokenizer is trained for a model that
        is not new; a ``data.tokenizer`` that maps tokens to other ids is refused here, before any data is read."""
        data = config.get("data")
        init_args = getattr(data, "init_args", None)
        if init_args is None or "tokenizer" not in init_args:
            return  # a DataModule without a tokenizer setting
        source = self._model_checkpoint(config)
        if source is None:
            return
        given = init_args.get("tokenizer")
        if given is None:
            init_args["tokenizer"] = source
            rank_zero_info(f"lit_lm: data.tokenizer: the tokenizer of {source}")
            return
        if Path(str(given)).resolve() == Path(source).resolve() or not Path(str(given)).exists():
            return  # the same file; or a missing one, which the DataModule reports
        from lit_lm.data.core.tokenizer import Tokenizer

        lowercase = init_args.get("lowercase")
        try:
            theirs = Tokenizer.from_file(source, lowercase)
        except LitLMError:  # no readable tokenizer in it: loading the model reports what is wrong with the file
            return
        differ = Tokenizer.from_file(given, lowercase=lowercase).difference(theirs)
        if differ is not None:
            raise ConfigError(
                f"data.tokenizer {given} is not the tokenizer of the model in {source} ({differ}); leave "
                "data.tokenizer unset to use the checkpoint's"
            )

    def _model_checkpoint(self, config: Any) -> str | None:
        """The file or directory the model's weights come from: ``--ckpt_path`` (``last`` when resuming a fit: the run
        directory's ``checkpoints/last.ckpt``), else ``model.init_from``; ``None`` for a new model."""
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last" and self.subcommand == "fit":
            ckpt_path = str(Path(config["trainer"]["default_root_dir"]) / "checkpoints" / "last.ckpt")
        if ckpt_path and Path(str(ckpt_path)).is_file():
            return str(ckpt_path)
        model = config.get("model")
        init_from = getattr(model, "init_args", None) or {}
        init_from = init_from.get("init_from") if hasattr(init_from, "get") else None
        return str(init_from) if init_from and Path(str(init_from)).exists() else None

    def _parse_ckpt_path(self) -> None:
        """Lightning fills the model's settings from ``--ckpt_path``'s hyperparameters, over everything parsed before,
        the command line included; keep the ``--model.<name>`` values the user typed (``predict --ckpt_path ...
        --model.max_new_tokens 20`` must generate 20 tokens, not the checkpoint's number)."""
        subcommand = self.config.get("subcommand")
        model = self.config.get(subcommand, {}).get("model") if subcommand else None
        typed = _typed_model_args(self._argv)
        init_args = getattr(model, "init_args", None) or model
        kept = {name: init_args[name] for name in typed if init_args is not None and name in init_args}
        self._parse_ckpt_hparams()
        model = self.config[subcommand]["model"] if subcommand else None
        init_args = getattr(model, "init_args", None) or model
        for name, value in kept.items():
            if init_args is not None and name in init_args:
                init_args[name] = value

    def _parse_ckpt_hparams(self) -> None:
        """Lightning's ``_parse_ckpt_path``, reading the file through :mod:`lit_lm.serialization` (one clear error
        for a bad or unsafe file instead of an unpickling traceback that advises ``weights_only=False``)."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path:
            return
        lightning_forms = ckpt_path in ("last", "best", "hpc") or str(ckpt_path).startswith("registry") or (
            "://" in str(ckpt_path)
        )
        if not lightning_forms and not Path(ckpt_path).exists():  # before the model and data are built from it
            prerequisites.check_inputs({"ckpt_path": ckpt_path})  # another config's output: name that config
            raise CheckpointError(f"{ckpt_path}: checkpoint file not found")
        if not Path(ckpt_path).is_file():  # Lightning's own forms, or a sharded checkpoint directory: Lightning's
            return
        hparams = dict(serialization.read_checkpoint(ckpt_path).get("hyper_parameters") or {})
        hparams.pop(HPARAMS_INSTANTIATOR_KEY, None)
        if not hparams:
            return
        configured = getattr(self.config[subcommand].get("model"), "class_path", None)
        written_by = hparams.get(HPARAMS_CLASS_PATH_KEY)
        if configured and written_by and configured != written_by:
            raise CheckpointError(
                f"{ckpt_path}: written by a {written_by} run, but this config's model is {configured}; pass a "
                f"checkpoint of a {configured.rsplit('.', 1)[-1]} run, or --model {written_by} to use it as it is"
            )
        if HPARAMS_CLASS_PATH_KEY in hparams:
            hparams = {"class_path": hparams.pop(HPARAMS_CLASS_PATH_KEY), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write(f"lit_lm: error: {ckpt_path}: its hyperparameters do not fit this lit_lm version\n")
            raise

    def _resolve_ckpt_path(self) -> None:
        """``--ckpt_path best`` / ``last`` in a new process (validate/test/predict): Lightning only knows the best
        checkpoint of the run in memory, and with no ``last.ckpt`` it evaluates untrained weights after a warning;
        point it at the run directory's ``checkpoints/{best,last}.ckpt``, or end with one line naming that file and
        the ``fit`` command that writes it (:func:`lit_lm.prerequisites.evaluation_checkpoint`)."""
        config = self.config.get(self.subcommand)
        if config is None or self.subcommand == "fit" or config.get("ckpt_path") not in ("best", "last"):
            return
        config["ckpt_path"] = prerequisites.evaluation_checkpoint(config, config["ckpt_path"], self._argv)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config_init.get(self.subcommand, self.config_init)
        trainer_config = config["trainer"]
        root = Path(trainer_config["default_root_dir"])
        # the configured callbacks (--trainer.callbacks) plus ours; kwargs["callbacks"] replaces the configured list
        callbacks = _as_list(kwargs.get("callbacks", trainer_config.get("callbacks")))
        checkpointing = trainer_config.get("enable_checkpointing") is not False
        if checkpointing and not any(isinstance(cb, ModelCheckpoint) for cb in callbacks):
            # the best by the data's main metric (higher is better: val/mcc for CoLA), else by the lowest val/loss
            main_metric = getattr(getattr(self, "datamodule", None), "main_metric", None)
            callbacks.append(
                ModelCheckpoint(
                    dirpath=root / "checkpoints",
                    filename="best",
                    monitor=f"val/{main_metric}" if main_metric else "val/loss",
                    mode="max" if main_metric else "min",
                    save_top_k=1,
                    enable_version_counter=False,  # a fixed name: checkpoints/best.ckpt
                )
            )
            callbacks.append(
                LastCheckpoint(
                    root / "checkpoints",
                    every_n_train_steps=config.get("checkpoint_every_n_steps"),
                    every_n_minutes=config.get("checkpoint_every_n_minutes"),
                    resume_hint=resume_command(self._argv) if self.subcommand == "fit" else None,
                )
            )
        if not any(isinstance(cb, TrainingRNG) for cb in callbacks):
            callbacks.append(TrainingRNG())
        if trainer_config.get("logger") is not False and not any(
            isinstance(cb, LearningRateMonitor) for cb in callbacks
        ):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if trainer_config.get("logger") is not False and not any(
            isinstance(cb, TokenThroughputMonitor) for cb in callbacks
        ):
            callbacks.append(TokenThroughputMonitor())  # tokens/s, samples/s, MFU where the device peak is known
        if not any(isinstance(cb, NaNGuard) for cb in callbacks):
            callbacks.append(NaNGuard())  # a NaN/inf loss stops the run before the update and any checkpoint
        if trainer_config.get("enable_progress_bar") is not False and not any(
            isinstance(cb, ProgressBar) for cb in callbacks
        ):
            callbacks.append(progress_bar())  # "Epoch 3 · step 120/300" where Lightning's shows "Epoch 3/-2"
        kwargs["callbacks"] = callbacks
        plugins = _as_list(kwargs.get("plugins", trainer_config.get("plugins")))
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs["plugins"] = plugins
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        choice = getattr(self, "_precision_choice", None)
        logger = self.trainer.logger
        if choice is not None and logger is not None:  # beside the model's hyperparameters (hparams.yaml)
            params = {"precision": choice.precision, "precision_detected": choice.reason}
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(params, metrics={})  # no hp_metric event before training starts
            else:
                logger.log_hyperparams(params)

    def after_predict(self) -> None:
        if self.trainer.is_global_zero:
            _print_generations(self.trainer.predict_loop.predictions)

    def after_fit(self) -> None:
        trainer = self.trainer
        interrupted = next(
            (cb.interrupted_by for cb in trainer.callbacks if isinstance(cb, LastCheckpoint) and cb.interrupted_by),
            None,
        )
        if interrupted is not None:  # LastCheckpoint printed where the checkpoint is and how to resume
            raise SystemExit(128 + int(interrupted))
        if trainer.is_global_zero:  # why training stopped, the final metrics, logs and the checkpoints on disk
            log_dir = trainer.logger.log_dir if isinstance(trainer.logger, TensorBoardLogger) else None
            print(console.fit_report(trainer, log_dir), flush=True)

    def before_fit(self) -> None:
        self.trainer.callbacks.append(console.FinalMetrics())  # the last validation's metrics, for after_fit

    def before_validate(self) -> None:
        """lit_lm prints the results (:meth:`after_validate`) in place of Lightning's table, if ``--verbose``."""
        config = self.config_init[self.subcommand]
        self._print_results = bool(config.get("verbose", True))
        config["verbose"] = False

    def after_validate(self) -> None:
        if getattr(self, "_print_results", False) and self.trainer.is_global_zero:
            print(console.evaluation_report(self.trainer, self.subcommand), flush=True)

    before_test = before_validate
    after_test = after_validate


def _typed_model_args(argv: list[str]) -> list[str]:
    """Names of the model settings given on the command line: ``--model.x`` / ``--model.init_args.x`` (``=v`` too)."""
    names = []
    for arg in argv:
        key = arg.split("=", 1)[0]
        if key.startswith("--model.") and key != "--model.help":
            name = key.removeprefix("--model.").removeprefix("init_args.").split(".", 1)[0]
            if name not in ("class_path", "init_args") and name not in names:
                names.append(name)
    return names


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def _print_generations(predictions: object) -> None:
    """Print the texts a CausalLM ``predict`` produced (``predict_step`` returns ``{"text": [...]}`` per batch)."""
    batches = predictions if isinstance(predictions, list) else []
    for batch in batches:
        if isinstance(batch, dict):
            for text in batch.get("text", []):
                print(f"\n>>> {text}", flush=True)


def user_error(exc: BaseException) -> BaseException | None:
    """lit_lm's own error behind ``exc`` (jsonargparse wraps errors raised while instantiating classes)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LitLMError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m lit_lm`` and the ``lit_lm`` script.

    Bad settings, data or checkpoints end the run with ``lit_lm: error: <what, where, what to do>`` and exit
    status 2, not a traceback.
    """
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _EXTRA_COMMANDS:
        from lit_lm import commands

        main_of = {"tokenizer": commands.tokenizer_main, "prepare": commands.prepare_main,
                   "export": commands.export_main, "suite": commands.suite_main}  # fmt: skip
        raise SystemExit(main_of[argv[0]](argv[1:]))
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("Data commands:\n" + "\n".join(f"  {k:10s} {v}" for k, v in _EXTRA_COMMANDS.items()) + "\n")
    try:
        with console.quiet(argv[0] if argv else None):  # Lightning's known noise, for this command only
            LitLMCLI(args=argv if explicit else None)
    except Exception as e:
        error = user_error(e)
        if error is None:
            raise
        print(f"lit_lm: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
