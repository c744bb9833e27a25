"""`enomalism machine console`: the terminal attached to a machine's serial console, as
`virsh console` does: raw mode, Ctrl-] detaches, and a console that drops (the connection,
a migration, a server restart) is opened again by itself (client/console.py)."""

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from typing import Any, BinaryIO

from enomalism.client.console import Console, ConsoleClosed

ESCAPE = b"\x1d"  # Ctrl-]


def attach(open_console: Callable[[], Console], stdin: int, stdout: BinaryIO,
           say: Callable[[str], None]) -> int:
    """Carry keys from `stdin` (a file descriptor) to the console and its output to
    `stdout` until the escape key, the end of stdin, or a refusal; 0 when the user detached,
    1 when the console was refused or lost for good."""
    raw = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if raw else None
    if raw:
        tty.setraw(stdin)
    try:
        return _loop(open_console, stdin, stdout, say if not raw else
                     lambda m: say(m.replace("\n", "\r\n")))
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _loop(open_console: Callable[[], Console], stdin: int, stdout: BinaryIO,
          say: Callable[[str], None]) -> int:
    console = open_console()
    say("Connected to the console; Ctrl-] detaches.\n")
    state: dict[str, Any] = {"ended": None}

    def output() -> None:
        try:
            while True:
                data = console.recv()  # a dropped console comes back inside (client)
                stdout.write(data)
                stdout.flush()
        except ConsoleClosed as e:
            if state["ended"] is None:
                say(f"\nConsole closed: {e}\n")
                state["ended"] = 1
                os.write(wake_w, b"x")

    wake_r, wake_w = os.pipe()  # the output thread ends the input loop through it
    reader = threading.Thread(target=output, name="console-output", daemon=True)
    reader.start()
    try:
        while state["ended"] is None:
            ready, _, _ = select.select([stdin, wake_r], [], [])
            if wake_r in ready:
                break
            keys = os.read(stdin, 1024)
            if not keys:
                break  # end of input (not a terminal): leave like the escape key
            if ESCAPE in keys:
                keys = keys[:keys.index(ESCAPE)]
                if keys:
                    _send(console, keys)
                break
            _send(console, keys)
    finally:
        ended = state["ended"]
        state["ended"] = ended if ended is not None else 0
        console.close()
        for fd in (wake_r, wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
    say("\n")
    return int(state["ended"] or 0)


def _send(console: Console, keys: bytes) -> None:
    try:
        console.send(keys)
    except ConsoleClosed:
        pass  # the output thread reports it


def stdout_bytes() -> BinaryIO:
    return sys.stdout.buffer
