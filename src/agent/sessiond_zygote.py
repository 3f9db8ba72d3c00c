"""A pool's zygote: imports the agent, the worker, IPython and the pool's
preload modules once, then forks every session of the pool from itself, so a
new sandbox costs a few forks and shares these pages copy-on-write.

The daemon runs it as the command of a jail of its own in which it stays
namespace root (src/sandbox/namespace/zygote.hpp has the protocol). For each
session:

  zygote ─ fork ─> intermediate: unshares the session's namespaces, forks
                   the session's pid 1, hands the zygote a pidfd of it, exits
                   pid 1: mounts the session's own /proc, /mnt/data, /tmp and
                   /dev/shm, waits for the daemon to move it into the
                   session's cgroup, forks the agent, then execs
                   sessiond-reap, which reaps orphans until the agent exits
                   (so no copy of this interpreter stays for that)
                   agent: drops to the sandbox user under the seccomp filter
                   and serves the channel, forking workers from the warm
                   interpreter it inherited

The kernel work is libsessiond-jail.so, the same code sessiond-nsinit runs.
No user code ever runs in this process.
"""

import argparse
import ctypes
import gc
import json
import os
import socket
import sys
import traceback

sys.dont_write_bytecode = True
import sessiond_agent
import sessiond_worker

MAX_MESSAGE = 64 * 1024
AGENT_FD = 3


def log(text):
    print(f"sessiond-zygote: {text}", file=sys.stderr, flush=True)


class Zygote:
    def __init__(self, control, jail, reaper, language, preload):
        self.control = control
        self.jail = jail
        # Checked once here, so a missing reaper is logged once, not per session.
        if reaper and not os.access(reaper, os.X_OK):
            log(f"{reaper} cannot be run: each session's pid 1 reaps in Python")
            reaper = None
        self.reaper = reaper
        self.language = language
        self.preload = preload
        self.warm = sessiond_worker.Warm(preload) if language == "python" else None
        # What the sessions share must stay shared: a collection in a fork
        # would write to every object it visits, copying each page it is on.
        gc.collect()
        gc.freeze()

    def serve(self):
        self.control.send(json.dumps({"type": "ready"}).encode())
        while True:
            message, fds, _, _ = socket.recv_fds(self.control, MAX_MESSAGE, 2)
            if not message:
                return 0  # the daemon closed the socket: retire
            request = json.loads(message)
            try:
                if len(fds) != 2:
                    raise RuntimeError(f"a spawn needs 2 fds, got {len(fds)}")
                spec = request["spec"]
                pidfd = self.spawn(json.dumps(spec).encode(), "network" in spec, *fds)
                try:
                    socket.send_fds(self.control, [json.dumps({"type": "spawned", "id": request["id"]}).encode()],
                                    [pidfd])
                finally:
                    os.close(pidfd)
            except Exception as e:
                log(f"spawn failed: {e}")
                self.control.send(json.dumps({"type": "failed", "id": request.get("id"), "error": str(e)}).encode())
            finally:
                for fd in fds:
                    os.close(fd)

    def spawn(self, spec, connect, channel, go):
        """Forks the session; a pidfd of its pid 1."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                self.control.close()
                ours.close()
                self.jail.sessiond_session_unshare()
                session = os.fork()
                if session == 0:
                    theirs.close()
                    self.run_session(spec, connect, channel, go)
                pidfd = os.pidfd_open(session)
                socket.send_fds(theirs, [b"spawned"], [pidfd])
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(0)
        theirs.close()
        try:
            os.waitpid(pid, 0)
            _, fds, _, _ = socket.recv_fds(ours, 64, 1)
            if not fds:
                raise RuntimeError("the session's fork failed (see the log above)")
            return fds[0]
        finally:
            ours.close()

    def run_session(self, spec, connect, channel, go):
        """The session's pid 1; never returns."""
        try:
            sessiond_agent.set_process_name("sessiond-init")
            self.jail.sessiond_session_enter(spec)
            if os.read(go, 1) != b"x":
                os._exit(125)  # the daemon gave up on this session
            os.close(go)
            if connect:  # the daemon has moved the session's network interface in
                self.jail.sessiond_session_connect(spec)
            self.jail.sessiond_session_enter_cgroup()
            agent = os.fork()
            if agent == 0:
                self.run_agent(spec, channel)
            os.close(channel)
            if self.reaper:
                error = self.jail.sessiond_session_exec_reaper(self.reaper.encode(), agent)
                log(f"exec {self.reaper}: {os.strerror(error)}; this session's pid 1 reaps in Python")
            self.jail.sessiond_session_reap(agent)
        except BaseException:
            traceback.print_exc()
        os._exit(125)

    def run_agent(self, spec, channel):
        code = 1
        try:
            sessiond_agent.set_process_name("sessiond-agent")
            os.dup2(channel, AGENT_FD)
            # Keeps only the channel and stdio, drops to the sandbox user and
            # installs the seccomp filter, as nsinit does for a fresh sandbox.
            self.jail.sessiond_session_become_command(spec)
            code = sessiond_agent.run(AGENT_FD, True, self.language, self.preload, self.warm)
        except SystemExit as e:  # SIGTERM, through the agent's handler
            code = e.code
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)


def main():
    parser = argparse.ArgumentParser(description="sessiond zygote")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--jail-library", required=True)
    parser.add_argument("--reaper", help="sessiond-reap, which each session's pid 1 becomes")
    parser.add_argument("--language", choices=["python", "node", "shell"], default="python")
    parser.add_argument("--preload", default="")
    args = parser.parse_args()

    sessiond_agent.set_process_name("sessiond-zygote")
    jail = ctypes.CDLL(args.jail_library)
    for name in ("sessiond_session_enter", "sessiond_session_connect", "sessiond_session_become_command"):
        getattr(jail, name).argtypes = [ctypes.c_char_p]
    jail.sessiond_session_reap.argtypes = [ctypes.c_int]
    jail.sessiond_session_exec_reaper.argtypes = [ctypes.c_char_p, ctypes.c_int]
    jail.sessiond_prepare()
    control = socket.socket(fileno=args.control_fd)
    os.set_inheritable(control.fileno(), False)
    zygote = Zygote(control, jail, args.reaper, args.language, sessiond_agent.parse_modules(args.preload))
    return zygote.serve()


if __name__ == "__main__":
    sys.exit(main())
