"""One owner of the unit of work (issue 15): a request's session commits at its end in
api/deps.py; every earlier commit and every choice by SQL dialect is a named operation of
store/unit.py. Services, the runtime and the API never call `commit()` nor look at the dialect."""

import re
from pathlib import Path

import enomalism

SRC = Path(enomalism.__file__).parent
CHECKED = ("services", "runtime", "api")
ALLOWED = {SRC / "api" / "deps.py"}  # the request's end (`commit_request`)
# `.commit()` of a session or a DBAPI connection (a file part's `commit(dest)` is not one).
FORBIDDEN = re.compile(r"\.commit\(\s*\)|dialect")


def offending_lines() -> list[str]:
    found = []
    for folder in CHECKED:
        for path in sorted((SRC / folder).rglob("*.py")):
            if path in ALLOWED:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if FORBIDDEN.search(line):
                    found.append(f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}")
    return found


def test_no_commit_or_dialect_outside_the_unit_of_work():
    found = offending_lines()
    assert not found, (
        "commit or dialect outside store/unit.py and api/deps.py; use a named operation of "
        "store.unit (commit_before_slow_work, keep_now, serialize, autocommit) or "
        "api.deps.commit_request:\n" + "\n".join(found))


def test_the_guard_sees_a_commit():
    assert FORBIDDEN.search("        ctx.db.commit()")
    assert FORBIDDEN.search("if s.get_bind().dialect.name == 'postgresql':")
    assert not FORBIDDEN.search("part.commit(dest)")
