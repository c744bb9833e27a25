"""`enomalism machine console`: the terminal attached to a machine's serial console, as
`virsh console` does: raw mode, Ctrl-] detaches, and a console that drops (the connection,
a migration, a server restart) is opened again by itself."""

import contextlib
import os
import select
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from typing import Any, BinaryIO

from enomalism.client.console import Console, ConsoleClosed

ESCAPE = b"\x1d"  # Ctrl-]
RETRIES = 10  # attempts to open a dropped console again, one a second
FINAL = (4401, 4403, 4404, 4409)  # refusals, and a take-over: opening again would not help
MOVING = 4503  # the machine is migrating: opened again every second, not counted, ...
MOVING_FOR = 120.0  # ... for at most this many seconds


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
    state: dict[str, Any] = {"console": console, "ended": None}
    lock = threading.Lock()

    def output() -> None:
        failures, moving_since = 0, None
        while True:
            con = state["console"]
            try:
                data = con.recv()
                failures, moving_since = 0, None
            except ConsoleClosed as e:
                if state["ended"] is not None:
                    return
                moving = e.code == MOVING  # between hosts: it comes back on the new one
                if moving:
                    moving_since = moving_since or time.monotonic()
                    moving = time.monotonic() - moving_since < MOVING_FOR
                if e.code in FINAL or (failures >= RETRIES and not moving):
                    say(f"\nConsole closed: {e}\n")
                    state["ended"] = 1
                    os.write(wake_w, b"x")
                    return
                failures += 0 if moving else 1
                say(f"\nConsole lost ({e}); opening it again...\n")
                time.sleep(1.0)
                try:
                    with lock:
                        state["console"] = open_console()
                except Exception as err:  # the next recv fails again, counted
                    say(f"\n{err}\n")
                continue
            stdout.write(data)
            stdout.flush()

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
                    _send(state, lock, keys)
                break
            _send(state, lock, keys)
    finally:
        ended = state["ended"]
        state["ended"] = ended if ended is not None else 0
        with lock:
            state["console"].close()
        for fd in (wake_r, wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
    say("\n")
    return int(state["ended"] or 0)


def _send(state: dict, lock: threading.Lock, keys: bytes) -> None:
    with lock:
        con = state["console"]
    try:
        con.send(keys)
    except ConsoleClosed:
        pass  # the output thread reports it and opens the console again


def stdout_bytes() -> BinaryIO:
    return sys.stdout.buffer
