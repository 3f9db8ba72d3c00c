"""What an agent shares with a Python worker that answers executions itself
(docs/architecture.md, "One process on a cell's path").

An agent whose workers are forked from a warm interpreter hands the channel
to its worker while the worker is ready: the worker reads the requests,
runs the cells and answers them, and hands back, as the bytes it read, any
request that is not an execution. The agent sleeps meanwhile. It wakes when
the channel comes back, when the worker dies, or when a cell overruns its
timeout; in the last two cases it answers the cell's request itself, from
what the two share:

- CellRecord, a shared page: which request runs, since when, under which
  output limit, and whether the agent interrupted it for its timeout;
- OutputFiles: the cell's stdout and stderr. The worker moves them from
  its pipes into a memfd each with splice(2), which grows the file in the
  kernel as it moves the bytes, so a worker that dies at any moment loses
  none of them. (A Python thread that read them would have to take the GIL
  before it could store them: a cell that ends its process meanwhile would
  take those bytes with it.) Each cell's output is appended where the
  last one's ended; the files are emptied once they pass a megabyte.
- CellTimer: a timerfd that fires no later than the running cell's
  deadline; only its expiry wakes the agent. The worker arms it only when
  it would fire too late for the cell (back-to-back cells with the same
  timeout share one arming); a timer that fires early for the cell that
  runs then is set again by the agent, to that cell's deadline.
"""

import collections
import ctypes
import json
import mmap
import os
import struct

DEFAULT_TIMEOUT_MS = 100_000
DEFAULT_MAX_OUTPUT_CHARS = 4096
# Two capped streams must fit in one 64 MiB frame, escapes included.
MAX_OUTPUT_CHARS = 8 << 20
TIMEOUT_MESSAGE = "Request timed out waiting for code execution to complete"


def parse_execute(message):
    """An execute request's (code, timeoutMs, maxOutputChars), or None if
    they are not a string and two non-negative integers."""
    code = message.get("code")
    timeout_ms = message.get("timeoutMs", DEFAULT_TIMEOUT_MS)
    max_chars = message.get("maxOutputChars", DEFAULT_MAX_OUTPUT_CHARS)
    if not isinstance(code, str) or not isinstance(timeout_ms, int) or not isinstance(max_chars, int) \
            or timeout_ms < 0 or max_chars < 0:
        return None
    return code, timeout_ms, min(max_chars, MAX_OUTPUT_CHARS)


def append_line(text, line):
    if text and not text.endswith("\n"):
        text += "\n"
    return text + line


def truncated(text, limit, omitted=0):
    """`text` cut to `limit` characters, with the note a cut output ends in;
    `omitted`: characters dropped before they became text."""
    omitted += max(len(text) - limit, 0)
    text = text[:limit]
    if omitted:
        text += f"\n[output truncated: {omitted} characters omitted]"
    return text


Cell = collections.namedtuple("Cell",
                              "seq in_flight timed_out started deadline max_chars dropped starts request_id")

# seq, in flight, timed out, (padding), started and deadline
# (CLOCK_MONOTONIC seconds), output limit, characters dropped from stdout
# and from stderr, where the cell's output starts in each file, id length;
# the request's id follows as JSON.
_HEAD = struct.Struct("=QBBxxxxxxddQQQQQI")
_IN_FLIGHT, _TIMED_OUT, _DROPPED = 8, 9, 40
_PAGE = 4096


class CellRecord:
    """The page an agent and its worker share (a shared mapping made before
    the fork). The worker writes it; the agent reads it when it must answer
    for the worker, and marks a cell it interrupted for its timeout."""

    def __init__(self):
        self.page = mmap.mmap(-1, _PAGE)  # anonymous and MAP_SHARED

    def begin(self, request_id, started, deadline, max_chars, starts):
        ident = str(request_id).encode() if type(request_id) is int else json.dumps(request_id).encode()
        if len(ident) > _PAGE - _HEAD.size:
            ident = b"null"
        seq = _HEAD.unpack_from(self.page)[0] + 1
        self.page[_HEAD.size:_HEAD.size + len(ident)] = ident
        _HEAD.pack_into(self.page, 0, seq, 1, 0, started, deadline, max_chars, 0, 0, *starts, len(ident))

    def end(self):
        self.page[_IN_FLIGHT] = 0

    def mark_timed_out(self):
        self.page[_TIMED_OUT] = 1

    def timed_out(self):
        return self.page[_TIMED_OUT] == 1

    def add_dropped(self, stream, count):
        at = _DROPPED + 8 * stream
        struct.pack_into("=Q", self.page, at, struct.unpack_from("=Q", self.page, at)[0] + count)

    def read(self):
        seq, in_flight, timed_out, started, deadline, max_chars, out, err, out_at, err_at, length = \
            _HEAD.unpack_from(self.page)
        try:
            request_id = json.loads(self.page[_HEAD.size:_HEAD.size + length].decode())
        except ValueError:
            request_id = None
        return Cell(seq, bool(in_flight), bool(timed_out), started, deadline, max_chars, (out, err),
                    (out_at, err_at), request_id)


class OutputFiles:
    """A memfd each for the running cell's stdout and stderr."""

    def __init__(self):
        self.fds = [os.memfd_create("sessiond-stdout", os.MFD_CLOEXEC),
                    os.memfd_create("sessiond-stderr", os.MFD_CLOEXEC)]

    def contents(self, stream, start):
        """What the file holds from `start` on: a cell's output so far."""
        fd = self.fds[stream]
        return os.pread(fd, max(os.fstat(fd).st_size - start, 0), start)

    def close(self):
        for fd in self.fds:
            os.close(fd)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC = 1
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_NONBLOCK = os.O_NONBLOCK


class CellTimer:
    """A one-shot timerfd (Python 3.11 has no os.timerfd_create)."""

    def __init__(self, fd=None):
        libc = ctypes.CDLL(None, use_errno=True)
        if fd is None:
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_CLOEXEC | _TFD_NONBLOCK)
            if fd < 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self.fd = fd
        self._spec = _Itimerspec()
        # Declared, and the struct's address passed as a number: the cheapest
        # call ctypes makes, and it is made twice a cell.
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._spec_at = ctypes.addressof(self._spec)

    def arm(self, seconds):
        """Fires once, `seconds` from now; None disarms it (and forgets an
        expiry not yet read)."""
        value = self._spec.it_value
        if seconds is None:
            value.tv_sec, value.tv_nsec = 0, 0
        else:
            whole = int(seconds)
            value.tv_sec, value.tv_nsec = whole, max(int((seconds - whole) * 1e9), 0 if whole else 1)
        if self._settime(self.fd, 0, self._spec_at, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def fired(self):
        try:
            os.read(self.fd, 8)
            return True
        except BlockingIOError:
            return False

    def close(self):
        os.close(self.fd)


class Handover:
    """The agent's side: made once, kept for every worker it forks."""

    def __init__(self):
        self.record = CellRecord()
        self.files = OutputFiles()
        self.timer = CellTimer()

    def worker_fds(self):
        """The fds a forked worker keeps, in the order it takes them."""
        return [*self.files.fds, self.timer.fd]

    def close(self):
        self.files.close()
        self.timer.close()
