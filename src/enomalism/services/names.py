"""The name rules, one place for every service that takes a name (a machine's, a host's, a
network's, a cluster's, a user's, a group's, an image's): the same name is refused or taken
the same way whichever request carries it."""

import re
from dataclasses import dataclass

from enomalism.errors import InvalidInput
from enomalism.services.lookup import require

# Names that become part of file names (volumes, packages) or principals: a safe alphabet.
ACCOUNT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Rule:
    what: str  # "machine", ... for the message
    pattern: re.Pattern[str] | None = None  # the whole name must match it, or:
    max_length: int = 255
    no_slash: bool = False  # a machine's volumes are named after it
    no_leading_dot: bool = False

    def describe(self) -> str:
        a = "an" if self.what[0] in "aeiou" else "a"
        if self.pattern is not None:
            return (f"{a} {self.what} name has 1 to 64 letters, digits or . _ @ - and starts "
                    "with a letter or digit")
        rules = [f"at most {self.max_length} characters", "no control characters"]
        if self.no_slash:
            rules.append("no '/'")
        if self.no_leading_dot:
            rules.append("no leading '.'")
        return f"{a} {self.what} name has " + ", ".join(rules[:-1]) + " and " + rules[-1]

    def fits(self, name: str) -> bool:
        if self.pattern is not None:
            return self.pattern.fullmatch(name) is not None
        return not (len(name) > self.max_length or _CONTROL.search(name)
                    or (self.no_slash and "/" in name)
                    or (self.no_leading_dot and name.startswith(".")))


MACHINE = Rule("machine", no_slash=True, no_leading_dot=True)  # VMs and hosts
NETWORK = Rule("network")
CLUSTER = Rule("cluster")
USER = Rule("user", ACCOUNT_RE)
GROUP = Rule("group", ACCOUNT_RE)
IMAGE = Rule("image", ACCOUNT_RE)
PACKAGE = Rule("package", ACCOUNT_RE)  # a package made here (from an image)


def check(rule: Rule, value: str | None, *, variable: str = "name", why: str = "") -> str:
    """The name of a request's variable, stripped of surrounding blanks; MissingVariable when
    there is none, InvalidInput (errno 1000) when `rule` refuses it."""
    return ensure(rule, require(value, variable, why))


def ensure(rule: Rule, name: str) -> str:
    """`name` as it is (a domain's <name>, say), or InvalidInput when `rule` refuses it."""
    if not rule.fits(name):
        raise InvalidInput(f"{name[:80]!r} is not a usable name: {rule.describe()}")
    return name
