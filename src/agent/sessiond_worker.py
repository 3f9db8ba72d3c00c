"""The sessiond worker: hosts the session's persistent IPython interpreter.

Started by sessiond_agent.py, which owns the host channel. The worker lives in
its own process so a cell that hangs, crashes or ignores interrupts can be
killed without losing the channel. Its fd 1 and 2 are pipes read by the agent,
so output of subprocesses and C extensions is captured too. Control messages
travel over a private socket using the agent's framing:

  agent  -> worker  {"type":"execute","code":S,"sentinel":S}
                    {"type":"reset"}    a fresh session: forget every cell,
                                        then answer "ready" again
                    {"type":"reseed"}   new seeds for the random state it holds
                    {"type":"serve","stateLost":B,"pending":REQUEST?} with an
                        fd: the channel, lent (see below)
  worker -> agent   {"type":"ready","preloadErrors":[S]}   when warm, and
                                                           after each reset
                    {"type":"done","status":"ok"|"error","result":ANY,
                     "interrupted":B,"exiting":B}
                    {"type":"returned","stateLost":B} then one frame holding
                        the bytes it read: the channel is the agent's again
                    {"type":"exited"}   it ends at a cell's exit(), answered

After each cell the worker writes the sentinel to fd 1 and fd 2 before sending
"done", so the agent knows where the cell's output ends on each pipe.

A worker forked by an agent that keeps a Handover (sessiond_handover.py)
captures its own output, and may be lent the agent's channel: it then reads
the requests itself, runs each execution and answers it on the channel in
the agent's reply, and returns the channel with the first request that is
not one.

A cell's "result" is an image object ({"type":"image","format":"png",
"base64_data":S}) when the cell showed a PNG: see _CellImages.
"""

import argparse
import ast
import base64
import binascii
import ctypes
import functools
import gc
import importlib
import io
import json
import math
import os
import select
import signal
import _signal
import socket
import sys
import threading
import time
import traceback
import warnings

# The agent may run from a read-only or shared tree: leave no __pycache__ there.
sys.dont_write_bytecode = True
from sessiond_framing import MAX_FRAME_BYTES, FrameReader, encode_frame, write_all
from sessiond_handover import TIMEOUT_MESSAGE, CellTimer, append_line, parse_execute, truncated
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


def _volunteer_for_oom_killer():
    # When the sandbox runs out of memory the kernel should kill the cell's
    # interpreter, which the agent replaces, rather than the agent and with
    # it the session. Raising one's own score needs no privilege; the cell's
    # subprocesses inherit it.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _reseed():
    # A worker forked from its pool's zygote, or in a microVM restored from
    # its pool's saved template, holds random state it shares with its
    # siblings. `random` also reseeds itself at fork; numpy's global
    # generator and tempfile's name sequence do not.
    import random
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        tempfile._name_sequence = None  # its names come from a generator of its own


# -- images -------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# An image whose base64 form is longer becomes a note (a string result): the
# reply frame must stay below 64 MiB.
MAX_IMAGE_BASE64_CHARS = 8 << 20
PYPLOT = "matplotlib.pyplot"


class _CellImages:
    """The PNG images a cell showed, as Jupyter's inline backend would: through
    plt.show(), display(), a Figure or Image as the last expression, and every
    pyplot figure still open when the cell ends (which is then closed). The
    cell's result is the last expression's image if it has one, else the last
    image shown."""

    def __init__(self):
        self.last = None
        self.expression = None

    def reset(self):
        self.last = None
        self.expression = None

    def result(self):
        return self.expression or self.last


_IMAGES = _CellImages()


def _png_base64(data):
    """The base64 text of PNG data given as bytes or (as IPython's Image gives
    it) base64 text; None if it is not a PNG."""
    if isinstance(data, str):
        text = "".join(data.split())
        try:
            head = base64.b64decode(text[:16], validate=True)
        except (binascii.Error, ValueError):
            return None
    elif isinstance(data, (bytes, bytearray, memoryview)):
        head = bytes(data[:8])
        text = None
    else:
        return None
    if not head.startswith(PNG_SIGNATURE):
        return None
    return text if text is not None else base64.b64encode(data).decode("ascii")


def _image_result(text):
    if len(text) > MAX_IMAGE_BASE64_CHARS:
        return f"[image omitted: its PNG of about {len(text) * 3 // 4} bytes exceeds the limit " \
               f"of {MAX_IMAGE_BASE64_CHARS * 3 // 4} bytes]"
    return {"type": "image", "format": "png", "base64_data": text}


def _figure_png(fig):
    """A matplotlib Figure as Jupyter's inline backend renders it: PNG at the
    figure's own DPI (matplotlib's default 100), tight bounding box, nothing
    for a figure without axes."""
    from IPython.core.pylabtools import print_figure
    return print_figure(fig, "png", bbox_inches="tight")


def _flush_figures(shell, render=True, skip=None):
    """Shows every open pyplot figure (but `skip`) and closes them all, as
    the inline backend does after each cell and on plt.show()."""
    pyplot = sys.modules.get(PYPLOT)
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if pyplot is None or helpers is None:
        return  # the cell has not used pyplot: matplotlib may not even be loaded
    managers = helpers.Gcf.get_all_fig_managers()
    if not managers:
        return
    try:
        for manager in managers if render else ():
            figure = manager.canvas.figure
            if figure is skip:
                continue
            try:
                image = _png_base64(_figure_png(figure))
            except Exception:  # e.g. bad mathtext in a label
                if shell is not None:
                    shell.showtraceback()
                else:
                    traceback.print_exc()
                continue
            if image is not None:
                _IMAGES.last = image
    finally:
        try:
            pyplot.close("all")
        except Exception:  # the worker must still answer
            traceback.print_exc()


class _PyplotImportHook:
    """Replaces matplotlib.pyplot.show, as soon as pyplot is imported, by one
    that shows and closes the open figures; matplotlib is not imported before
    user code (or a preload) imports it."""

    def __init__(self, shell_getter):
        self.shell_getter = shell_getter

    def install(self):
        sys.meta_path.insert(0, self)
        if PYPLOT in sys.modules:
            self.patch(sys.modules[PYPLOT])

    def find_spec(self, fullname, path, target=None):
        if fullname != PYPLOT:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, self.patch)
        return spec

    def patch(self, pyplot):
        original = getattr(pyplot, "show", None)
        if original is None or getattr(original, "_sessiond_show", False):
            return
        shell_getter = self.shell_getter

        @functools.wraps(original)
        def show(*args, **kwargs):
            _flush_figures(shell_getter())

        show._sessiond_show = True
        pyplot.show = show


class _PatchingLoader:
    """A module loader that calls `after(module)` once the module has run."""

    def __init__(self, loader, after):
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._after(module)

    def __getattr__(self, name):  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


# -- the shell ------------------------------------------------------------------

def _make_shell():
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.history import HistoryManager
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    # IPython sets these on every cell, and nothing here observes them
    # (traitlets' observe; Jupyter's kernel might, a worker has none). As
    # plain attributes instead of traits they skip a validation and a change
    # notification each: a sixth of a short cell's cost in a fresh sandbox.
    # AgentTest.PlainCellValuesHaveNoObservers checks that nothing does.
    class PlainHistory(HistoryManager):
        _i00 = _i = _ii = _iii = ""

    class CapturingDisplayHook(DisplayHook):
        """Keeps the last expression's text/plain form (and PNG image, if it
        has one) instead of printing an Out[n] prompt."""

        exec_result = None  # plain, see PlainHistory

        def reset(self):
            self.text = None
            self.saw_none = False

        def quiet(self):
            # The base class tokenizes the whole cell to find a trailing ";",
            # on every result: a cell without one cannot end in one.
            parsed = self.shell.history_manager.input_hist_parsed
            if parsed and ";" not in parsed[-1]:
                return False
            return super().quiet()

        def __call__(self, result=None):
            if result is None and not self.quiet():
                self.saw_none = True
            super().__call__(result)

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self.text = format_dict.get("text/plain")
            _IMAGES.expression = _png_base64(format_dict.get("image/png"))

        def finish_displayhook(self):
            pass

    class ImageDisplayPublisher(DisplayPublisher):
        """display() of something with a PNG form (a Figure, an Image)
        becomes the cell's image; anything else prints its text form."""

        def publish(self, data, *args, **kwargs):
            image = _png_base64(data.get("image/png")) if isinstance(data, dict) else None
            if image is None:
                super().publish(data, *args, **kwargs)
            else:
                _IMAGES.last = image

        def clear_output(self, wait=False):
            # Printed text cannot be taken back (the base class prints
            # terminal escapes); images shown so far can.
            _IMAGES.last = None

    class WorkerShell(InteractiveShell):
        displayhook_class = CapturingDisplayHook
        display_pub_class = ImageDisplayPublisher
        # Plain, see PlainHistory.
        execution_count = 1
        last_execution_succeeded = True
        last_execution_result = None

        def init_history(self):
            self.history_manager = PlainHistory(shell=self, parent=self)
            self.configurables.append(self.history_manager)

        def enable_gui(self, gui=None):
            # No display, so no GUI event loop to run; "%matplotlib inline"
            # (common in notebook-style code) only needs this not to fail.
            pass

        def ask_exit(self):
            # exit() ends this interpreter once the cell is done; the agent
            # starts a fresh one, as a notebook restarts its kernel.
            self.exit_now = True

        def should_run_async(self, raw_cell, *, transformed_cell=None, preprocessing_exc_tuple=None):
            # The base class compiles the cell once more to see whether it
            # is a coroutine; a cell is one only with "await" or "async" in it.
            cell = transformed_cell if transformed_cell is not None else raw_cell
            if "await" not in cell and "async" not in cell:
                return False
            return super().should_run_async(raw_cell, transformed_cell=transformed_cell,
                                            preprocessing_exc_tuple=preprocessing_exc_tuple)

        def transform_cell(self, raw_cell):
            # IPython's own steps cost more than the rest of a short cell,
            # and leave a cell without any of the forms they act on as it is.
            cell = self.plain_cells.transformed(self, raw_cell)
            return cell if cell is not None else super().transform_cell(raw_cell)

        def _showtraceback(self, etype, evalue, stb):
            # The base shell prints tracebacks to stdout; Azure reports them in stderr.
            print(self.InteractiveTB.stb2text(stb), file=sys.stderr)

    config = Config()
    config.InteractiveShell.colors = "NoColor"
    # HOME may be read-only or a tmpfs: keep history in memory.
    config.HistoryManager.hist_file = ":memory:"
    # Only these forms are used: computing HTML, LaTeX, ... for every result
    # would be wasted time (a DataFrame's HTML table).
    config.DisplayFormatter.active_types = ["text/plain", "image/png"]
    shell = WorkerShell.instance(config=config)
    _skip_needless_token_transforms(shell.input_transformer_manager)
    shell.plain_cells = _PlainCells(shell)
    # Lazily, by name: matplotlib is not imported here.
    shell.display_formatter.formatters["image/png"].for_type_by_name(
        "matplotlib.figure", "Figure", _figure_png)
    return shell


# IPython's token transformers (%magic, !shell, obj?, ,quote, ;quote, /call)
# act only on a token that is one of these characters; tokenizing a cell,
# most of the cost of running a short one, finds nothing in a cell that has
# none of them where they could act.
_TOKEN_TRANSFORM_ANYWHERE = ("!", "?", "%")
_TOKEN_TRANSFORM_LINE_START = (",", ";", "/")


def _may_need_token_transforms(lines):
    for line in lines:
        if any(c in line for c in _TOKEN_TRANSFORM_ANYWHERE) or line.lstrip().startswith(_TOKEN_TRANSFORM_LINE_START):
            return True
    return False


# What InteractiveShell.transform_cell does, besides the token passes above:
# - the cleanup transforms: remove leading blank lines, remove the first
#   line's indentation from every line, strip ">>> " and "In [1]: " prompts
#   when the first or second line has one;
# - "%%" cell magics;
# - for a one-line cell, the prefilter: automagic (a line magic's name
#   first, such as `pwd`), autocall, macros and IPyAutocall objects named
#   first, emacs mode lines (its other checkers leave a line as it is);
# - the input_transformers_post a user may add.
# A cell that can meet none of them is returned as it is (with a final
# newline); the rest go through IPython (WorkerShell.transform_cell).
# AgentTest.TransformCellMatchesIPython compares the two over a corpus.
class _PlainCells:
    def __init__(self, shell):
        from IPython.core.autocall import IPyAutocall
        from IPython.core.macro import Macro
        from IPython.core.splitinput import line_split
        self.setup = tuple(list(part) for part in self._setup(shell))
        self.prompt_strippers = [t for t in shell.input_transformer_manager.cleanup_transforms
                                 if hasattr(t, "initial_re")]
        self.autocalled = (Macro, IPyAutocall)
        self.line_split = line_split

    @staticmethod
    def _setup(shell):
        """What decides which transforms IPython runs (the live lists, which a
        user may change)."""
        manager = shell.input_transformer_manager
        return (manager.cleanup_transforms, manager.line_transforms,
                shell.prefilter_manager.checkers, shell.prefilter_manager.transformers)

    def transformed(self, shell, cell):
        """The cell as IPython's transform_cell would make it, if that is
        the cell itself; None if IPython must run its transforms."""
        if not cell or cell[0].isspace() or shell.input_transformers_post or shell.autocall:
            return None
        if self._setup(shell) != self.setup:
            return None  # someone changed IPython's transforms: let it run them
        lines = cell.splitlines(keepends=True)
        for stripper in self.prompt_strippers:
            if stripper.initial_re.match(lines[0]) or (len(lines) > 1 and stripper.prompt_re.match(lines[1])):
                return None
        if _may_need_token_transforms(lines):  # also covers "%%"
            return None
        if len(lines) == 1:
            if "-*-" in cell:
                return None
            # The name the prefilter's checkers look up, found as they find it.
            line = cell.rstrip("\n")
            name = self.line_split.match(line).group(3).strip()
            if isinstance(shell.user_ns.get(name), self.autocalled) or shell.find_magic(name) is not None:
                return None
            shell._last_input_line = line  # as the prefilter keeps it
        return cell if cell.endswith("\n") else cell + "\n"


def _skip_needless_token_transforms(manager):
    transform = manager.do_token_transforms
    manager.do_token_transforms = lambda lines: transform(lines) if _may_need_token_transforms(lines) else lines


def _ends_with_call(shell, code):
    """True if the cell's last statement is a bare call such as print(x).

    A call evaluating to None reads as a statement, so the cell's result is
    "", while a trailing name or constant that is None gives null."""
    # The form the cell ran as, which its history holds (unless the cell
    # ran another cell, or is one IPython keeps out of the history).
    history = shell.history_manager
    try:
        ran = history.input_hist_parsed[-1] if history.input_hist_raw[-1] == code.rstrip("\n") else shell.transform_cell(code)
        tree = ast.parse(ran)
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


OUT_OF_MEMORY_MESSAGE = "Execution aborted: the cell ran out of memory (MemoryError)"


def _forget_memory_error(error):
    # The traceback's frames may hold what filled the memory; the cell's
    # globals stay.
    traceback.clear_frames(error.__traceback__)
    sys.last_traceback = None
    gc.collect()
    print(OUT_OF_MEMORY_MESSAGE, file=sys.stderr)


def _run(shell, code):
    shell.displayhook.reset()
    _IMAGES.reset()
    try:
        try:
            # The C-level handler keeps the worker's frames out of the
            # traceback. (_signal: signal.signal's enum conversions cost
            # more than the call, twice a cell.)
            _signal.signal(signal.SIGINT, signal.default_int_handler)
            outcome = shell.run_cell(code, store_history=True)
            # As the inline backend: the figures a cell leaves open are shown.
            _flush_figures(shell, render=outcome.success, skip=outcome.result)
        finally:
            _signal.signal(signal.SIGINT, _ignore_interrupt)
    except KeyboardInterrupt:  # arrived outside IPython's own handling
        _signal.signal(signal.SIGINT, _ignore_interrupt)
        _flush_figures(shell, render=False)
        return "error", "", True
    if outcome.success:
        image = _IMAGES.result()
        if image is not None:
            return "ok", _image_result(image), False
        return "ok", _result_value(shell, code, outcome.result), False
    error = outcome.error_before_exec or outcome.error_in_exec
    if isinstance(error, MemoryError):
        _forget_memory_error(error)
    return "error", "", isinstance(error, KeyboardInterrupt)


# Silent (the display hook keeps results, it prints none), and the reset
# forgets them. sessiond_agent.py runs them too.
WARM_UP_CELLS = ("print(end='')", "1 + 1")


class Warm:
    """An interpreter ready for a session's first cell: preload modules
    imported and the shell made. A fresh worker makes one for itself; a
    pool's zygote makes one that its sessions' workers are forked from."""

    def __init__(self, preload):
        _direct_stdio()
        self.shell = None
        _PyplotImportHook(lambda: self.shell).install()
        self.preload_errors = []
        for name in preload:
            try:
                importlib.import_module(name)
            except BaseException as e:  # a broken module must not stop the sandbox
                self.preload_errors.append(f"{name}: {type(e).__name__}: {e}")
        self.shell = _make_shell()
        self.fresh_namespace = dict(self.shell.user_ns), dict(self.shell.user_ns_hidden)
        self.exercise()
        # Newer setuptools warn on `import pkg_resources`; AutoGen's bootstrap
        # cell lists packages that way and parses stderr + result as one text.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated as an API")

    def exercise(self):
        """Runs the paths a first cell takes, then forgets it: the lazy
        imports are done and the bytecode specialised before any request.
        (A forked worker is exercised by its agent, see Agent.warm_up.)"""
        for code in WARM_UP_CELLS:
            _run(self.shell, code)
        self.reset()

    def reset(self):
        """Back to the state the shell was made in: IPython's reset drops
        some of the names a new shell has (_, __doc__, ...), which come back."""
        self.shell.reset(new_session=True)
        namespace, hidden = self.fresh_namespace
        for name, value in namespace.items():
            self.shell.user_ns.setdefault(name, value)
        for name, value in hidden.items():
            self.shell.user_ns_hidden.setdefault(name, value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--preload", default="")
    args = parser.parse_args()
    _prepare_process(args.control_fd, args.parent_pid)
    warm = Warm(filter(None, (m.strip() for m in args.preload.split(","))))
    return _serve(args.control_fd, warm)


def serve(control, parent_pid, warm, handover=None):
    """Runs a worker forked from a process holding `warm`; `handover`: the
    fds it kept of its agent's Handover (the pipes' read ends, the files,
    the timer) and the shared CellRecord."""
    _prepare_process(control, parent_pid)
    _reseed()
    return _serve(control, warm, handover)


def _prepare_process(control, parent_pid):
    # User code must not import the agent's modules by accident, but may
    # import files from the working directory, as in Jupyter.
    sys.path[0] = ""
    os.set_inheritable(control, False)
    _die_with_parent(_libc(), parent_pid)
    signal.signal(signal.SIGINT, _ignore_interrupt)
    _direct_stdio()
    _volunteer_for_oom_killer()


def _next_message(sock, reader, fds):
    """The next control message (None at end of file); fds that came with
    it go to `fds`."""
    while (body := reader.next_body()) is None:
        data, received, _, _ = socket.recv_fds(sock, 1 << 16, 1, socket.MSG_CMSG_CLOEXEC)
        fds.extend(received)
        if not data:
            return None
        reader.feed(data)
    return json.loads(body.decode("utf-8"))


def _serve(control, warm, handover=None):
    libc = _libc()
    shell = warm.shell
    reader = FrameReader()
    sock = socket.socket(fileno=control)
    fds = []
    server = _ChannelServer(handover, control, libc, shell) if handover is not None else None
    write_all(control, encode_frame({"type": "ready", "preloadErrors": warm.preload_errors}))
    while True:
        message = _next_message(sock, reader, fds)
        if message is None:
            return 0
        if message.get("type") == "serve" and server is not None and fds:
            if server.serve(fds.pop(0), message):
                return 0
            continue
        if message.get("type") == "reset":
            warm.reset()
            write_all(control, encode_frame({"type": "ready", "preloadErrors": []}))
            continue
        if message.get("type") == "reseed":
            _reseed()
            continue
        if message.get("type") != "execute":
            continue
        try:
            status, result, interrupted = _run(shell, message["code"])
        except MemoryError:  # in the worker's own handling of the cell
            status, result, interrupted = "error", "", False
            gc.collect()
            print(OUT_OF_MEMORY_MESSAGE, file=sys.stderr)
        _flush_all(libc)
        sentinel = message["sentinel"].encode()
        write_all(1, sentinel)
        write_all(2, sentinel)
        write_all(control, encode_frame({"type": "done", "status": status, "result": result,
                                         "interrupted": interrupted, "exiting": shell.exit_now}))
        if shell.exit_now:
            return 0


# -- answering on a lent channel ------------------------------------------------

_CONTINUATION = bytes(range(0x80, 0xC0))
# Past this, a file is emptied before the next cell.
_FILE_REUSE_BYTES = 1 << 20


def _chars(data):
    # The UTF-8 characters `data` holds: its bytes that do not continue one.
    return len(data.translate(None, _CONTINUATION))


class _Stream:
    """One output stream's progress through a cell: it fills its file from
    `start` on, up to `cap` bytes, and counts the characters past them."""

    def __init__(self, start=0, cap=0):
        self.start = start
        self.cap = cap
        self.size = 0
        self.dropped = 0


class _OutputReader:
    """Moves what fd 1 and 2 receive into the shared files while a cell
    runs, with splice(2), up to room for the output limit, then counts the
    characters dropped; between cells it discards what comes. Its thread
    keeps the pipes from filling during a cell, so a cell's output wakes no
    other process; at the cell's end the cell's own thread takes what is
    left, as all a finished cell wrote is in the pipes by then."""

    def __init__(self, pipes, files, record):
        self.pipes, self.files, self.record = pipes, files, record
        for fd in pipes:
            os.set_blocking(fd, False)  # both threads read: neither may wait
        for fd in files:
            os.ftruncate(fd, 0)  # what an earlier worker left
        self.lock = threading.Lock()
        self.streams = [_Stream(), _Stream()]
        self.running = False
        threading.Thread(target=self._run, name="sessiond-output", daemon=True).start()

    def begin(self, max_chars):
        """Where the cell's output starts in each file."""
        with self.lock:
            for i, fd in enumerate(self.files):
                s = self.streams[i]
                start = s.start + s.size
                if start > _FILE_REUSE_BYTES:
                    os.ftruncate(fd, 0)
                    start = 0
                self.streams[i] = _Stream(start, 4 * max_chars + 4)  # UTF-8: up to 4 bytes a character
            self.running = True
            return self.streams[0].start, self.streams[1].start

    def end(self):
        """After the cell: each stream's kept bytes and dropped characters."""
        with self.lock:
            for i in (0, 1):
                # A pipe holds 64 KiB: a few chunks, unless something the
                # cell left running keeps writing.
                for _ in range(16):
                    if self._move(i) != "more":
                        break
            self.running = False
            return [(os.pread(fd, s.size, s.start) if s.size else b"", s.dropped)
                    for fd, s in zip(self.files, self.streams)]

    def _run(self):
        # Signals sent to the process are the cell's (an interrupt must stop
        # a sleep): this thread takes none.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        poller = select.poll()
        for fd in self.pipes:
            poller.register(fd, select.POLLIN)
        left = len(self.pipes)
        while left:
            for fd, _ in poller.poll():
                with self.lock:
                    moved = self._move(self.pipes.index(fd))
                if moved is None:
                    poller.unregister(fd)
                    left -= 1

    def _move(self, i):
        """Takes one chunk of what pipe `i` holds: "more" if the pipe may
        hold more, "taken" if this emptied it, "empty", or None at its
        end."""
        s, pipe = self.streams[i], self.pipes[i]
        want = 1 << 16
        try:
            if self.running and s.size < s.cap:
                want = min(s.cap - s.size, want)
                n = os.splice(pipe, self.files[i], want, offset_dst=s.start + s.size)
                s.size += n
                if not n:
                    return None
                return "more" if n == want else "taken"
            data = os.read(pipe, want)
        except BlockingIOError:
            return "empty"
        if not data:
            return None
        if self.running:
            n = _chars(data)
            s.dropped += n
            self.record.add_dropped(i, n)
        return "more" if len(data) == want else "taken"


# The daemon's JSON has its keys in order, so an execution's body starts
# with this; any other request is left in the channel for the agent, unread.
_EXECUTION_START = b'{"code":'


def _execution_next(sock):
    """Whether the channel's next frame may be an execution: False only if
    its start, as far as it has come, shows it is not one."""
    head = sock.recv(4 + len(_EXECUTION_START), socket.MSG_PEEK)  # waits for a byte, not for all
    if len(head) < 4:
        return True  # read it, or its end, whole
    body = head[4:4 + int.from_bytes(head[:4], "big")]
    return _EXECUTION_START.startswith(body) if len(body) < len(_EXECUTION_START) \
        else body == _EXECUTION_START


def _read_frame(fd):
    """The bytes of one frame, its length included, read exactly: nothing
    of the next is taken. Fewer at the channel's end; only the length of a
    frame over the limit."""
    data = b""
    while len(data) < 4:
        more = os.read(fd, 4 - len(data))
        if not more:
            return data
        data += more
    length = int.from_bytes(data, "big")
    if length > MAX_FRAME_BYTES:
        return data  # the agent refuses it
    parts, left = [data], length
    while left:
        more = os.read(fd, min(left, 1 << 20))
        if not more:
            break
        parts.append(more)
        left -= len(more)
    return b"".join(parts)


class _ChannelServer:
    """Answers executions on the channel the agent lends."""

    def __init__(self, handover, control, libc, shell):
        fds, self.record = handover
        self.control, self.libc, self.shell = control, libc, shell
        self.output = _OutputReader(fds[0:2], fds[2:4], self.record)
        self.timer = CellTimer(fds[4])
        self.timer_due = None  # when the timer fires as this worker set it

    def serve(self, channel, message):
        """Until a request that is not an execution comes, or the channel's
        end: it then goes back to the agent. True if the interpreter is to
        exit."""
        state_lost = message.get("stateLost", False)
        request = message.get("pending")
        sock = socket.socket(fileno=channel)
        try:
            while True:
                data = b""
                if request is None and _execution_next(sock):
                    data = _read_frame(channel)
                    request = _execution(data)
                if request is None:
                    write_all(self.control, encode_frame({"type": "returned", "stateLost": state_lost}) +
                              len(data).to_bytes(4, "big") + data)
                    return False
                exiting = self.answer(channel, request, state_lost)
                state_lost = False
                request = None
                if exiting:
                    write_all(self.control, encode_frame({"type": "exited"}))
                    return True
        except OSError:  # the channel broke: the agent finds out when it reads it
            write_all(self.control, encode_frame({"type": "returned", "stateLost": state_lost}) +
                      (0).to_bytes(4, "big"))
            return False
        finally:
            sock.close()

    def answer(self, channel, request, state_lost):
        code, timeout_ms, max_chars = parse_execute(request)
        started = time.monotonic()
        deadline = started + timeout_ms / 1000
        self.record.begin(request.get("id"), started, deadline, max_chars, self.output.begin(max_chars))
        due = self.timer_due
        if due is None or due <= started or due > deadline:
            self.timer.arm(timeout_ms / 1000)
            self.timer_due = deadline
        try:
            status, result, _ = _run(self.shell, code)
        except MemoryError:  # in the worker's own handling of the cell
            status, result = "error", ""
            gc.collect()
            print(OUT_OF_MEMORY_MESSAGE, file=sys.stderr)
        _flush_all(self.libc)
        (out, out_dropped), (err, err_dropped) = self.output.end()
        exiting = self.shell.exit_now
        reply = {"type": "result", "id": request.get("id"), "status": status,
                 "stdout": truncated(out.decode("utf-8", "replace"), max_chars, out_dropped),
                 "stderr": truncated(err.decode("utf-8", "replace"), max_chars, err_dropped),
                 "result": result, "durationMs": int((time.monotonic() - started) * 1000),
                 "stateLost": state_lost or exiting}
        if self.record.timed_out():
            reply.update(status="timeout", result="", stderr=append_line(reply["stderr"], TIMEOUT_MESSAGE))
        write_all(channel, encode_frame(reply))
        self.record.end()
        return exiting


def _execution(data):
    """The execution request `data` holds, or None for anything else."""
    try:
        request = json.loads(data[4:].decode("utf-8")) if len(data) > 4 else None
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(request, dict) and request.get("type") == "execute" and parse_execute(request):
        return request
    return None


if __name__ == "__main__":
    sys.exit(main())
