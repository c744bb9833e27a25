"""How the client names objects: a UUID, a name (or another identifier such as a URL), or a
unique UUID prefix; the same rules as the `enomalism` command's."""

import typing
import uuid as uuidlib
from collections.abc import Callable, Iterable
from urllib.parse import quote

from enomalism.client.errors import AmbiguousError, NotFoundError

T = typing.TypeVar("T")


def is_uuid(ref: str) -> bool:
    try:
        uuidlib.UUID(ref)
        return True
    except (ValueError, TypeError, AttributeError):
        return False


def pick(kind: str, ref: str, items: typing.Sequence[T], uuid_of: Callable[[T], str],
         names_of: Callable[[T], Iterable[str]], describe: Callable[[T], str]) -> T:
    """The one item `ref` names: its UUID, else its name (or another identifier `names_of`
    gives, such as a URL), else a unique UUID prefix. Unknown: `NotFoundError` (errno 1200);
    ambiguous: `AmbiguousError` (errno 1000) listing the candidates."""
    r = ref.strip()
    low = r.lower()
    exact = [i for i in items if uuid_of(i).lower() == low]
    if exact:
        return exact[0]
    for found in ([i for i in items if r in names_of(i)],
                  [i for i in items if low and uuid_of(i).lower().startswith(low)]):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            listing = "\n".join(f"  {describe(i)}" for i in found)
            raise AmbiguousError(f"'{ref}' is ambiguous: it matches {len(found)} {kind}s:\n"
                                 f"{listing}\nname one by its UUID (or a longer prefix)",
                                 [uuid_of(i) for i in found])
    raise NotFoundError(0, 1200, f"no {kind} named '{ref}' or with an id starting with it")


def path_id(value: str) -> str:
    """An id or address as one path segment (never a way to reach another path)."""
    return quote(str(value), safe=":")
