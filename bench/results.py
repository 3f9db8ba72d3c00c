"""Benchmark results: collects the figures the bench programs write (one JSON
object a line), turns wrk's report into one, and writes the results file with
the machine, the backend, the build, the configuration and, beside each
figure, the previous run's (from bench/results/latest-<backend>.json).

Standard library only; run with Debian's /usr/bin/python3.

  results.py wrk FIGS --id ID --measure TEXT          < wrk --latency output
  results.py add FIGS --id ID --measure TEXT --unit U [--n N] [--notes T] NAME=VALUE...
  results.py write FIGS --backend B --build-type T --config FILE --mode full|quick|partial
                   [--parameters TEXT] [--load TEXT]
  results.py show FILE [--markdown]

`write` prints the table, writes bench/results/<timestamp>-<backend>.json
and, for a full run only, points the link latest-<backend>.json at it (a
quick or partial run is named <timestamp>-<backend>-<mode>.json and compared
with the latest full run, which it does not replace).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")

# The targets (namespace backend): figure id -> (stat, comparison, value).
TARGETS = {
    "allocation.sequential": [("p50", "<=", 5), ("p99", "<=", 20)],
    "allocation.concurrent": [("p50", "<=", 5), ("p99", "<=", 20)],
    "execute.round_trip": [("p50", "<=", 2)],
    "session.get": [("rate", ">=", 20000)],
    "refill": [("rate", ">=", 50)],
    "burst": [("failures", "==", 0)],
    "density.pss": [("pss", "<=", 15)],
    "density.sessions": [("sessions", ">=", 1000), ("failures", "==", 0)],
}
SYMBOLS = {"<=": "≤", ">=": "≥", "==": "="}
HIDDEN = {"max"}  # in the JSON, not the table


def number(value):
    if value == int(value) or abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def stats_text(stats):
    return "  ".join(f"{name} {number(v)}" for name, v in stats.items() if name not in HIDDEN)


def target_text(targets):
    return ", ".join(f"{stat} {SYMBOLS[op]} {number(v)}" for stat, op, v in targets)


def meets(targets, stats):
    def ok(stat, op, v):
        x = stats.get(stat)
        return x is not None and {"<=": x <= v, ">=": x >= v, "==": x == v}[op]

    return all(ok(*t) for t in targets)


def read_figures(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_figure(path, figure):
    with open(path, "a") as f:
        f.write(json.dumps(figure) + "\n")


def milliseconds(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def parse_wrk(text):
    """wrk --latency's report: requests per second, p50 and p99, errors."""
    stats = {"rate": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for p in ("50", "99"):
        stats[f"p{p}"] = milliseconds(re.search(rf"^\s+{p}%\s+(\S+)", text, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    stats["errors"] = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    setup = re.search(r"(\d+) threads and (\d+) connections", text)
    duration = re.search(r"requests in ([\d.]+\w+)", text).group(1)
    notes = f"wrk -t{setup.group(1)} -c{setup.group(2)}, {duration}, keep-alive"
    return requests, stats, notes


def machine(load):
    def field(path, key):
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        return ""

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(field("/proc/meminfo", "MemTotal").split()[0]) / 1048576, 1),
        "kernel": platform.release(),
        "cpu_model": field("/proc/cpuinfo", "model name"),
        "load_at_start": load,
    }


def commit():
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD")
    return head + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def table(result, markdown=False):
    m = result["machine"]
    header = [
        f"sessiond benchmarks: {result['backend']} backend, {result['build_type']} build, {result['mode']} run, "
        f"config {result['config']['file']}",
        f"machine: {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']}, CPU {m['cpu_model']}; "
        f"load average at start {m['load_at_start']}",
        f"run {result['timestamp']} at {result['commit']}; "
        + (f"previous: {result['previous']['timestamp']} at {result['previous']['commit']}"
           if result["previous"] else "no previous run"),
    ]
    rows = []
    for f in result["figures"]:
        prev = f.get("previous")
        verdict = ""
        if f.get("target"):
            verdict = f["target"] + (" (met)" if f["meets_target"] else " (NOT met)")
        rows.append([f["measure"], str(f["n"]), f["unit"], stats_text(f["stats"]),
                     stats_text(prev["stats"]) if prev else "-", verdict])
    titles = ["measure", "n", "unit", "now", "previous", "target"]
    if markdown:
        lines = [line + "  " for line in header] + [""]
        lines.append("| " + " | ".join(titles) + " |")
        lines.append("|" + "---|" * len(titles))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows + [titles]) for i in range(len(titles))]
    line = lambda r: "  ".join(c.ljust(w) if i != 1 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join(header + ["", line(titles)] + [line(r) for r in rows])


def write(args):
    figures = read_figures(args.figures)
    latest = os.path.join(RESULTS, f"latest-{args.backend}.json")
    previous = None
    if os.path.exists(latest):
        with open(latest) as f:
            previous = json.load(f)
    before = {f["id"]: f for f in previous["figures"]} if previous else {}
    for f in figures:
        old = before.get(f["id"])
        f["previous"] = {"n": old["n"], "stats": old["stats"]} if old else None
        targets = TARGETS.get(f["id"]) if args.backend == "namespace" else None
        f["target"] = target_text(targets) if targets else None
        f["meets_target"] = meets(targets, f["stats"]) if targets else None
    with open(os.path.join(ROOT, args.config)) as f:
        definition = json.load(f)
    now = datetime.datetime.now(datetime.timezone.utc)
    result = {
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "backend": args.backend,
        "mode": args.mode,
        "build_type": args.build_type,
        "machine": machine(args.load),
        "commit": commit(),
        "config": {"file": args.config, "definition": definition},
        "parameters": args.parameters,
        "previous": {"file": os.path.relpath(os.path.realpath(latest), ROOT), "timestamp": previous["timestamp"],
                     "commit": previous["commit"]} if previous else None,
        "figures": figures,
    }
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "" if args.mode == "full" else f"-{args.mode}"
    path = os.path.join(RESULTS, f"{now.strftime('%Y%m%dT%H%M%SZ')}-{args.backend}{suffix}.json")
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    with open(path, "w") as f:
        f.write(text)
    if args.mode == "full":  # latest-<backend>.json: a link to this file
        os.symlink(os.path.basename(path), latest + ".tmp")
        os.replace(latest + ".tmp", latest)
    print(table(result))
    print(f"\nwritten: {os.path.relpath(path, ROOT)}" + (f" and {os.path.relpath(latest, ROOT)}" if not suffix else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("wrk", "add"):
        p = sub.add_parser(name)
        p.add_argument("figures")
        p.add_argument("--id", required=True)
        p.add_argument("--measure", required=True)
        if name == "add":
            p.add_argument("--unit", default="")
            p.add_argument("--n", type=int, default=1)
            p.add_argument("--notes", default="")
            p.add_argument("stats", nargs="+", metavar="NAME=VALUE")
    p = sub.add_parser("write")
    p.add_argument("figures")
    p.add_argument("--backend", required=True)
    p.add_argument("--build-type", required=True)
    p.add_argument("--config", required=True, help="relative to the repository")
    p.add_argument("--mode", choices=("full", "quick", "partial"), required=True)
    p.add_argument("--parameters", default="")
    p.add_argument("--load", default="")
    p = sub.add_parser("show")
    p.add_argument("file")
    p.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    if args.command == "wrk":
        text = sys.stdin.read()
        sys.stdout.write(text)
        n, stats, notes = parse_wrk(text)
        append_figure(args.figures, {"id": args.id, "measure": args.measure, "unit": "req/s; p50, p99: ms", "n": n,
                                     "stats": stats,
                                     "notes": notes})
    elif args.command == "add":
        stats = {k: float(v) for k, v in (s.split("=", 1) for s in args.stats)}
        append_figure(args.figures, {"id": args.id, "measure": args.measure, "unit": args.unit, "n": args.n,
                                     "stats": stats, "notes": args.notes})
    elif args.command == "write":
        write(args)
    else:
        with open(args.file) as f:
            print(table(json.load(f), args.markdown))


if __name__ == "__main__":
    main()
