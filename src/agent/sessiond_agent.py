"""The sessiond agent: runs inside every sandbox and speaks the framed JSON
protocol of docs/agent-protocol.md with the daemon.

The agent owns the channel and supervises a worker process
(sessiond_worker.py) that hosts the persistent IPython interpreter. Keeping
the interpreter in a separate process lets the agent enforce timeouts, cap
output and survive a crashing cell, replacing the worker when needed.
"""

import argparse
import codecs
import ctypes
import fcntl
import json
import mmap
import os
import platform
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
import traceback

# The agent may run from a read-only or shared tree: leave no __pycache__ there.
sys.dont_write_bytecode = True
from sessiond_files import DataDirectory, FileError
from sessiond_framing import (MAX_FRAME_BYTES, FrameError, FrameReader, encode_frame, read_frame_blocking,
                               write_all)
from sessiond_handover import (DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_MS, MAX_OUTPUT_CHARS, TIMEOUT_MESSAGE,
                               Handover, append_line, parse_execute, truncated)

PROTOCOL_VERSION = 1
AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
NODE = "/usr/bin/node"
BASH = "/bin/bash"

# A cell gets this long to stop after SIGINT before its interpreter is
# replaced. Seconds, not less: a microVM without KVM on a busy host may run
# the cell's signal handler that late.
INTERRUPT_GRACE_S = 5.0
SENTINEL_GRACE_S = 2.0       # output still in the pipes after "done"
EXIT_DRAIN_S = 0.5           # output still in the pipes after the worker died
WORKER_START_TIMEOUT_S = 120.0
# How often a worker's death is noticed when a forked child of the cell keeps
# its control socket open, so no end of file arrives.
BUSY_POLL_S = 0.25
IDLE_POLL_S = 5.0
# How often a virtio-serial port is checked for the host end opening.
HOST_POLL_S = 0.05
# Above any fd a forked worker keeps; close_range makes the bound free.
MAX_FD = 1 << 20

# A shell command that timed out reports what timeout(1) reports.
TIMEOUT_EXIT_CODE = 124
SHELL_TERM_GRACE_S = 2.0
# A file chunk, read or written, in one frame (base64 makes it 4/3 larger).
MAX_FILE_CHUNK = 8 << 20


def interpreter_exited(ended):
    return f"Execution aborted: the interpreter exited ({ended}); its state was lost and a new interpreter " \
           "was started"


def log(text):
    print(f"sessiond-agent: {text}", file=sys.stderr, flush=True)


def set_process_name(name):
    """What ps and top show for a process forked from a zygote, whose
    command line stays the zygote's."""
    PR_SET_NAME = 15
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15])
    except OSError:
        pass


def become_subreaper():
    """Makes the orphans of this process's descendants (a command's
    `setsid cmd &`, a daemon that forked twice) its children rather than
    pid 1's, so that kill_leftovers finds them."""
    PR_SET_CHILD_SUBREAPER = 36
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log(f"cannot become a subreaper: {os.strerror(ctypes.get_errno())}")
    except OSError as e:
        log(f"cannot become a subreaper: {e}")


def child_pids():
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it ended meanwhile
        # The command name, in parentheses, may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(name))
    return found


def kill_leftovers(rounds=100):
    """SIGKILLs and reaps every child of this (subreaper) process: called
    when it has no child of its own, so each one is something an execution
    left running. A killed process's children become this process's, hence
    the rounds. Returns how many were killed."""
    killed = 0
    for _ in range(rounds):
        children = child_pids()
        if not children:
            break
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        killed += len(children)
    return killed


class LimitsCgroup:
    """The cgroup a microVM guest's init runs the agent in, under the pool's
    process limit (--limits-cgroup). Forks refused there during an execution
    go into its reply, for the host to report as it reports those of a
    namespace sandbox, whose cgroup it reads itself (docs/agent-protocol.md)."""

    def __init__(self, directory):
        self.directory = directory

    def _read(self, name):
        if not self.directory:
            return ""
        try:
            with open(os.path.join(self.directory, name)) as f:
                return f.read()
        except OSError:
            return ""

    def refused_forks(self):
        for line in self._read("pids.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "max" and value.strip().isdigit():
                return int(value)
        return 0

    def annotate(self, reply, refused_before):
        refused = self.refused_forks() - refused_before
        limit = self._read("pids.max").strip()
        if refused > 0 and limit.isdigit() and reply.get("type") == "result":
            reply["limits"] = {"pidsLimit": int(limit), "pidsRefused": refused}
        return reply


class ChannelClosed(Exception):
    pass


class ContainerEnded(Exception):
    """The VM's custom container exited: so does the agent, and the VM."""


class Capture:
    """One execution's output on one pipe: kept up to `limit` characters,
    counted beyond it, and complete once the sentinel has been read (or, with
    no sentinel, at end of file)."""

    def __init__(self, sentinel, limit):
        self.sentinel = sentinel
        self.limit = limit
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = b""      # may hold the start of a sentinel
        self.parts = []
        self.kept = 0
        self.omitted = 0
        self.complete = False

    def feed(self, data):
        if self.complete:
            return  # output of background activity after the cell ended
        if self.sentinel is None:
            self._take(data)
            return
        self.pending += data
        end = self.pending.find(self.sentinel)
        if end >= 0:
            self._take(self.pending[:end], final=True)
            self.pending = b""
            self.complete = True
            return
        keep = len(self.sentinel) - 1
        if len(self.pending) > keep:
            self._take(self.pending[:-keep])
            self.pending = self.pending[-keep:]

    def _take(self, data, final=False):
        text = self.decoder.decode(data, final)
        room = max(self.limit - self.kept, 0)
        if room:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.omitted += max(len(text) - room, 0)

    def text(self):
        if not self.complete:
            self._take(self.pending, final=True)
            self.pending = b""
        return truncated("".join(self.parts), self.limit, self.omitted)


class ForkedWorker:
    """A Python worker forked from this agent, which holds the interpreter
    its pool's zygote warmed up (sessiond_worker.Warm), so a new one costs a
    fork instead of a Python start. Offers what Worker uses of Popen."""

    def __init__(self, control, warm, handover=None):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                set_process_name("sessiond-worker")
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                for fd, target in ((null, 0), (out_w, 1), (err_w, 2), (control.fileno(), 3)):
                    os.dup2(fd, target)
                kept = []
                if handover is not None:
                    # The pipes' read ends and the shared files and timer, at
                    # 4 and up: first above anything the moves could land on.
                    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
                            for fd in (out_r, err_r, *handover.worker_fds())]
                    for target, fd in enumerate(high, start=4):
                        os.dup2(fd, target, inheritable=False)
                    kept = list(range(4, 4 + len(high)))
                os.closerange(4 + len(kept), MAX_FD)
                import sessiond_worker
                code = sessiond_worker.serve(3, parent, warm, handover and (kept, handover.record))
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code or 0)
        os.close(out_w)
        os.close(err_w)
        self.pid = pid
        # Polled beside the control socket: ends at the worker's exit even
        # when a forked child of a cell keeps the socket open.
        self.pidfd = os.pidfd_open(pid)
        self.stdout = os.fdopen(out_r, "rb", 0)
        self.stderr = os.fdopen(err_r, "rb", 0)
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self):
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode


class Worker:
    """A running sessiond_worker.py process and the agent's ends of its pipes."""

    def __init__(self, language, preload, warm=None, handover=None):
        ours, theirs = socket.socketpair()
        env = dict(os.environ, MPLBACKEND="Agg")
        common = ["--control-fd", str(theirs.fileno()), "--parent-pid", str(os.getpid())]
        if language == "node":
            command = [NODE, os.path.join(AGENT_DIR, "sessiond_worker.js")] + common
        else:
            command = [sys.executable, os.path.join(AGENT_DIR, "sessiond_worker.py")] + common \
                + ["--preload", ",".join(preload)]
        try:
            if warm is not None and language == "python":
                self.proc = ForkedWorker(theirs, warm, handover)
            else:
                self.proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pass_fds=[theirs.fileno()], start_new_session=True, env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        # A handed-back request comes whole, behind its length.
        self.control_reader = FrameReader(MAX_FRAME_BYTES + 4)
        self.control_eof = False
        # Such a worker captures its own output (sessiond_handover.py): the
        # agent reads the pipes only to drain them after the worker's end.
        self.captures_itself = handover is not None and isinstance(self.proc, ForkedWorker)
        self.returned = None    # the channel came back: the "returned" message
        self.handed_back = None  # and the bytes of the request it read
        self.exited = False      # it ended at a cell's exit(), already answered
        self.streams = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        self.captures = {"out": None, "err": None}
        self.ready = False
        self.runtime = None
        self.done = None
        self.preload_errors = []

    def fds(self):
        fds = [] if self.captures_itself else list(self.streams)
        if not self.control_eof:
            fds.append(self.control.fileno())
        return fds

    def alive(self):
        return not self.control_eof and self.proc.poll() is None

    def on_readable(self, fd):
        try:
            data = os.read(fd, 1 << 16)
        except ConnectionResetError:  # the worker died with a request unread
            data = b""
        if fd == self.control.fileno():
            if not data:
                self.control_eof = True
                return
            self.control_reader.feed(data)
            while (body := self.control_reader.next_body()) is not None:
                if self.returned is not None and self.handed_back is None:
                    self.handed_back = body  # raw: the frame behind "returned"
                else:
                    self._on_message(json.loads(body))
            return
        name = self.streams[fd]
        if not data:
            del self.streams[fd]
            return
        capture = self.captures[name]
        if capture is not None:
            capture.feed(data)
        # else: output between cells has no request to go to

    def _on_message(self, message):
        if message.get("type") == "ready":
            self.ready = True
            self.preload_errors = message.get("preloadErrors", [])
            self.runtime = message.get("runtime")  # the node worker names its version
        elif message.get("type") == "done":
            self.done = message
        elif message.get("type") == "returned":
            self.returned = message
        elif message.get("type") == "exited":
            self.exited = True

    def send(self, message):
        try:
            self.control.sendall(encode_frame(message))
        except OSError:
            self.control_eof = True  # dead; the caller sees it through alive()

    def interrupt(self):
        self._signal_group(signal.SIGINT)

    def kill(self):
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum):
        # The group includes the cell's subprocesses; killpg stays safe after
        # the worker was reaped because a live group id is never reused.
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def exit_description(self):
        code = self.proc.wait()
        return f"signal {-code}" if code < 0 else f"exit code {code}"

    def close(self):
        self.control.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        if isinstance(self.proc, ForkedWorker):
            os.close(self.proc.pidfd)


class Agent:
    def __init__(self, channel_fd, language, preload, data_directory, host_connected=True, warm=None,
                 limits_cgroup=None):
        self.channel_fd = channel_fd
        # A virtio-serial port reads as end of file and polls as hung up
        # until the host opens its end, which may be long after boot; only
        # an end of file after that means the host went away.
        self.host_connected = host_connected
        # Only a microVM's agent (on a virtio-serial port) owns the machine's
        # network: anywhere else a "network" message is refused, so that an
        # agent run on a host never touches the host's interfaces.
        self.owns_machine = not host_connected
        self.container = None  # a custom container's process, in its VM
        self.container_fd = None  # its pidfd, polled with the channel
        self.channel_reader = FrameReader()
        # Anonymous memory: only the pages reads fill are ever backed.
        self.channel_buffer = mmap.mmap(-1, 1 << 20)
        self.language = language
        self.preload = preload
        self.files = DataDirectory(data_directory)
        self.worker = None
        self.warm = warm
        self.state_lost_since_last_reply = False
        self.limits = LimitsCgroup(limits_cgroup)
        # A worker forked from a warm interpreter is lent the channel while
        # it is ready, and answers executions itself: the agent then stays off
        # a cell's path (sessiond_handover.py). A microVM's agent keeps it,
        # and so does one that reports refused forks with each execution.
        self.handover = Handover() if warm is not None and language == "python" and host_connected \
            and not limits_cgroup else None
        self.lent = False          # the worker holds the channel
        self.keep_channel = False  # the worker handed a request back: keep it until an execution
        self.lent_with = None      # (id, record seq) of an execution lent with the channel
        self.interrupted_seq = None  # the cell interrupted for its timeout
        if language == "shell":
            # A shell sandbox has no worker: every child left after a
            # command is the command's, and is killed (execute_shell).
            become_subreaper()

    # -- event loop -------------------------------------------------------

    def pump(self, deadline=None, timeout=BUSY_POLL_S):
        """Waits until one of the channel or worker fds is readable (or the
        deadline passes) and feeds what was read to its consumer."""
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0))
        poller = select.poll()
        if self.host_connected:
            poller.register(self.channel_fd, select.POLLIN)
        worker_fds = self.worker.fds() if self.worker else []
        for fd in worker_fds:
            poller.register(fd, select.POLLIN)
        if self.container_fd is not None:
            poller.register(self.container_fd, select.POLLIN)
        for fd, _ in poller.poll(timeout * 1000):
            if fd == self.container_fd:
                raise ContainerEnded()
            if fd == self.channel_fd:
                # File chunks arrive in frames of megabytes. One buffer for
                # every read: a fresh megabyte each time was an mmap, page
                # faults and an munmap per request.
                n = os.readv(fd, [self.channel_buffer])
                if not n:
                    raise ChannelClosed()
                self.channel_reader.feed(memoryview(self.channel_buffer)[:n])
            else:
                self.worker.on_readable(fd)

    def run_until(self, condition, deadline):
        """Pumps until `condition()`; False if the deadline passed or the
        worker died first."""
        while not condition():
            if not self.worker.alive() or (deadline is not None and time.monotonic() >= deadline):
                return False
            self.pump(deadline)
        return True

    def wait_for_host(self):
        """Returns once the host end of a virtio-serial port is open, keeping
        the worker's pipes drained meanwhile."""
        while not self.host_connected:
            poller = select.poll()
            poller.register(self.channel_fd, select.POLLIN)
            if any(events & select.POLLHUP for _, events in poller.poll(0)):
                self.pump(timeout=HOST_POLL_S)
                self.replace_dead_idle_worker()
            else:
                self.host_connected = True

    def send(self, message):
        try:
            # File chunks are base64: nothing in them needs escaping.
            verbatim = "data" if message.get("type") == "fileData" else None
            write_all(self.channel_fd, encode_frame(message, verbatim))
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ChannelClosed() from e

    # -- worker lifecycle ---------------------------------------------------

    def start_worker(self):
        self.worker = Worker(self.language, self.preload, self.warm, self.handover)

    def wait_worker_ready(self):
        """Starts a worker if there is none and waits until it is warm; an
        error text if it failed."""
        if self.worker is None:
            self.start_worker()
        if self.run_until(lambda: self.worker.ready, time.monotonic() + WORKER_START_TIMEOUT_S):
            for error in self.worker.preload_errors:
                log(f"preload failed: {error}")
            self.worker.preload_errors = []
            return ""
        how = "did not start in time" if self.worker.alive() else "exited"
        self.discard_worker()
        return f"the interpreter {how}"

    def discard_worker(self):
        """Kills the worker and its subprocesses; drains what they wrote
        into the current captures. Returns how the worker ended."""
        worker = self.worker
        worker.captures_itself = False
        worker.kill()
        deadline = time.monotonic() + EXIT_DRAIN_S
        while worker.streams and time.monotonic() < deadline:
            self.pump(deadline)
        description = worker.exit_description()
        worker.close()
        self.worker = None
        return description

    def replace_dead_idle_worker(self):
        if self.worker is not None and self.worker.ready and not self.worker.alive():
            log(f"the interpreter exited between requests ({self.discard_worker()}); restarting it")
            self.state_lost_since_last_reply = True
            self.start_worker()

    def warm_up(self):
        """Runs the worker's warm-up cells, then has it forget them; an
        error text if the worker did not come back from that.
        Forked from a zygote, this agent and its worker share the zygote's
        pages copy-on-write, and every object a request touches has its
        reference count written: the copies (each page fault costs
        microseconds, many in a VM) are taken now instead of in the first
        request's time. So the cells come as requests through a channel of
        their own, over the path a daemon's request takes: the channel
        buffer, the frame reader, handle(), the reply's encoding and write."""
        from sessiond_worker import WARM_UP_CELLS  # imported already: the zygote holds it
        if self.handover is not None:
            return self.warm_up_lent(WARM_UP_CELLS)
        host_end, agent_end = socket.socketpair()
        channel, connected = self.channel_fd, self.host_connected
        self.channel_fd, self.host_connected = agent_end.fileno(), True
        try:
            replies = FrameReader()
            for code in WARM_UP_CELLS:
                host_end.sendall(encode_frame({"type": "execute", "id": None, "code": code}))
                while (body := self.channel_reader.next_body()) is None:
                    self.pump()
                self.handle(body)
                read_frame_blocking(host_end.fileno(), replies)
        finally:
            self.channel_fd, self.host_connected = channel, connected
            host_end.close()
            agent_end.close()
        self.state_lost_since_last_reply = False
        if self.worker is None:
            return ""
        # Ready only once the reset is done: a first request must not wait
        # behind it, nor find it still copying pages.
        self.worker.ready = False
        self.worker.send({"type": "reset"})
        return self.wait_worker_ready()

    def warm_up_lent(self, cells):
        """warm_up for a worker that will hold the channel: the cells go to
        it over a socket pair lent as the channel is, along the path a
        request will take in it."""
        host_end, agent_end = socket.socketpair()
        try:
            self.lend_channel(agent_end.fileno())
            agent_end.close()  # the worker's copy alone: its end is host_end's
            replies = FrameReader()
            for code in cells:
                # In the daemon's key order: the worker takes only what
                # starts as an execution does (sessiond_worker._EXECUTION_START).
                host_end.sendall(encode_frame({"code": code, "id": None, "type": "execute"}))
                if read_frame_blocking(host_end.fileno(), replies) is None:
                    break
            host_end.shutdown(socket.SHUT_WR)  # it reads the end and hands the pair back
            while self.lent:
                self.supervise(answering=False)
        finally:
            agent_end.close()
            host_end.close()
        self.keep_channel = False
        self.state_lost_since_last_reply = False
        if self.worker is None or not self.worker.alive():
            return "the interpreter exited during its warm-up"
        self.worker.ready = False
        self.worker.send({"type": "reset"})
        return self.wait_worker_ready()

    # -- the channel lent to the worker ---------------------------------------

    def can_lend(self):
        return self.handover is not None and not self.keep_channel and self.worker is not None \
            and self.worker.ready and self.worker.alive() and not self.channel_reader.buffer

    def lend_channel(self, fd, pending=None):
        """Gives the worker `fd` to read requests from and answer them on,
        starting with `pending`, an execution the agent read."""
        message = {"type": "serve", "stateLost": self.state_lost_since_last_reply}
        if pending is not None:
            message["pending"] = pending
            self.lent_with = (pending.get("id"), self.handover.record.read().seq)
        self.state_lost_since_last_reply = False
        self.keep_channel = False
        self.lent = True
        try:
            socket.send_fds(self.worker.control, [encode_frame(message)], [fd])
        except OSError:
            self.worker.control_eof = True  # dead: supervise() answers for it

    def supervise(self, answering=True):
        """Sleeps while the worker holds the channel, until it hands it back,
        dies, or overruns a cell's timeout. Not `answering` (the warm-up's
        lent socket pair), a dead worker just ends the loan."""
        worker = self.worker
        poller = select.poll()
        poller.register(worker.control.fileno(), select.POLLIN)
        poller.register(worker.proc.pidfd, select.POLLIN)
        if answering:
            poller.register(self.handover.timer.fd, select.POLLIN)
        for fd, _ in poller.poll(IDLE_POLL_S * 1000):
            if fd == self.handover.timer.fd:
                self.on_timer()
                if self.worker is not worker:
                    return  # killed and replaced
            elif fd == worker.control.fileno():
                worker.on_readable(fd)
        if worker.returned is not None and worker.handed_back is not None:
            self.take_channel_back()
        elif not worker.alive():
            if answering:
                self.answer_for_worker(self.handover.record.read())
            else:
                self.lent = False

    def take_channel_back(self):
        worker = self.worker
        returned, data = worker.returned, worker.handed_back
        worker.returned = worker.handed_back = None
        self.lent = False
        self.lent_with = None
        if returned.get("stateLost"):
            self.state_lost_since_last_reply = True  # still to be reported
        # The request it read (or what it read before the channel's end),
        # read here as if it came from the channel; the channel stays here
        # until an execution comes.
        self.channel_reader.feed(data)
        self.keep_channel = True

    def on_timer(self):
        """A cell's timeout passed: interrupt it, as a cell the agent runs;
        if it is still running once the grace has passed too, kill it."""
        if not self.handover.timer.fired():
            return
        cell = self.handover.record.read()
        if not cell.in_flight:
            return
        early = cell.deadline - time.monotonic()
        if self.interrupted_seq != cell.seq and early > 0:
            self.handover.timer.arm(early)  # set for an earlier cell
            return
        if self.interrupted_seq != cell.seq:
            self.interrupted_seq = cell.seq
            self.handover.record.mark_timed_out()
            self.worker.interrupt()
            self.handover.timer.arm(INTERRUPT_GRACE_S)
        else:
            self.answer_for_worker(cell)

    def answer_for_worker(self, cell):
        """The worker holding the channel died, or was killed for ignoring
        an interrupt: answers the request it was running, from the output
        it had moved to the shared files and what is left in its pipes, and
        starts another worker."""
        self.handover.timer.arm(None)
        out = err = None
        if cell.in_flight:
            out, err = Capture(None, cell.max_chars), Capture(None, cell.max_chars)
            out.feed(self.handover.files.contents(0, cell.starts[0]))
            err.feed(self.handover.files.contents(1, cell.starts[1]))
            self.worker.captures = {"out": out, "err": err}
        exited = self.worker.exited
        ended = self.discard_worker()
        self.lent = False
        lent_with, self.lent_with = self.lent_with, None
        if out is not None:
            out.omitted += cell.dropped[0]
            err.omitted += cell.dropped[1]
            if cell.timed_out:
                status, line = "timeout", TIMEOUT_MESSAGE
            else:
                status, line = "error", interpreter_exited(ended)
            self.send({"type": "result", "id": cell.request_id, "status": status, "stdout": out.text(),
                       "stderr": append_line(err.text(), line), "result": "",
                       "durationMs": int((time.monotonic() - cell.started) * 1000), "stateLost": True})
            self.state_lost_since_last_reply = False
        elif lent_with is not None and lent_with[1] == cell.seq:  # died before it began that cell
            self.send({"type": "result", "id": lent_with[0], "status": "error", "stdout": "",
                       "stderr": interpreter_exited(ended),
                       "result": "", "durationMs": 0, "stateLost": True})
            self.state_lost_since_last_reply = False
        elif not exited:
            log(f"the interpreter exited between requests ({ended}); restarting it")
            self.state_lost_since_last_reply = True
        self.start_worker()

    # -- requests -------------------------------------------------------------

    def serve(self):
        if self.language != "shell":
            error = self.wait_worker_ready()
            if error:
                log(f"cannot start: {error}")
                return 1
        if self.warm is not None:
            error = self.warm_up()
            if error:
                log(f"cannot start: after the warm-up, {error}")
                return 1
        self.wait_for_host()
        self.send({"type": "hello", "protocol": PROTOCOL_VERSION,
                   "runtime": (self.worker and self.worker.runtime) or runtime(self.language),
                   "agentPid": os.getpid()})
        while True:
            if self.lent:
                self.supervise()
                continue
            body = self.channel_reader.next_body()
            if body is None:
                if self.can_lend():
                    self.lend_channel(self.channel_fd)
                    continue
                self.pump(timeout=IDLE_POLL_S)
                self.replace_dead_idle_worker()
                continue
            self.handle(body)

    def handle(self, body):
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.send({"type": "error", "id": None, "message": f"malformed frame: {e}"})
            return
        if not isinstance(message, dict):
            self.send({"type": "error", "id": None, "message": "a frame must hold a JSON object"})
            return
        kind = message.get("type")
        request_id = message.get("id")
        if kind == "ping":
            self.send({"type": "pong", "id": request_id})
        elif kind == "execute":
            refused = self.limits.refused_forks()
            reply = self.execute_shell(message) if self.language == "shell" else self.execute(message)
            if reply is not None:  # None: the worker it was lent to answers
                self.send(self.limits.annotate(reply, refused))
        elif kind == "describe":
            self.send(dict(describe(self.language), type="description", id=request_id))
        elif kind in FILE_OPERATIONS:
            self.send(self.file_operation(kind, message))
        elif kind == "snapshot":
            self.send(self.snapshot(message))
        elif kind == "container":
            self.send(self.start_container(message))
        elif kind == "network":
            self.send(configure_network(message) if self.owns_machine else
                      {"type": "error", "id": request_id, "code": "invalidRequest",
                       "message": "only a microVM's agent configures a network card"})
        else:
            self.send({"type": "error", "id": request_id,
                       "message": f"unknown message type: {json.dumps(kind)}"})

    def execute(self, message):
        request_id = message.get("id")
        fields = parse_execute(message)
        if fields is None:
            return {"type": "error", "id": request_id,
                    "message": "execute needs a string code and non-negative integer "
                               "timeoutMs and maxOutputChars"}
        code, timeout_ms, max_chars = fields

        reply = {"type": "result", "id": request_id, "status": "ok", "stdout": "",
                 "stderr": "", "result": "", "durationMs": 0, "stateLost": False}
        self.replace_dead_idle_worker()
        error = self.wait_worker_ready()
        if error:
            self.state_lost_since_last_reply = False
            self.start_worker()  # the next request tries again
            reply.update(status="error", stateLost=True, stderr=f"Execution aborted: {error}")
            return reply
        if self.handover is not None:
            self.lend_channel(self.channel_fd, pending=message)
            return None

        worker = self.worker
        sentinel = f"\x00sessiond-end-{secrets.token_hex(16)}\x00"
        out = Capture(sentinel.encode(), max_chars)
        err = Capture(sentinel.encode(), max_chars)
        worker.captures = {"out": out, "err": err}
        worker.done = None
        started = time.monotonic()
        worker.send({"type": "execute", "code": code, "sentinel": sentinel})

        has_done = lambda: worker.done is not None
        finished = self.run_until(has_done, started + timeout_ms / 1000)
        timed_out = not finished and worker.alive()
        if timed_out:
            worker.interrupt()
            finished = self.run_until(has_done, time.monotonic() + INTERRUPT_GRACE_S)
        if finished:
            self.run_until(lambda: out.complete and err.complete,
                           time.monotonic() + SENTINEL_GRACE_S)
        duration_ms = int((time.monotonic() - started) * 1000)

        ended = ""
        exiting = finished and worker.done.get("exiting", False)
        if not finished:
            ended = self.discard_worker()
        else:
            worker.captures = {"out": None, "err": None}
        if exiting:
            self.discard_worker()
        reply.update(stdout=out.text(), stderr=err.text(), durationMs=duration_ms,
                     stateLost=self.state_lost_since_last_reply or not finished or exiting)
        self.state_lost_since_last_reply = False
        if timed_out:
            reply.update(status="timeout", stderr=append_line(reply["stderr"], TIMEOUT_MESSAGE))
        elif not finished:
            reply.update(status="error", stderr=append_line(reply["stderr"], interpreter_exited(ended)))
        else:
            reply.update(status=worker.done["status"], result=worker.done["result"])
        if self.worker is None:
            self.start_worker()  # warms up while the reply travels
        return reply

    def execute_shell(self, message):
        """Runs one command with bash (or an argv) in the data directory.
        Files persist between commands; shell variables and the working
        directory do not. Whatever the command left running is killed when
        it ends, so nothing outlives its execution: its process group, and
        then whatever left the group (setsid, a double fork)."""
        request_id = message.get("id")
        command, argv, stdin = message.get("code"), message.get("argv"), message.get("stdin", "")
        timeout_ms = message.get("timeoutMs", DEFAULT_TIMEOUT_MS)
        max_chars = message.get("maxOutputChars", DEFAULT_MAX_OUTPUT_CHARS)
        valid_argv = isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
        if (command is None) == (argv is None) or (command is not None and not isinstance(command, str)) \
                or (argv is not None and not valid_argv) or not isinstance(stdin, str) \
                or not isinstance(timeout_ms, int) or not isinstance(max_chars, int) \
                or timeout_ms < 0 or max_chars < 0:
            return {"type": "error", "id": request_id,
                    "message": "a shell execute needs either a string code or a non-empty string "
                               "array argv, a string stdin and non-negative integer timeoutMs and "
                               "maxOutputChars"}
        max_chars = min(max_chars, MAX_OUTPUT_CHARS)
        args = [BASH, "-c", command] if command is not None else argv
        out, err = Capture(None, max_chars), Capture(None, max_chars)
        reply = {"type": "result", "id": request_id, "result": "", "stateLost": False}
        started = time.monotonic()
        try:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            reply.update(status="error", exitCode=127, stdout="", durationMs=0,
                         stderr=f"{args[0]}: {e.strerror}\n")
            return reply
        exit_code, timed_out = run_command(proc, stdin.encode(), out, err, started + timeout_ms / 1000)
        kill_leftovers()
        reply.update(status="timeout" if timed_out else ("ok" if exit_code == 0 else "error"),
                     exitCode=exit_code, stdout=out.text(),
                     stderr=append_line(err.text(), TIMEOUT_MESSAGE) if timed_out else err.text(),
                     durationMs=int((time.monotonic() - started) * 1000))
        return reply

    def file_operation(self, kind, message):
        request_id = message.get("id")
        path = message.get("path", "")
        try:
            if kind == "listFiles":
                return {"type": "files", "id": request_id,
                        "entries": self.files.list(path, message.get("recursive") is True)}
            if kind == "statFile":
                return {"type": "file", "id": request_id, "entry": self.files.stat(path)}
            if kind == "readFile":
                offset, length = message.get("offset", 0), message.get("length", MAX_FILE_CHUNK)
                if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
                    raise FileError("invalidRequest", "offset and length must be non-negative integers")
                chunk = self.files.read(path, offset, min(length, MAX_FILE_CHUNK))
                return dict(chunk, type="fileData", id=request_id)
            if kind == "writeFile":
                entry = self.files.write(path, message.get("data", ""), message.get("first") is True,
                                         message.get("last") is True)
                return {"type": "written", "id": request_id, "entry": entry}
            self.files.delete(path)
            return {"type": "deleted", "id": request_id}
        except FileError as e:
            return {"type": "error", "id": request_id, "code": e.code, "message": str(e)}

    def snapshot(self, message):
        """A microVM about to be saved as its pool's template ("save") or just
        restored from one ("restore"). Every VM restored from one saved state
        starts with the same kernel random pool, interpreter seeds, machine
        id and a clock stopped at the save: "restore" gives it its own."""
        import base64
        import binascii
        import fcntl
        import re
        import struct
        request_id, phase = message.get("id"), message.get("phase")
        reply = {"type": "snapshot", "id": request_id, "phase": phase}
        if phase == "save":
            # With init_on_free the freed pages are zero, which the saved state
            # stores as a flag: a smaller file, and less memory to fill on restore.
            os.sync()
            for knob, value in (("drop_caches", "3"), ("compact_memory", "1")):
                try:
                    with open(f"/proc/sys/vm/{knob}", "w") as f:
                        f.write(value)
                except OSError as e:
                    log(f"cannot write vm.{knob}: {e}")
            return reply
        entropy, time_ns, machine_id = message.get("entropy"), message.get("timeNs"), message.get("machineId")
        try:
            seed = base64.b64decode(entropy, validate=True) if isinstance(entropy, str) else b""
        except binascii.Error:
            seed = b""
        if phase != "restore" or len(seed) < 32 or not isinstance(time_ns, int) \
                or not isinstance(machine_id, str) or not re.fullmatch("[0-9a-f]{32}", machine_id):
            return {"type": "error", "id": request_id, "code": "invalidRequest",
                    "message": "snapshot needs phase save, or phase restore with at least 32 bytes of "
                               "base64 entropy, an integer timeNs and a 32-hex-digit machineId"}
        time.clock_settime_ns(time.CLOCK_REALTIME, time_ns)
        rndaddentropy, rndreseedcrng = 0x40085203, 0x5207
        with open("/dev/urandom", "wb", buffering=0) as pool:
            try:
                # Credited and then used at once: a plain write would only be
                # mixed into the input pool, which the kernel draws from for
                # its generator up to a minute later.
                fcntl.ioctl(pool, rndaddentropy, struct.pack("ii", len(seed) * 8, len(seed)) + seed)
                fcntl.ioctl(pool, rndreseedcrng)
                reply["entropy"] = "reseeded"
            except OSError:
                pool.write(seed)
                reply["entropy"] = "mixed"
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            if path == "/etc/machine-id" or os.path.exists(path):
                with open(path, "w") as f:
                    f.write(machine_id + "\n")
        if self.worker is not None and self.language == "node":
            # V8 cannot reseed Math.random: a new worker is a new seed.
            self.discard_worker()
            error = self.wait_worker_ready()
            if error:
                return {"type": "error", "id": request_id, "code": "ioError", "message": error}
        elif self.worker is not None:
            self.worker.send({"type": "reseed"})
        return reply

    def start_container(self, message):
        import sessiond_container
        request_id = message.get("id")
        if not self.owns_machine or self.container is not None:
            return {"type": "error", "id": request_id, "code": "invalidRequest",
                    "message": "only a microVM's agent starts a container, and only one"}
        try:
            self.container = sessiond_container.start(message)
        except sessiond_container.ContainerError as e:
            return {"type": "error", "id": request_id, "code": "invalidRequest", "message": str(e)}
        except OSError as e:
            return {"type": "error", "id": request_id, "code": "ioError", "message": str(e)}
        self.container_fd = os.pidfd_open(self.container.pid)
        log(f"container started: {message.get('argv')[0]} as {message.get('uid')}:{message.get('gid')}, "
            f"pid {self.container.pid}")
        return {"type": "container", "id": request_id, "pid": self.container.pid}

    def container_ended(self):
        """The container's end, logged; the agent's exit status."""
        import sessiond_container
        status = self.container.wait()
        log(f"container ended: {sessiond_container.exit_description(status)}")
        return 0

    def shutdown(self):
        self.files.abort_upload()
        if self.worker is not None:
            self.worker.kill()
            self.worker.proc.wait()
            self.worker.close()
            self.worker = None


FILE_OPERATIONS = ("listFiles", "statFile", "readFile", "writeFile", "deleteFile")


def configure_network(message):
    import sessiond_network
    request_id = message.get("id")
    try:
        name = sessiond_network.configure(message)
    except sessiond_network.NetworkError as e:
        return {"type": "error", "id": request_id, "code": "invalidRequest", "message": str(e)}
    except OSError as e:
        return {"type": "error", "id": request_id, "code": "ioError", "message": str(e)}
    log(f"network: {name} is {message.get('address')}/{message.get('prefixLength')} via {message.get('gateway')}")
    return {"type": "network", "id": request_id}


def run_command(proc, stdin_data, out, err, deadline):
    """Feeds stdin, captures both pipes until the command exits (or the
    deadline passes), then kills what is left of its process group.
    Returns (exit code, timed out)."""
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    if not stdin_data:
        proc.stdin.close()
    timed_out, drain_until = False, None
    while streams:
        now = time.monotonic()
        if drain_until is None and proc.poll() is not None:
            drain_until = now + EXIT_DRAIN_S  # background children may hold the pipes
        if drain_until is not None and now >= drain_until:
            break
        if drain_until is None and now >= deadline:
            timed_out = True
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(SHELL_TERM_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
            break
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        if stdin_data:
            poller.register(stdin_fd, select.POLLOUT)
        limit = (drain_until or deadline) - now
        for fd, events in poller.poll(max(min(limit, BUSY_POLL_S), 0) * 1000):
            if fd == stdin_fd:
                try:
                    stdin_data = stdin_data[os.write(fd, stdin_data[:1 << 16]):]
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    stdin_data = b""  # the command stopped reading
                if not stdin_data:
                    proc.stdin.close()
                continue
            data = os.read(fd, 1 << 16)
            if data:
                streams[fd].feed(data)
            else:
                del streams[fd]
    if not timed_out and drain_until is None:
        # Both pipes closed: the command is exiting, or closed them and runs on.
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            timed_out = True
    _kill_group(proc, signal.SIGKILL)
    code = proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if not stream.closed:
            stream.close()
    if timed_out:
        return TIMEOUT_EXIT_CODE, True
    return (128 - code if code < 0 else code), False


def _kill_group(proc, signum):
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def describe(language):
    """What GET /metadata reports: runtimes, installed packages, the kernel."""
    runtimes, packages = [], []
    if language in ("python", "shell"):
        runtimes.append({"name": "python", "version": platform.python_version()})
        packages = python_packages()
    if language in ("node", "shell") and os.path.exists(NODE):
        runtimes.append(runtime("node"))
    if language == "shell":
        runtimes.insert(0, runtime("shell"))
    kernel = {"python": {"name": "IPython", "version": _distribution_version("ipython"),
                         "projectUrl": "https://ipython.org", "description": "IPython interactive shell"},
              "node": {"name": "node vm context", "version": runtimes[0]["version"] if runtimes else "",
                       "projectUrl": "https://nodejs.org", "description": "a persistent Node.js vm context"},
              "shell": {"name": "bash", "version": runtimes[0]["version"],
                        "projectUrl": "https://www.gnu.org/software/bash/",
                        "description": "one bash process per command"}}[language]
    return {"runtimes": runtimes, "packages": packages, "kernel": kernel}


def python_packages():
    import importlib.metadata
    found = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name and name.lower() not in found:
            found[name.lower()] = {"name": name, "version": distribution.version}
    return sorted(found.values(), key=lambda p: p["name"].lower())


def _distribution_version(name):
    import importlib.metadata
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def runtime(language):
    if language == "shell":
        first = subprocess.run([BASH, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        return {"name": "bash", "version": first.split("version ")[-1].split(" ")[0] if "version " in first else ""}
    if language == "node":
        version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
        return {"name": "node", "version": version.lstrip("v")}
    return {"name": "python", "version": platform.python_version()}


def open_transport(args):
    """The channel's fd, and whether its host end is known to be open."""
    if args.fd is not None:
        # Stream socket inherited from the daemon (namespace sandbox).
        os.set_inheritable(args.fd, False)
        return args.fd, True
    # virtio-serial port (microVM): one character device, read and written.
    return os.open(args.port, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY), False


def main():
    parser = argparse.ArgumentParser(description="sessiond sandbox agent")
    transport = parser.add_mutually_exclusive_group(required=True)
    transport.add_argument("--fd", type=int, help="connected stream socket inherited from the host")
    transport.add_argument("--port", help="virtio-serial port device to open read/write")
    parser.add_argument("--language", choices=["python", "node", "shell"], default="python",
                        help="the interpreter sessions run code in")
    parser.add_argument("--preload", default="", help="comma-separated modules to import before hello")
    parser.add_argument("--workdir", help="working directory for user code, if it exists")
    parser.add_argument("--fork-workers", action="store_true",
                        help="prepare the interpreter once in the agent and fork every worker from it, "
                             "as a zygote's sessions do (Python only)")
    parser.add_argument("--limits-cgroup", help="the cgroup v2 directory holding the agent under the "
                                                "pool's process limit, whose refused forks it reports")
    args = parser.parse_args()

    if args.workdir and os.path.isdir(args.workdir):
        os.chdir(args.workdir)
    channel_fd, host_connected = open_transport(args)
    preload = parse_modules(args.preload)
    warm = None
    if args.fork_workers and args.language == "python":
        import sessiond_worker
        os.environ["MPLBACKEND"] = "Agg"  # as a started worker's, and a zygote's
        warm = sessiond_worker.Warm(preload)
    return run(channel_fd, host_connected, args.language, preload, warm, args.limits_cgroup)


def parse_modules(text):
    return [m.strip() for m in text.split(",") if m.strip()]


def run(channel_fd, host_connected, language, preload, warm=None, limits_cgroup=None):
    """Serves the channel until it closes; the exit code. `warm`: the
    interpreter a zygote prepared, which workers are forked from."""
    # SIGTERM must still kill the worker, which runs in its own session.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    agent = Agent(channel_fd, language, preload, os.getcwd(), host_connected, warm, limits_cgroup)
    try:
        return agent.serve()
    except ChannelClosed:
        return 0
    except ContainerEnded:
        return agent.container_ended()
    except FrameError as e:
        log(f"closing: {e}")
        return 2
    finally:
        agent.shutdown()


if __name__ == "__main__":
    sys.exit(main())
