"""Stored rows as the answers show them: one module per area, each function keyword-only.

Handlers (`api/`) call these and get plain dicts (the keys of `wire.py`'s models), so no
handler holds a row of `store.models` or touches the request's session: the reads, and the
`flush` that puts a change's database defaults into the answer, happen here.
"""
