"""The command line's argument parser: Lightning's, with parse errors shortened to one line that names the bad
option or value, the nearest valid name (``difflib``) and where ``--help`` lists them, instead of the whole usage
and jsonargparse's nested report."""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser


class LitLMArgumentParser(LightningArgumentParser):
    """Lightning's parser, with errors shortened to one line (see the module docstring)."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse probing a sub-parser: it catches the exception itself
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        line = _short_parse_error(message, parser, getattr(self, "argv", None) or [])
        sys.stderr.write(f"lit_lm: error: {line}\n")
        raise SystemExit(2)


_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _option_names(parser: Any) -> list[str]:
    """Every dotted option name the parser accepts (``trainer.max_steps``, ``model``, ...)."""
    try:
        return list(parser.get_defaults().keys())
    except Exception:  # a parser that cannot even build its defaults: no suggestions, the message still stands
        return []


def _class_option_names(class_path: str, prefix: str) -> list[str]:
    """``<prefix>.<name>`` for every ``__init__`` argument of the class at ``class_path`` (its parents' too)."""
    from jsonargparse import ArgumentParser
    from jsonargparse.typing import import_object

    try:
        probe = ArgumentParser(exit_on_error=False)
        probe.add_class_arguments(import_object(class_path), prefix, fail_untyped=False)
        return list(probe.get_defaults().keys())
    except Exception:
        return []


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not close and "." in name:  # compare the last part alone: trainer.max_stepz ~ max_steps
        tails = {c.rsplit(".", 1)[-1]: c for c in candidates if c.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]}
        close = [tails[m] for m in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(tails), n=1)]
    return f"; did you mean --{close[0]}?" if close else ""


def _config_location(key: str, argv: list[str]) -> str:
    """`` at <file>:<line>`` of the first ``--config`` file that sets the dotted ``key`` (``init_args`` levels and
    list items skipped), or ``""``. Block-style YAML as the shipped configs are written; nothing else is parsed."""
    files = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    wanted = key.split(".")
    mapping_key = re.compile(r"^(?P<indent>\s*)(?P<name>[\w.-]+)\s*:")
    for file in files:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
        for number, line in enumerate(lines, 1):
            m = mapping_key.match(line)
            if m is None or line.lstrip().startswith("#"):
                continue
            indent = len(m["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, m["name"]))
            if [k for _, k in stack if k != "init_args"] == wanted:
                return f" at {file}:{number}"
    return ""


def _short_parse_error(message: str, parser: Any, argv: list[str] = ()) -> str:
    """One line for jsonargparse's error ``message``: what is wrong, the close valid name, where help is."""
    words = str(getattr(parser, "prog", "")).split()
    subcommand = next((w for w in reversed(words) if w in _SUBCOMMANDS), None)
    command = " ".join(words) if words[:3] == ["python", "-m", "lit_lm"] else (
        f"python -m lit_lm {subcommand}" if subcommand else "python -m lit_lm"
    )
    help_hint = f"(`{command} --help` lists the options)"
    outer = re.search(r'Parser key "([\w.]+)":', message)
    class_path = re.search(r"Problem with given class_path '([\w.]+)':", message)
    prefix = outer.group(1) if outer else ""
    if class_path:  # an init argument of the model/data class: the inner message names it without the prefix
        candidates = _class_option_names(class_path.group(1), prefix)
        inner = message[class_path.end() :]
        option = re.search(r"Option '([\w.]+)' is not accepted", inner)
        if option:
            key = f"{prefix}.{option.group(1)}"
            where = _config_location(key, argv) if f"--{key}" not in " ".join(argv) else ""
            return f"unknown option --{key} for {class_path.group(1)}{where}{_suggest(key, candidates)} {help_hint}"
        typed = re.search(r'Parser key "([\w.]+)":\s*(.+)', inner)
        if typed:
            problem = _type_problem(typed.group(2), inner[typed.start() :])
            return f"--{prefix}.{typed.group(1)}: {problem} {help_hint}"
    unknown = re.search(r"unrecognized arguments: (.+)", message)
    if unknown:
        keys = [t[2:].split("=", 1)[0] for t in unknown.group(1).split() if t.startswith("--")]
        if keys:
            candidates = _option_names(parser)
            parts = [f"--{k}{_suggest(k, candidates)}" for k in keys]
            return f"unknown option {', '.join(parts)} {help_hint}"
    not_accepted = re.search(r"does not accept option '([\w.]+)'", message) or re.search(
        r"Key '([\w.]+)' is not expected", message
    )
    if not_accepted:
        key = not_accepted.group(1)
        where = _config_location(key, argv)
        return f"unknown config key '{key}'{where}{_suggest(key, _option_names(parser))} {help_hint}"
    if outer:
        rest = message[outer.end() :].strip()
        return f"--{prefix}: {_type_problem(rest.splitlines()[0] if rest else '', rest)} {help_hint}"
    first = next((line.strip() for line in message.splitlines() if line.strip()), message)
    return f"{first} {help_hint}"


def _type_problem(first_line: str, text: str) -> str:
    """``expected int, got 'abc'`` from jsonargparse's ``Expected a <class 'int'>. Got value: abc`` (and from its
    report on a union: ``Subtypes: [...]`` ... ``Given value: ...``)."""
    m = re.search(r"Expected an? (.+?)\. Got value: (.*)", text)
    if m:
        return f"expected {_type_name(m.group(1))}, got {m.group(2).strip()!r}"
    subtypes = re.search(r"Subtypes: \[(.*)\]\n", text)
    given = re.search(r"Given value: (.*)", text)
    if subtypes and given:
        names = [_type_name(t) for t in _split_top_level(subtypes.group(1))]
        return f"expected {' or '.join(dict.fromkeys(names))}, got {given.group(1).strip()!r}"
    return first_line.strip().rstrip(".")


def _type_name(annotation: str) -> str:
    """A readable name for a type as jsonargparse prints it: ``int``, ``one of 'a', 'b'``, ``null``, ``dict``."""
    annotation = annotation.strip()
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(.*)\]", annotation)
    if literal:
        return "one of " + literal.group(1)
    cls = re.fullmatch(r"<class '([\w.]+)'>", annotation)
    name = cls.group(1) if cls else re.sub(r"\[.*", "", annotation)
    return {"NoneType": "null"}.get(name, name.removeprefix("typing.").removeprefix("builtins."))


def _split_top_level(text: str) -> list[str]:
    """Split ``a[b, c], d`` at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in (*parts, current) if p.strip()]
