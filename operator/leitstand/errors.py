"""Errors that mean the user must change something, not that Leitstand is broken.

A ``UserError`` is printed by the CLI as one line (what is wrong and how to fix
it) with a non-zero exit code, never as a traceback. Raise it only where the
message can name the fix.
"""

from pathlib import Path
from typing import Any

import yaml


class UserError(Exception):
    """A mistake or a missing prerequisite on the user's side; ``str()`` is the whole message."""

    exit_code = 2


def yaml_problem(error: Exception) -> str:
    """A YAML parser error in one line: the problem and where (PyYAML's own text spans several lines)."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or "not valid YAML"
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def read_yaml(path: Path, what: str = "", *, documents: bool = False) -> Any:
    """``path`` parsed as YAML (its non-empty documents, with ``documents``); a ``UserError`` naming
    ``what`` (such as "configuration") and the path when the file cannot be read or parsed."""
    subject = f"{what} {path}" if what else str(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {subject}: {error.strerror}") from None
    try:
        if documents:
            return [document for document in yaml.safe_load_all(text) if document]
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{subject} is not valid YAML: {yaml_problem(error)}") from None
