"""docs/errors.md lists every error of src/enomalism/errors.py with its errno and status."""

import re
from pathlib import Path

from enomalism.errors import all_errors

DOC = Path(__file__).parents[2] / "docs" / "errors.md"


def test_every_error_is_documented_with_its_errno_and_status():
    rows = {m[2]: (int(m[0]), int(m[1]))
            for m in re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \|", DOC.read_text(), re.M)}
    documented = {cls.__name__: (cls.errno, cls.status) for cls in all_errors()}
    assert rows == documented


def test_errnos_are_unique():
    errnos = [cls.errno for cls in all_errors()]
    assert len(errnos) == len(set(errnos))
