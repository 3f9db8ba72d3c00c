"""The sessiond worker: hosts the session's persistent IPython interpreter.

Started by sessiond_agent.py, which owns the host channel. The worker lives in
its own process so a cell that hangs, crashes or ignores interrupts can be
killed without losing the channel. Its fd 1 and 2 are pipes read by the agent,
so output of subprocesses and C extensions is captured too. Control messages
travel over a private socket using the agent's framing:

  agent  -> worker  {"type":"execute","code":S,"sentinel":S}
  worker -> agent   {"type":"ready","preloadErrors":[S]}   once, when warm
                    {"type":"done","status":"ok"|"error","result":ANY,
                     "interrupted":B,"exiting":B}

After each cell the worker writes the sentinel to fd 1 and fd 2 before sending
"done", so the agent knows where the cell's output ends on each pipe.
"""

import argparse
import ast
import ctypes
import importlib
import io
import math
import os
import signal
import sys

# The agent may run from a read-only or shared tree: leave no __pycache__ there.
sys.dont_write_bytecode = True
from sessiond_framing import FrameReader, encode_frame, read_frame_blocking, write_all
sys.dont_write_bytecode = False  # user code behaves as usual

def _ignore_interrupt(signum, frame):
    # Between cells an interrupt meant for a cell that has just finished must
    # not break the worker's loop.
    pass


def _libc():
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _die_with_parent(libc, parent_pid):
    # Without this a worker stuck in a cell outlives a SIGKILLed agent.
    if libc is not None:
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _direct_stdio():
    # Line buffering keeps print() output in order with output written to the
    # same fds by subprocesses; the rest is flushed after every cell.
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)
        setattr(sys, name, stream)
        setattr(sys, "__" + name + "__", stream)


def _flush_all(libc):
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    if libc is not None:
        libc.fflush(None)  # printf() from C extensions


def _make_shell():
    from IPython.core.displayhook import DisplayHook
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class CapturingDisplayHook(DisplayHook):
        """Keeps the last expression's text/plain form instead of printing
        an Out[n] prompt."""

        def reset(self):
            self.text = None
            self.saw_none = False

        def __call__(self, result=None):
            if result is None and not self.quiet():
                self.saw_none = True
            super().__call__(result)

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self.text = format_dict.get("text/plain")

        def finish_displayhook(self):
            pass

    class WorkerShell(InteractiveShell):
        displayhook_class = CapturingDisplayHook

        def ask_exit(self):
            # exit() ends this interpreter once the cell is done; the agent
            # starts a fresh one, as a notebook restarts its kernel.
            self.exit_now = True

        def _showtraceback(self, etype, evalue, stb):
            # The base shell prints tracebacks to stdout; Azure reports them in stderr.
            print(self.InteractiveTB.stb2text(stb), file=sys.stderr)

    config = Config()
    config.InteractiveShell.colors = "NoColor"
    # HOME may be read-only or a tmpfs: keep history in memory.
    config.HistoryManager.hist_file = ":memory:"
    return WorkerShell.instance(config=config)


def _ends_with_call(shell, code):
    """True if the cell's last statement is a bare call such as print(x).

    A call evaluating to None reads as a statement, so the cell's result is
    "", while a trailing name or constant that is None gives null."""
    try:
        tree = ast.parse(shell.transform_cell(code))
    except Exception:
        return False
    return bool(tree.body) and isinstance(tree.body[-1], ast.Expr) \
        and isinstance(tree.body[-1].value, (ast.Call, ast.Await))


# Keeps the reply well below the 64 MiB frame limit even when every character
# needs a six-byte JSON escape.
MAX_RESULT_CHARS = 8 << 20


def _json_safe_str(text):
    if len(text) > MAX_RESULT_CHARS:
        omitted = len(text) - MAX_RESULT_CHARS
        text = text[:MAX_RESULT_CHARS] + f"\n[result truncated: {omitted} characters omitted]"
    # Lone surrogates cannot be encoded as UTF-8.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _result_value(shell, code, value):
    hook = shell.displayhook
    if value is None:
        if hook.saw_none and not _ends_with_call(shell, code):
            return None
        return ""
    kind = type(value)
    if kind is bool or kind is str:
        return _json_safe_str(value) if kind is str else value
    if kind is int:
        # Beyond 64 bits the daemon's JSON parser would round it.
        return value if -(1 << 63) <= value < (1 << 64) else _json_safe_str(hook.text or repr(value))
    if kind is float:
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return _json_safe_str(hook.text or "")


def _run(shell, code):
    shell.displayhook.reset()
    try:
        try:
            # The C-level handler keeps the worker's frames out of the traceback.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            outcome = shell.run_cell(code, store_history=True)
        finally:
            signal.signal(signal.SIGINT, _ignore_interrupt)
    except KeyboardInterrupt:  # arrived outside IPython's own handling
        signal.signal(signal.SIGINT, _ignore_interrupt)
        return "error", "", True
    if outcome.success:
        return "ok", _result_value(shell, code, outcome.result), False
    error = outcome.error_before_exec or outcome.error_in_exec
    return "error", "", isinstance(error, KeyboardInterrupt)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--preload", default="")
    args = parser.parse_args()

    # User code must not import the agent's modules by accident, but may
    # import files from the working directory, as in Jupyter.
    sys.path[0] = ""
    control = args.control_fd
    os.set_inheritable(control, False)
    libc = _libc()
    _die_with_parent(libc, args.parent_pid)
    signal.signal(signal.SIGINT, _ignore_interrupt)
    _direct_stdio()

    preload_errors = []
    for name in filter(None, (m.strip() for m in args.preload.split(","))):
        try:
            importlib.import_module(name)
        except BaseException as e:  # a broken module must not stop the sandbox
            preload_errors.append(f"{name}: {type(e).__name__}: {e}")
    shell = _make_shell()
    shell.run_cell("pass", store_history=False)  # warms up the compiler and display machinery

    reader = FrameReader()
    write_all(control, encode_frame({"type": "ready", "preloadErrors": preload_errors}))
    while True:
        message = read_frame_blocking(control, reader)
        if message is None:
            return
        if message.get("type") != "execute":
            continue
        status, result, interrupted = _run(shell, message["code"])
        _flush_all(libc)
        sentinel = message["sentinel"].encode()
        write_all(1, sentinel)
        write_all(2, sentinel)
        write_all(control, encode_frame({"type": "done", "status": status, "result": result,
                                         "interrupted": interrupted, "exiting": shell.exit_now}))
        if shell.exit_now:
            return


if __name__ == "__main__":
    main()
