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

The forks and the intermediate's and pid 1's work are libsessiond-jail.so's
sessiond_session_spawn (the same code sessiond-nsinit runs): only the agent
comes back into Python, so only the agent and its workers write to (and so
copy) the interpreter's pages. No user code ever runs in this process.
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
    def __init__(self, control, jail, spawner, reaper, language, preload):
        self.control = control
        self.jail = jail
        self.spawner = spawner
        # Checked once here, so a missing reaper is logged once, not per session.
        if reaper and not os.access(reaper, os.X_OK):
            log(f"{reaper} cannot be run: each session's pid 1 reaps as a copy of this process")
            reaper = None
        self.reaper = reaper.encode() if reaper else None
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
                pidfd = self.spawn(json.dumps(spec).encode(), *fds)
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

    def spawn(self, spec, channel, go):
        """Forks the session; a pidfd of its pid 1. Returns only in the zygote."""
        sys.stdout.flush()
        sys.stderr.flush()
        # What os.fork() does around its fork, here around the library's
        # forks: the intermediate and pid 1 run only C and never come back
        # into Python, the agent does.
        ctypes.pythonapi.PyOS_BeforeFork()
        result = self.spawner(spec, channel, go, self.reaper)
        if result == 0:
            ctypes.pythonapi.PyOS_AfterFork_Child()
            self.control.detach()  # the intermediate closed it
            self.run_agent(spec, channel)
        ctypes.pythonapi.PyOS_AfterFork_Parent()
        if result < 0:
            raise RuntimeError("the session's fork failed (see the log above)")
        return result

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
    jail.sessiond_session_become_command.argtypes = [ctypes.c_char_p]
    # Called holding the interpreter's lock, as os.fork() forks.
    spawner = ctypes.PyDLL(args.jail_library).sessiond_session_spawn
    spawner.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
    spawner.restype = ctypes.c_int
    jail.sessiond_prepare()
    control = socket.socket(fileno=args.control_fd)
    os.set_inheritable(control.fileno(), False)
    zygote = Zygote(control, jail, spawner, args.reaper, args.language, sessiond_agent.parse_modules(args.preload))
    return zygote.serve()


if __name__ == "__main__":
    sys.exit(main())
