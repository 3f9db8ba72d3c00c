#!/usr/bin/python3
"""Writes the seed corpus of the libFuzzer targets (tests/fuzz/corpus/<target>/):
small inputs in each target's format, taken from what real clients and the
agent send. Run it after changing a format; scripts/fuzz.sh fuzzes a copy, so
the seeds stay as written here.

    /usr/bin/python3 tests/fuzz/seed_corpus.py
"""
import hashlib
import json
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def http_request():
    def req(method, target, headers=(), body=b""):
        lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
        lines += list(headers)
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    execute = json.dumps({"properties": {"codeInputType": "inline", "executionType": "synchronous",
                                         "code": "print(1)"}}).encode()
    auth = "Authorization: Bearer executor-key"
    admin = "Authorization: Bearer admin-key"
    upload = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n"
              b"Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--b--\r\n")
    return {
        "healthz": req("GET", "/healthz"),
        "execute": req("POST", "/pools/python/code/execute?api-version=2024-10-02-preview&identifier=abcd-1234",
                       [auth, "Content-Type: application/json"], execute),
        "upload": req("POST", "/pools/python/files/upload?identifier=abcd&path=%2Fmnt%2Fdata",
                      [auth, "Content-Type: multipart/form-data; boundary=b"], upload),
        "chunked": (b"POST /pools/python/code/execute?identifier=abcd HTTP/1.1\r\nHost: x\r\n" + auth.encode() +
                    b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"),
        "pipelined": req("GET", "/pools//python/files?identifier=abcd&identifier=x", [auth]) +
                     req("HEAD", "/healthz", ["Connection: close"]),
        "method-not-allowed": req("DELETE", "/healthz"),
        "not-found": req("GET", "/nope/%2e%2e/a+b?x=%zz&&=&y"),
        "put-pool": req("PUT", "/pools/new-pool", [admin, "Content-Type: application/json"],
                        b'{"properties":{"containerType":"PythonLTS"}}'),
        "file-content": req("GET", "/pools/python/files/sub/a%20b.txt/content?identifier=abcd", [auth]),
        "expect": req("POST", "/pools/python/files/upload?identifier=abcd",
                      [auth, "Expect: 100-continue", "Content-Length: 99999999"]),
        "http10": b"GET /metrics HTTP/1.0\r\n\r\n",
    }


def multipart():
    def body(boundary, parts, newline=b"\r\n", close=True):
        out = b""
        for headers, content in parts:
            out += b"--" + boundary + newline + newline.join(headers) + newline + newline + content + newline
        if close:
            out += b"--" + boundary + b"--" + newline
        return out

    disp = b'Content-Disposition: form-data; name="file"; filename="data.csv"'
    return {
        "requests": b"multipart/form-data; boundary=1b4cf6\n" +
                    body(b"1b4cf6", [([b'Content-Disposition: form-data; name="purpose"'], b"assistants"),
                                     ([disp, b"Content-Type: text/csv"], b"a,b\n1,2\n")]),
        "quoted-boundary": b'multipart/form-data; boundary="a b:c"\n' + body(b"a b:c", [([disp], b"x")]),
        "dotnet-rfc2047": b"multipart/form-data; boundary=\"c1\"\n" +
                          body(b"c1", [([b"Content-Disposition: form-data; name=file; "
                                         b"filename=\"=?utf-8?B?w6kuY3N2?=\"; filename*=utf-8''%C3%A9.csv"], b"e")]),
        "bare-lf": b"multipart/form-data; boundary=x\n" + body(b"x", [([disp], b"lf")], newline=b"\n"),
        "no-close": b"multipart/form-data; boundary=x\n" + body(b"x", [([disp], b"open")], close=False),
        "preamble": b"Multipart/Form-Data;charset=utf-8;boundary=----WebKitFormBoundary7\n" +
                    b"preamble\r\n" + body(b"----WebKitFormBoundary7", [([disp], b"--\r\n--")]) + b"epilogue",
        "many-parts": b"multipart/form-data; boundary=p\n" +
                      body(b"p", [([b'Content-Disposition: form-data; name="f%d"' % i], b"v") for i in range(5)]),
        "not-multipart": b"application/json\n{}",
    }


def request_body():
    def sel(n, document):
        text = document if isinstance(document, str) else json.dumps(document)
        return bytes([n]) + text.encode()

    pool = {"containerType": "PythonLTS", "backend": "namespace",
            "scaleConfiguration": {"maxConcurrentSessions": 10, "readySessionInstances": 1},
            "dynamicPoolConfiguration": {"lifecycleConfiguration": {"lifecycleType": "Timed",
                                                                   "cooldownPeriodInSeconds": 300}},
            "execution": {"defaultTimeoutInSeconds": 30, "maxTimeoutInSeconds": 60, "outputStreamsMaxLength": 4096,
                          "preloadModules": ["numpy"]},
            "resources": {"cpu": 0.5, "memory": "1.5Gi", "pids": 128}}
    config = json.loads((HERE.parent.parent / "config" / "sessiond.json").read_text())
    key = {"name": "ci", "role": "PoolAdministrator", "sha256": hashlib.sha256(b"key").hexdigest(), "pools": ["a"]}
    return {
        "execute-properties": sel(0, {"properties": {"codeInputType": "inline", "executionType": "synchronous",
                                                     "code": "print(1)", "timeoutInSeconds": 500}}),
        "execute-flat": sel(0, {"pythonCode": "1+1", "identifier": "abcd", "executionType": "Asynchronous",
                                "outputStreamsMaxLength": 10}),
        "execute-shell": sel(0, {"shellCommand": "ls", "execCommandAndArgs": ["ls", "-l"], "stdin": "x"}),
        "pool-azure": sel(1, {"name": "fuzz-pool", "type": "Microsoft.App/sessionPools", "location": "x",
                              "properties": pool}),
        "pool-bare": sel(1, {"containerType": "Shell", "execution": {"maxTimeoutInSeconds": 30},
                             "resources": {"memory": "512Mi"}}),
        "config": sel(2, config),
        "config-keys": sel(2, {"auth": {"keys": [key]}, "pools": [{"name": "ab", "resources": {"memoryMiB": 64}}]}),
        "paths": sel(3, "/mnt/data/sub\nfile.csv"),
        "paths-dotdot": sel(3, "a/../b\n\xc3\xa9"),
        "identifier-keys": sel(4, [key]),
    }


def frame(message):
    body = json.dumps(message).encode() if not isinstance(message, bytes) else message
    return struct.pack(">I", len(body)) + body


def agent_channel():
    hello = frame({"type": "hello", "protocol": 1, "language": "python"})
    result = frame({"type": "result", "id": 1, "status": "ok", "stdout": "1\n", "stderr": "", "result": "",
                    "durationMs": 3, "stateLost": False})
    files = frame({"type": "files", "id": 2, "entries": [{"path": "a.txt", "name": "a.txt", "directory": "",
                                                         "type": "file", "size": 4, "mtimeMs": 1700000000000}]})
    data = frame({"type": "fileData", "id": 3, "data": "ZGF0YQ==", "size": 4, "mtimeMs": 1, "eof": True})
    written = frame({"type": "written", "id": 4, "entry": {"path": "a.txt", "name": "a.txt", "type": "file",
                                                           "size": 4, "mtimeMs": 1}})
    return {
        "hello-only": hello,
        "conversation": hello + result + files + data + written,
        "error-reply": hello + frame({"type": "error", "id": 1, "code": "notFound", "message": "no"}),
        "description": hello + frame({"type": "description", "id": 1, "runtimes": [], "packages": [],
                                      "kernel": {}}),
        "snapshot": hello + frame({"type": "snapshot", "id": 1, "phase": "restore", "value": "reseeded"}),
        "wrong-id": hello + frame({"type": "result", "id": 7}),
        "not-object": hello + frame(b"[1,2]"),
        "too-long": hello + struct.pack(">I", 1 << 20),
        "split-header": hello + b"\x00\x00",
        "two-hellos": hello + hello,
    }


def main():
    targets = {"http_request": http_request(), "multipart": multipart(), "request_body": request_body(),
               "agent_channel": agent_channel()}
    for target, seeds in targets.items():
        directory = CORPUS / target
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
