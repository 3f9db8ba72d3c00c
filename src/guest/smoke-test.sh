#!/bin/bash
# Boots a guest image built by build-image.sh under plain QEMU, as the
# libvirt backend would (virtio disk on a throwaway overlay, the agent's
# virtio-serial port on a unix socket), then checks the agent end to end:
# hello, an execution, a numpy/pandas/matplotlib chart, an import of every
# preinstalled Python library (docs/environment.md), node and bash, and
# power-off once the host closes the channel. Uses KVM when /dev/kvm is
# usable, TCG otherwise.
#
#   smoke-test.sh IMAGE_DIR [PRELOAD]     e.g. PRELOAD=numpy,pandas,matplotlib
#
# Environment: SMOKE_ACCEL=kvm|tcg forces the accelerator; SMOKE_CPU sets
# -cpu; SMOKE_TIMEOUT (seconds, default 300) bounds the wait for the hello;
# SMOKE_CONSOLE=FILE keeps a copy of the guest's serial console;
# SMOKE_APPEND adds kernel parameters (e.g. sessiond.language=python).
set -euo pipefail

usage() {
    echo "usage: $0 IMAGE_DIR [PRELOAD]" >&2
    exit 2
}
case $# in 1 | 2) ;; *) usage ;; esac
image=$(cd "$1" && pwd)
preload=${2:-}
hello_timeout=${SMOKE_TIMEOUT:-300}
client_python=/usr/bin/python3

for f in manifest.json vmlinuz rootfs.qcow2; do
    [ -s "$image/$f" ] || { echo "smoke-test: $image/$f missing" >&2; exit 1; }
done
if [ -n "${SMOKE_ACCEL:-}" ]; then
    accel=$SMOKE_ACCEL
elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    accel=kvm
else
    accel=tcg
fi

work=$(mktemp -d -t sessiond-smoke.XXXXXX)
qemu_pid=""
client_pid=""
cleanup() {
    if [ -n "$client_pid" ]; then
        kill "$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [ -n "${SMOKE_CONSOLE:-}" ] && [ -f "$work/console.log" ]; then
        cp "$work/console.log" "$SMOKE_CONSOLE" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

fail() {
    echo "smoke-test: FAIL: $*" >&2
    if [ -s "$work/console.log" ]; then
        echo "--- guest console (last 40 lines) ---" >&2
        tail -n 40 "$work/console.log" >&2
    fi
    exit 1
}

cmdline=$("$client_python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["kernelCommandLine"])' "$image/manifest.json")
initrd=$("$client_python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["files"]["initrd"] or "")' "$image/manifest.json")
[ -z "$preload" ] || cmdline="$cmdline sessiond.preload=$preload"
[ -z "${SMOKE_APPEND:-}" ] || cmdline="$cmdline $SMOKE_APPEND"

qemu-img create -q -f qcow2 -F qcow2 -b "$image/rootfs.qcow2" "$work/overlay.qcow2"
qemu_args=(
    -accel "$accel" -m 1024 -smp 1 ${SMOKE_CPU:+-cpu "$SMOKE_CPU"}
    -nodefaults -no-user-config -display none -no-reboot
    -kernel "$image/vmlinuz" -append "$cmdline"
    -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2"
    -device virtio-rng-pci
    -device virtio-serial
    -chardev "socket,id=agent,path=$work/agent.sock,server=on,wait=off"
    -device "virtserialport,chardev=agent,name=org.sessiond.agent.0"
    -serial "file:$work/console.log"
)
[ -z "$initrd" ] || qemu_args+=(-initrd "$image/$initrd")

echo "smoke-test: booting $(basename "$image") under $accel${preload:+ with preload $preload}"
started=$(date +%s.%N)
qemu-system-x86_64 "${qemu_args[@]}" &
qemu_pid=$!

# In the background: bash runs a trap only once the foreground command ends,
# while `wait` returns to it at once.
"$client_python" - "$work/agent.sock" "$started" "$hello_timeout" "$qemu_pid" <<'EOF' &
import json, os, socket, struct, sys, time

path, started, hello_timeout, qemu_pid = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])


def since_start():
    return time.time() - started


def qemu_alive():
    # QEMU is the shell's child, so once dead it stays a zombie until the shell reaps it.
    try:
        with open(f"/proc/{qemu_pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit(f"channel closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock, timeout):
    sock.settimeout(timeout)
    length = struct.unpack(">I", read_exact(sock, 4))[0]
    return json.loads(read_exact(sock, length))


def request(sock, message, timeout=120):
    body = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    sent = time.time()
    reply = read_frame(sock, timeout)
    return reply, time.time() - sent


sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
while True:
    if not qemu_alive():
        raise SystemExit("qemu exited before its agent socket appeared")
    try:
        sock.connect(path)
        break
    except (FileNotFoundError, ConnectionRefusedError):
        if since_start() > 30:
            raise SystemExit("qemu created no agent socket")
        time.sleep(0.05)

try:
    hello = read_frame(sock, hello_timeout)
except socket.timeout:
    raise SystemExit(f"no hello within {hello_timeout:.0f} s")
if hello.get("type") != "hello" or hello.get("protocol") != 1:
    raise SystemExit(f"unexpected first frame: {hello}")
print(f"smoke-test: hello after {since_start():.1f} s from QEMU start: {json.dumps(hello)}")

reply, took = request(sock, {"type": "execute", "id": 1, "code": "import sys; print(sys.version)",
                             "timeoutMs": 10000, "maxOutputChars": 4096})
if reply.get("id") != 1 or reply.get("status") != "ok" or not reply.get("stdout", "").startswith("3."):
    raise SystemExit(f"unexpected reply: {reply}")
print(f"smoke-test: execute sys.version ok in {took:.2f} s: {reply['stdout'].strip()}")

code = ("import numpy as np, pandas as pd, matplotlib.pyplot as plt, os, socket\n"
        "plt.plot(np.arange(10), pd.Series(range(10)) ** 2)\n"
        "plt.savefig('chart.png')\n"
        # An open figure would be the cell's result (an image), as in Jupyter.
        "plt.close('all')\n"
        "[np.__version__, pd.__version__, os.getcwd(), os.path.getsize('chart.png') > 0,"
        " socket.gethostname()]")
reply, took = request(sock, {"type": "execute", "id": 2, "code": code,
                             "timeoutMs": 120000, "maxOutputChars": 4096}, timeout=150)
result = reply.get("result", "")
if reply.get("status") != "ok" or "'/mnt/data'" not in result or "True" not in result \
        or "'sandbox'" not in result:
    raise SystemExit(f"unexpected reply: {reply}")
print(f"smoke-test: numpy/pandas/matplotlib chart in /mnt/data ok in {took:.2f} s: {result}")

# Every library docs/environment.md promises, then the other session types' interpreters.
code = r"""
import importlib, json, subprocess, time
modules = ["numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "scipy.interpolate",
           "sklearn", "sklearn.linear_model", "statsmodels.api", "seaborn", "sympy", "networkx",
           "openpyxl", "xlsxwriter", "docx", "reportlab", "reportlab.pdfgen.canvas", "PIL.Image",
           "lxml.etree", "bs4", "tabulate", "requests", "pkg_resources", "IPython"]
versions, failed = {}, {}
started = time.monotonic()
for name in modules:
    try:
        module = importlib.import_module(name)
        versions[name] = str(getattr(module, "__version__", "") or getattr(module, "VERSION", ""))
    except Exception as e:
        failed[name] = repr(e)
imports_s = time.monotonic() - started
def run(*argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except OSError as e:
        return [127, "", repr(e)]
    return [done.returncode, done.stdout.strip(), done.stderr.strip()[-300:]]
print(json.dumps({"versions": versions, "failed": failed, "importSeconds": round(imports_s, 1),
                  "node": run("node", "-e", "console.log(process.version, [1, 2, 3].map(x => x * 2).join())"),
                  "bash": run("bash", "-c", 'echo "$BASH_VERSION" $((6 * 7))')}))
"""
reply, took = request(sock, {"type": "execute", "id": 3, "code": code,
                             "timeoutMs": 600000, "maxOutputChars": 16384}, timeout=660)
if reply.get("status") != "ok":
    raise SystemExit(f"unexpected reply to the imports: {reply}")
try:
    report = json.loads(reply.get("stdout", "").strip().splitlines()[-1])
except (ValueError, IndexError):
    raise SystemExit(f"unexpected output of the imports: {reply}")
if report["failed"]:
    raise SystemExit(f"imports failed: {report['failed']}")
print(f"smoke-test: {len(report['versions'])} imports ok in {report['importSeconds']} s: "
      + ", ".join(f"{k} {v}".strip() for k, v in report["versions"].items() if "." not in k or k == "PIL.Image"))
node_status, node_out, node_err = report["node"]
if node_status != 0 or not node_out.endswith(" 2,4,6"):
    raise SystemExit(f"node -e failed: status {node_status}, {node_out!r}, {node_err!r}")
bash_status, bash_out, bash_err = report["bash"]
if bash_status != 0 or not bash_out.endswith(" 42"):
    raise SystemExit(f"bash -c failed: status {bash_status}, {bash_out!r}, {bash_err!r}")
print(f"smoke-test: node -e ok ({node_out.split()[0]}), bash -c ok ({bash_out.split()[0]}); "
      f"execution took {took:.2f} s")

sock.close()
closed = time.time()
while qemu_alive():
    if time.time() - closed > 60:
        raise SystemExit("the VM did not power off within 60 s of the channel closing")
    time.sleep(0.1)
print(f"smoke-test: VM powered off {time.time() - closed:.1f} s after the channel closed")
EOF
client_pid=$!
client_status=0
wait "$client_pid" || client_status=$?
client_pid=""
[ "$client_status" -eq 0 ] || fail "agent check"

status=0
wait "$qemu_pid" || status=$?
qemu_pid=""
[ "$status" -eq 0 ] || fail "qemu exited with status $status"
grep -q "powering off (agent ended)" "$work/console.log" || fail "init did not report the power-off"
echo "smoke-test: PASS"
