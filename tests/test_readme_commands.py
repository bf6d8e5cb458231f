"""Every ``python -m lit_lm ...`` command shown in README.md (and docs/*.md) still works, or at least still parses.

Each command, in a code block or an inline code span, is taken as the shell would take it (``\\`` continuations
joined, comments and ``$`` prompts dropped, cut at ``;``/``&&``/``|``), its placeholders replaced through
:data:`SUBSTITUTIONS`, and then, in a fresh working directory that has ``experiments/`` and ``../shared`` as a
clone beside the data has:

- **run** on a tiny budget when everything it reads is here: ``fit``/``validate``/``test`` with
  ``--trainer.fast_dev_run true``; ``tokenizer``/``prepare`` on a few KB of generated text laid out under the
  ``../shared/data/...`` paths they name (a ``prepare`` first runs the command shown before it that writes its
  tokenizer);
- **parsed** only where it needs another run's output (a checkpoint under ``runs/``), data absent here, GPUs, or a
  config that an earlier command already ran: ``--print_config`` for ``fit``/``validate``/``test``/``predict``,
  and for ``tokenizer``/``prepare``/``export`` their own parser, stopped before the command runs;
- ``--help`` commands, and bare command names in the prose, are run with ``--help``.

A command that no longer parses or runs fails with the file and line it is shown at; a new placeholder that the
table does not cover fails too (add a row), so nothing the docs show goes unchecked.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from cli_helpers import ROOT

from lit_lm.cli import main

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHARED = ROOT.parent / "shared"

#: Placeholders in the docs' commands and what stands for them here, applied in order to the text after
#: ``-m lit_lm``. A command left with ``...`` or ``<...>`` after them fails the test: add a row.
SUBSTITUTIONS: list[tuple[str, str]] = [
    # "$ python -m lit_lm predict ... --data.prompts ...": the generation example of the tiny shakespeare GPT
    ("predict ... ", "predict --model lit_lm.tasks.CausalLM --data lit_lm.data.PromptDataModule "
     "--data.tokenizer runs/cpu/gpt_shakespeare/checkpoints/last.ckpt "
     "--ckpt_path runs/cpu/gpt_shakespeare/checkpoints/last.ckpt "),
    ("--config ...", "--config experiments/quickstart/gpt_pretrain.yaml"),  # "fit --config ... --ckpt_path last"
    ("fit ...", "fit --config experiments/quickstart/gpt_pretrain.yaml"),  # "srun python -m lit_lm fit ..."
    ("experiments/<...>.yaml", "experiments/quickstart/gpt_nli.yaml"),
    ("my.yaml", "experiments/quickstart/gpt_pretrain.yaml"),  # "until python -m lit_lm fit --config my.yaml ..."
]  # fmt: skip
PLACEHOLDER = re.compile(r"\.\.\.|<[^<>]*>")
#: Code blocks whose lines are commands to type (run where possible); elsewhere (prose, ``text`` blocks of output)
#: a command is parsed only.
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console", "zsh")

CLI_COMMANDS = ("fit", "validate", "test", "predict")
#: ``python -m lit_lm tokenizer/prepare/export/suite``: lit_lm.commands, a parser over one library function each.
EXTRA_COMMANDS = ("tokenizer", "prepare", "export", "suite")
#: Options whose values are files or folders a command reads, and the settings in a config that are.
INPUT_OPTIONS = ("--config", "--ckpt_path", "--files", "--tokenizer", "--model.init_from", "--data.tokenizer",
                 "--data.files", "--data.train_files", "--data.val_files", "--data.test_files",
                 "--data.extra_train_files")  # fmt: skip
CONFIG_INPUTS = {"model": ("init_from",), "data": ("tokenizer", "files", "train_files", "val_files", "test_files")}
OUTPUT_OPTIONS = ("--out", "--out_dir")


@dataclass
class Command:
    """One command shown in the docs and how this test checks it."""

    source: str  # README.md:<line>
    shown: str  # the text after "-m lit_lm", as shown
    argv: list[str] = field(default_factory=list)
    mode: str = "parse"  # run | parse | help | unhandled
    reason: str = ""  # why it is only parsed, or what is unhandled
    before: list[Command] = field(default_factory=list)  # commands whose output it reads, run first (same mode)
    substitutions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.source}: `python -m lit_lm {self.shown.strip()}`"


# ---------------------------------------------------------------------------------------------- extraction
def _shown_commands(path: Path) -> list[tuple[str, str, bool]]:
    """``(file:line, text after "-m lit_lm", typed)`` for each command in the file's code blocks and inline code;
    ``typed``: a line of a shell code block (what a user types), not a command quoted in prose or in output."""
    found = []
    lines = path.read_text(encoding="utf-8").splitlines()
    block, i = None, 0  # the language of the code block the line is in (None: prose)
    while i < len(lines):
        number, line = i + 1, lines[i]
        fence = re.match(r"\s*(```|~~~)\s*(\w*)", line)
        if fence:
            block = fence.group(2).lower() if block is None else None
        elif block is not None:
            while line.rstrip().endswith("\\") and i + 1 < len(lines):  # a command continued on the next line
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            quoted = [span for span in re.findall(r"`([^`]*)`", line) if "-m lit_lm" in span]
            typed = not quoted and block in SHELL_BLOCKS
            for text in quoted or [line]:
                found += [(f"{path.name}:{number}", after, typed) for after in _after_module(text)]
        else:
            for span in re.findall(r"`([^`]*)`", line):
                found += [(f"{path.name}:{number}", after, False) for after in _after_module(span)]
        i += 1
    return found


def _after_module(text: str) -> list[str]:
    return [text[m.end() :] for m in re.finditer(r"-m lit_lm\b", text)]


def _words(text: str) -> list[str]:
    """The command's words as the shell splits them, up to the first ``;``, ``&&``, ``||``, ``|`` or ``&``."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True  # "#" starts a comment, quotes group, as in sh
    words = []
    for word in lexer:
        if word in (";", "&&", "||", "|", "&"):
            break
        if word.endswith(";"):
            words.append(word[:-1])
            break
        words.append(word)
    return words


# ------------------------------------------------------------------------------------------------- planning
def _option_values(argv: list[str], options: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        name = name.replace(".init_args.", ".")
        if name in options:
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            found += [(name, v) for v in _paths(value)]
    return found


def _paths(value: object) -> list[str]:
    """The paths in an option's value: one, or a YAML list (``'[a, b]'``)."""
    if isinstance(value, str) and value.startswith("["):
        value = yaml.safe_load(value)
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _yaml(config: str) -> dict:
    """A config's settings; ``{}`` for a file that is not there (the command's check then reports it)."""
    path = ROOT / config
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def _config_inputs(configs: list[str], given: set[str]) -> list[str]:
    """The input files the configs name, but for the settings ``given`` on the command line."""
    paths = []
    for config in configs:
        text = _yaml(config)
        for section, keys in CONFIG_INPUTS.items():
            init_args = (text.get(section) or {}).get("init_args") or {}
            paths += [p for key in keys if f"--{section}.{key}" not in given for p in _paths(init_args.get(key))]
    return paths


def _here(path: str, tiny_data: bool) -> bool:
    """Whether ``path`` exists in the test's working directory: ``experiments/`` and ``../shared`` are linked there
    (``../shared/data`` is generated text for tokenizer/prepare); nothing else is, ``runs/`` in particular."""
    if Path(path).is_absolute():
        return Path(path).exists()
    if path.startswith("../shared/"):
        return tiny_data or (ROOT / path).exists()
    return path.split("/")[0] == "experiments" and (ROOT / path).exists()


def _needs_gpus(configs: list[str], argv: list[str]) -> bool:
    trainer = {}
    for config in configs:
        trainer.update(_yaml(config).get("trainer") or {})
    for i, arg in enumerate(argv):  # typed settings win
        name, eq, value = arg.partition("=")
        if name.startswith("--trainer.") and (eq or i + 1 < len(argv)):
            trainer[name.removeprefix("--trainer.")] = yaml.safe_load(value if eq else argv[i + 1])
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    many = (isinstance(devices, int) and devices > 1) or (isinstance(nodes, int) and nodes > 1)
    return str(trainer.get("accelerator", "")) in ("gpu", "cuda") or many


def _plan(
    source: str, shown: str, earlier: list[Command], configs_run: set[tuple[str, ...]], typed: bool = True
) -> Command:
    """How to check one command: its words after :data:`SUBSTITUTIONS`, and whether it runs here (``typed``: shown
    as a command to type, not quoted in prose or output, which is parsed only)."""
    command = Command(source, shown)
    text = shown.strip()
    for placeholder, stand_in in SUBSTITUTIONS:
        if placeholder in text:
            text = text.replace(placeholder, stand_in)
            command.substitutions.append(placeholder)
    try:
        argv = _words(text)
    except ValueError as e:  # an unclosed quote
        command.mode, command.reason = "unhandled", f"cannot split it as the shell would: {e}"
        return command
    command.argv = argv
    left = [w for w in argv if PLACEHOLDER.search(w)]
    if left:
        command.mode = "unhandled"
        command.reason = f"placeholder {left[0]!r}: add a row for it to SUBSTITUTIONS in {Path(__file__).name}"
        return command
    if not argv or argv[0] not in (*CLI_COMMANDS, *EXTRA_COMMANDS):
        command.mode = "unhandled"
        command.reason = f"unknown command {argv[:1]}: teach {Path(__file__).name} how to check it"
        return command
    if len(argv) == 1 or any(w in ("-h", "--help") or w.endswith(".help") for w in argv):
        command.mode = "help"
        return command
    extra = argv[0] in EXTRA_COMMANDS
    inputs = _option_values(argv, INPUT_OPTIONS)
    given = {name for name, _ in inputs} | {a.split("=")[0].replace(".init_args.", ".") for a in argv}
    configs = [value for name, value in inputs if name == "--config"]
    paths = [value for name, value in inputs if not (name == "--ckpt_path" and value in ("last", "best", "hpc"))]
    paths += _config_inputs(configs, given)
    reasons = []
    for path in dict.fromkeys(paths):
        if _here(path, tiny_data=extra):
            continue
        writer = _writer_of(path, earlier)
        if extra and writer is not None and writer.mode == "run":
            command.before.append(writer)
        else:
            reasons.append(f"reads {path}, " + ("another run's output" if path.startswith("runs/") else "absent here"))
    ckpt = dict(_option_values(argv, ("--ckpt_path",))).get("--ckpt_path")
    if argv[0] != "fit" and ckpt in ("last", "best"):
        reasons.append(f"--ckpt_path {ckpt}: another run's output")
    if not extra and _needs_gpus(configs, argv):
        reasons.append("needs GPUs")
    if not extra and argv[0] != "predict" and tuple(configs) in configs_run:
        reasons.append("its config already ran above")
    if argv[0] == "suite":  # many fine-tuning runs: tests/test_suite.py runs it on a tiny budget
        reasons.append("fine-tunes a checkpoint on many tasks (run on a tiny budget in tests/test_suite.py)")
    if not typed:
        reasons.append("is quoted in prose or output, not shown as a command to type")
    if reasons:
        command.reason = "; ".join(reasons)
        return command
    command.mode = "run"
    if not extra:
        configs_run.add(tuple(configs))
    return command


def _writer_of(path: str, earlier: list[Command]) -> Command | None:
    """The last command shown before that writes ``path`` (its ``--out``/``--out_dir``)."""
    for command in reversed(earlier):
        if path in [value for _, value in _option_values(command.argv, OUTPUT_OPTIONS)]:
            return command
    return None


def _plans() -> list[Command]:
    planned: list[Command] = []
    configs_run: set[tuple[str, ...]] = set()
    for doc in DOCS:
        for source, shown, typed in _shown_commands(doc):
            planned.append(_plan(source, shown, planned, configs_run, typed))
    return planned


PLANS = _plans()


# ---------------------------------------------------------------------------------------------------- checks
def _work_dir(tmp_path: Path, tiny_data: bool) -> Path:
    """A working directory with ``experiments/`` and ``../shared`` as beside a clone: the real data, or (for
    tokenizer/prepare) folders of generated text under the same names, made by :func:`_tiny_inputs`."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "experiments").symlink_to(ROOT / "experiments")
    if not tiny_data and SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    return work


def _tiny_inputs(command: Command, work: Path) -> None:
    """A few KB of generated text at each ``../shared/data/...`` path the command reads (a file or a folder)."""
    text = _tiny_text()
    for _, path in _option_values(command.argv, INPUT_OPTIONS):
        if path.startswith("../shared/"):
            target = (work / path).resolve()
            target = target if target.suffix else target / "tiny.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def _tiny_text(paragraphs: int = 60) -> str:
    """A few KB of English-like text in paragraphs (blank-line separated documents), the same on every call."""
    rng = random.Random(0)
    people = ["the sailor", "an old woman", "the children", "a farmer", "the king", "my brother", "the cat"]
    verbs = ["saw", "found", "carried", "painted", "lost", "remembered", "followed", "sold"]
    things = ["a lantern", "the red boat", "some bread", "the letters", "a silver key", "the long road"]
    places = ["by the river", "in the morning", "at the market", "under the hill", "before the storm"]
    docs = []
    for _ in range(paragraphs):
        sentences = [
            f"{rng.choice(people).capitalize()} {rng.choice(verbs)} {rng.choice(things)} "
            f"{rng.choice(places)}{rng.choice(['.', '!', '?', '.'])}"
            for _ in range(rng.randint(3, 8))
        ]
        docs.append("\n".join(sentences))
    return "\n\n".join(docs) + "\n"


def _exit_code(argv: list[str]) -> int:
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


class _Parsed(Exception):
    """The command line parsed (raised in place of running the command)."""


def _parse_only(argv: list[str], monkeypatch) -> int:
    """Exit status of parsing ``argv`` as ``python -m lit_lm`` would, without running it."""
    if argv[0] in CLI_COMMANDS:
        return _exit_code([*argv, "--print_config"])
    from lit_lm.cli_parser import LitLMArgumentParser

    parse_args = LitLMArgumentParser.parse_args

    def parse_then_stop(self, *args, **kwargs):  # the command's own parser; what it would run is not run
        parse_args(self, *args, **kwargs)
        raise _Parsed

    monkeypatch.setattr(LitLMArgumentParser, "parse_args", parse_then_stop)
    try:
        return _exit_code(argv)
    except _Parsed:
        return 0
    finally:
        monkeypatch.setattr(LitLMArgumentParser, "parse_args", parse_args)


def _accepts_cache_dir(configs: list[str]) -> bool:
    for config in configs:
        data = _yaml(config).get("data") or {}
        class_path = data.get("class_path", "")
        if "." in class_path:
            module, _, name = class_path.rpartition(".")
            cls = getattr(importlib.import_module(module), name)
            return "cache_dir" in inspect.signature(cls).parameters
    return False


def _run(command: Command, work: Path, cache: Path) -> int:
    if command.argv[0] in EXTRA_COMMANDS:
        _tiny_inputs(command, work)
        return _exit_code(command.argv)
    configs = [v for _, v in _option_values(command.argv, ("--config",))]
    budget = ["--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"]
    if _accepts_cache_dir(configs):
        budget += ["--data.cache_dir", str(cache)]  # tokenizers and prepared corpora shared with other tests
    return _exit_code([*command.argv, *budget])


@pytest.mark.parametrize("command", PLANS, ids=[f"{c.source}-{(c.argv or ['?'])[0]}" for c in PLANS])
def test_readme_command(command: Command, tmp_path, cache, monkeypatch, capsys):
    if command.mode == "unhandled":
        pytest.fail(f"{command}: {command.reason}")
    work = _work_dir(tmp_path, tiny_data=command.argv[0] in EXTRA_COMMANDS)
    monkeypatch.chdir(work)
    argv, how = command.argv, ""
    if command.mode == "help":
        argv = [*argv, "--help"] if len(argv) == 1 else argv
        status = _exit_code(argv)
    elif command.mode == "parse":
        status = _parse_only(argv, monkeypatch)
        parser = "--print_config" if argv[0] in CLI_COMMANDS else "its parser alone"
        how = f", parsed only ({parser}) as it {command.reason}"
    else:
        for earlier in command.before:  # e.g. the tokenizer command whose --out file this prepare reads
            assert _run(earlier, work, cache) == 0, f"{earlier} failed: {capsys.readouterr().err[-2000:]}"
        status = _run(command, work, cache)
        how = " on a tiny budget (fast_dev_run, or generated text for the data paths)"
    err = capsys.readouterr().err
    if status != 0:
        errors = [line for line in err.splitlines() if line.startswith("lit_lm: error:")] or err.splitlines()[-20:]
        pytest.fail(
            f"{command} no longer {'runs' if command.mode == 'run' else 'parses'}; checked as "
            f"`python -m lit_lm {shlex.join(argv)}`{how}; exit status {status}:\n" + "\n".join(errors),
            pytrace=False,
        )


def test_the_docs_show_commands_and_every_substitution_is_used():
    assert len(PLANS) >= 10, [str(c) for c in PLANS]
    used = {s for c in PLANS for s in c.substitutions}
    assert [s for s, _ in SUBSTITUTIONS if s not in used] == [], "remove the rows no command needs"
    assert any(c.mode == "run" for c in PLANS)


def test_the_extraction_takes_commands_as_the_shell_does():
    shown = "fit --config my.yaml --ckpt_path last; do sleep 5; done   # retry"
    assert _words(shown) == ["fit", "--config", "my.yaml", "--ckpt_path", "last"]
    assert _words("predict --data.prompts '[\"a\\n\"]' # comment") == ["predict", "--data.prompts", '["a\\n"]']
    assert _words("test --config a.yaml && python -m lit_lm test") == ["test", "--config", "a.yaml"]
    plan = _plan("x:1", " fit --config experiments/<new>.yaml", [], set())
    assert plan.mode == "unhandled" and "SUBSTITUTIONS" in plan.reason
    plan = _plan("x:1", " fit --config experiments/cpu/snli_from_gpt.yaml", [], set())
    assert plan.mode == "parse" and "runs/cpu/gpt_gutenberg/checkpoints/last.ckpt" in plan.reason


@pytest.mark.parametrize(
    ("shown", "error"),
    [
        (" validate --config experiments/quickstart/gpt_pretrain.yaml --ckpt_path runs/x/last.ckpt --data.bad_key 1",
         "bad_key"),
        (" tokenizer --files ../corpus --vocab_sise 300 --out tok.json", "vocab_sise"),
    ],
)  # fmt: skip
def test_a_command_that_no_longer_parses_fails_with_its_line(shown, error, tmp_path, cache, monkeypatch, capsys):
    command = _plan("README.md:7", shown, [], set())
    assert command.mode == "parse", command.reason
    with pytest.raises(pytest.fail.Exception) as failure:
        test_readme_command(command, tmp_path, cache, monkeypatch, capsys)
    message = str(failure.value)
    assert message.startswith(f"README.md:7: `python -m lit_lm {shown.strip()}` no longer parses"), message
    assert re.search(rf"\nlit_lm: error: .*{error}", message), message
