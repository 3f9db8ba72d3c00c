"""Semantic Kernel .NET's SessionsPythonPlugin, replayed byte for byte.

.NET is not available here, so this writes on a socket the requests .NET's
HttpClient (SocketsHttpHandler) sends for the plugin, and reads the answers
the way System.Text.Json does for the plugin's types: case-sensitive names,
a JSON string (or null) where the type is string — a number there throws,
DateTime only in the ISO 8601 forms it parses, int only for whole numbers.

Mirrors microsoft/semantic-kernel dotnet/src/Plugins/Plugins.Core/CodeInterpreter/:
  * current releases (SessionsPythonPlugin.cs, 2024-10-02-preview): flat
    POST executions with PascalCase enums ("Inline", "Synchronous"),
    SessionsPythonCodeExecutionResult (status, result.executionResult typed
    string), POST files with MultipartFormDataContent, GET files,
    GET files/{Uri.EscapeDataString(name)}/content, SessionsRemoteFileMetadata
    (name, sizeInBytes int?, lastModifiedAt DateTime?, contentType, type);
  * earlier releases (legacy python/execute with the identifier
    and pythonCode in the body, files/upload, "{endpoint}/files" — a double
    slash — and python/downloadFile; SessionRemoteFileMetadata: filename,
    size int, last_modified_time DateTime?).

A numeric executionResult (the result of `6 * 7`) makes the current plugin
throw — SK issue #12445, on Azure too — so the scenario uses string results."""

import json
import os
import re
import socket
import tempfile
import urllib.parse
import uuid

from conformance import POOL_ENDPOINT, TOKEN, check, expect_equal, fail, run, shown, step

USER_AGENT = "Semantic-Kernel/1.61.0.0 (Language=dotnet)"


# --- System.Text.Json, the parts the plugin depends on ------------------------

def stj_serialize(value):
    """JsonSerializer.Serialize with default options: compact, and the default
    JavaScriptEncoder escapes HTML-sensitive and all non-ASCII characters."""
    if isinstance(value, dict):
        return "{" + ",".join(stj_serialize(k) + ":" + stj_serialize(v) for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\b\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}[ch])
        elif code < 0x20 or code >= 0x7F or ch in "\"&'+<>`":
            units = ch.encode("utf-16-be")
            for i in range(0, len(units), 2):
                out.append("\\u%04X" % int.from_bytes(units[i : i + 2], "big"))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


DOTNET_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,16})?)?(Z|[+-]\d{2}:\d{2})?)?")


def stj_string(obj, name, where):
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        fail(f"JsonException: {where}.{name} is typed string but sessiond sent {type(value).__name__}", shown(value))
    return value


def stj_int(obj, name, where, nullable):
    value = obj.get(name)
    if value is None:
        if not nullable:
            fail(f"JsonException: {where}.{name} is a non-nullable int but is missing or null", shown(obj))
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        fail(f"JsonException: {where}.{name} is typed int", shown(value))
    return value


def stj_datetime(obj, name, where):
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not DOTNET_DATETIME.fullmatch(value):
        fail(f"JsonException: {where}.{name} is not a DateTime System.Text.Json parses", shown(value))
    return value


def execution_result(text):
    """JsonSerializer.Deserialize<SessionsPythonCodeExecutionResult>."""
    document = json.loads(text)
    check(isinstance(document, dict), "the execution is a JSON object", shown(text))
    check("status" in document, "JsonException: the required property 'status' is missing", shown(document))
    status = stj_string(document, "status", "SessionsPythonCodeExecutionResult")
    details = document.get("result")
    if details is not None and not isinstance(details, dict):
        fail("JsonException: result is typed ExecutionDetails (an object)", shown(details))
    details = details or {}
    where = "ExecutionDetails"
    return {
        "status": status,
        "stdout": stj_string(details, "stdout", where),
        "stderr": stj_string(details, "stderr", where),
        "executionResult": stj_string(details, "executionResult", where),
    }


def remote_file_metadata(obj):
    """JsonSerializer.Deserialize<SessionsRemoteFileMetadata> (current)."""
    check(isinstance(obj, dict), "a file entry is a JSON object", shown(obj))
    where = "SessionsRemoteFileMetadata"
    return {
        "name": stj_string(obj, "name", where),
        "size": stj_int(obj, "sizeInBytes", where, nullable=True),
        "lastModifiedAt": stj_datetime(obj, "lastModifiedAt", where),
        "contentType": stj_string(obj, "contentType", where),
        "type": stj_string(obj, "type", where),
    }


def legacy_file_metadata(obj):
    """JsonSerializer.Deserialize<SessionRemoteFileMetadata> (earlier releases)."""
    where = "SessionRemoteFileMetadata"
    return {
        "filename": stj_string(obj, "filename", where),
        "size": stj_int(obj, "size", where, nullable=False),
        "last_modified_time": stj_datetime(obj, "last_modified_time", where),
    }


def get_property(element, name):
    """JsonElement.GetProperty: KeyNotFoundException when absent."""
    if not isinstance(element, dict) or name not in element:
        fail(f"KeyNotFoundException: GetProperty(\"{name}\")", shown(element))
    return element[name]


# --- HttpClient on the wire ---------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def text(self):
        return self.body.decode("utf-8")


class DotNetHttpClient:
    """One HttpClient: a kept-alive HTTP/1.1 connection, headers written in
    .NET's order (Host, the request's headers, then the content's)."""

    def __init__(self, default_headers=()):
        self.default_headers = list(default_headers)
        self.sock = None
        self.reader = None

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def send(self, method, uri, headers=(), content=None, content_headers=()):
        parts = urllib.parse.urlsplit(uri)
        target = parts.path + ("?" + parts.query if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in self.default_headers + list(headers)]
        if content is not None:
            lines += [f"{k}: {v}" for k, v in content_headers]
            lines.append(f"Content-Length: {len(content)}")
        elif method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (content or b"")
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = socket.create_connection((parts.hostname, parts.port), timeout=120)
                self.reader = self.sock.makefile("rb")
            try:
                self.sock.sendall(request)
                return self._read()
            except (ConnectionError, EOFError):
                self.close()
                if attempt:
                    raise

    def _read(self):
        status_line = self.reader.readline()
        if not status_line:
            raise EOFError("connection closed")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = self.reader.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.reader.readline().split(b";")[0], 16)
                chunk = self.reader.read(size + 2)[:size]
                if size == 0:
                    while self.reader.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += chunk
        else:
            body = self.reader.read(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)


def send_with_success_check(client, method, uri, **kwargs):
    """SendWithSuccessCheckAsync: a non-2xx answer is an HttpOperationException."""
    response = client.send(method, uri, **kwargs)
    if not 200 <= response.status < 300:
        fail(f"HttpOperationException: {method} {uri} answered {response.status}", shown(response.body.decode("utf-8", "replace")))
    return response


def multipart_form_data(name, file_name, data):
    """MultipartFormDataContent { ByteArrayContent, name, fileName }: a quoted
    GUID boundary, a bare name, filename quoted (or MIME-encoded) only when it
    must be, plus filename*; the part has no Content-Type of its own."""
    boundary = str(uuid.uuid4())
    token = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
    if any(ord(c) > 0x7F for c in file_name):
        import base64

        quoted = '"=?utf-8?B?' + base64.b64encode(file_name.encode("utf-8")).decode("ascii") + '?="'
    elif token.fullmatch(file_name):
        quoted = file_name
    else:
        quoted = '"' + file_name + '"'
    star = "utf-8''" + urllib.parse.quote(file_name, safe="!#$&+-.^_`|~")
    disposition = f"form-data; name={name}; filename={quoted}; filename*={star}"
    body = (
        f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("utf-8")
        + data
        + f"\r\n--{boundary}--\r\n".encode("ascii")
    )
    return body, [("Content-Type", f'multipart/form-data; boundary="{boundary}"')]


def escape_data_string(text):
    return urllib.parse.quote(text, safe="-_.~")


def base_endpoint(endpoint):
    """GetBaseEndpoint: strip /python/execute, make sure of a trailing slash."""
    endpoint = endpoint.replace("/python/execute", "")
    return endpoint if endpoint.endswith("/") else endpoint + "/"


# --- the plugin ---------------------------------------------------------------

class SessionsPythonPlugin:
    """The current plugin (2024-10-02-preview)."""

    API_VERSION = "2024-10-02-preview"

    def __init__(self, endpoint, auth_token_provider):
        self.endpoint = base_endpoint(endpoint)
        self.session_id = str(uuid.uuid4())
        self.auth_token_provider = auth_token_provider

    def _send(self, method, path, content=None, content_headers=()):
        uri = urllib.parse.urljoin(self.endpoint, f"{path}?identifier={self.session_id}&api-version={self.API_VERSION}")
        headers = [("User-Agent", USER_AGENT)]
        if self.auth_token_provider is not None:
            headers.append(("Authorization", f"Bearer {self.auth_token_provider()}"))
        client = DotNetHttpClient()  # `using var httpClient = factory.CreateClient()`
        try:
            return send_with_success_check(client, method, uri, headers=headers, content=content, content_headers=content_headers)
        finally:
            client.close()

    def execute_code(self, code):
        code = re.sub(r"(\s|`)*$", "", re.sub(r"^(\s|`)*(?i:python)?\s*", "", code))
        body = stj_serialize(
            {"codeInputType": "Inline", "executionType": "Synchronous", "timeoutInSeconds": 100, "code": code}
        ).encode("utf-8")
        response = self._send("POST", "executions", body, [("Content-Type", "application/json; charset=utf-8")])
        return execution_result(response.text())

    def upload_file(self, remote_file_name, local_file_path):
        with open(local_file_path, "rb") as f:
            content, headers = multipart_form_data("file", remote_file_name, f.read())
        response = self._send("POST", "files", content, headers)
        return remote_file_metadata(json.loads(response.text()))

    def download_file(self, remote_file_name):
        return self._send("GET", f"files/{escape_data_string(remote_file_name)}/content").body

    def list_files(self):
        document = json.loads(self._send("GET", "files").text())
        files = get_property(document, "value")
        check(isinstance(files, list), "JsonException: value is typed SessionsRemoteFileMetadata[]", shown(files))
        return [remote_file_metadata(entry) for entry in files]


class LegacySessionsPythonPlugin:
    """The plugin as earlier releases had it, before the 2024-10-02-preview switch."""

    API_VERSION = "2024-02-02-preview"

    def __init__(self, endpoint, auth_token_provider):
        self.endpoint = base_endpoint(endpoint)
        self.session_id = str(uuid.uuid4())
        self.auth_token_provider = auth_token_provider

    def _client(self):
        # AddHeadersAsync put them on DefaultRequestHeaders.
        return DotNetHttpClient([("User-Agent", USER_AGENT), ("Authorization", f"Bearer {self.auth_token_provider()}")])

    def execute_code(self, code):
        properties = {
            "identifier": self.session_id,
            "codeInputType": "Inline",
            "executionType": "Synchronous",
            "timeoutInSeconds": 100,
            "pythonCode": code,
        }
        body = stj_serialize({"properties": properties}).encode("utf-8")
        client = self._client()
        try:
            response = client.send(
                "POST",
                self.endpoint + f"python/execute?api-version={self.API_VERSION}",
                content=body,
                content_headers=[("Content-Type", "application/json; charset=utf-8")],
            )
        finally:
            client.close()
        if not 200 <= response.status < 300:
            fail(f"HttpRequestException: Failed to execute python code. Status: {response.status}", shown(response.text()))
        element = json.loads(response.text())
        return {name: get_property(element, name) for name in ("status", "result", "stdout", "stderr")}

    def upload_file(self, remote_file_path, local_file_path):
        with open(local_file_path, "rb") as f:
            content, headers = multipart_form_data("file", remote_file_path, f.read())
        client = self._client()
        try:
            response = client.send(
                "POST",
                f"{self.endpoint}files/upload?identifier={self.session_id}&api-version={self.API_VERSION}",
                content=content,
                content_headers=headers,
            )
        finally:
            client.close()
        if not 200 <= response.status < 300:
            fail(f"HttpRequestException: Failed to upload file. Status code: {response.status}", shown(response.text()))
        element = json.loads(response.text())
        return legacy_file_metadata(get_property(get_property(element, "value")[0], "properties"))

    def download_file(self, remote_file_path):
        client = self._client()
        try:
            response = client.send(
                "GET",
                f"{self.endpoint}python/downloadFile?identifier={self.session_id}&filename={remote_file_path}"
                f"&api-version={self.API_VERSION}",
            )
        finally:
            client.close()
        if not 200 <= response.status < 300:
            fail(f"HttpRequestException: Failed to download file. Status code: {response.status}", shown(response.text()))
        return response.body

    def list_files(self):
        client = self._client()
        try:
            # "{endpoint}/files" on an endpoint that ends in '/': a double slash.
            response = client.send(
                "GET", f"{self.endpoint}/files?identifier={self.session_id}&api-version={self.API_VERSION}"
            )
        finally:
            client.close()
        if not 200 <= response.status < 300:
            fail(f"HttpRequestException: Failed to list files. Status code: {response.status}")
        files = get_property(json.loads(response.text()), "value")
        return [legacy_file_metadata(get_property(entry, "properties")) for entry in files]


def current_scenario(local):
    plugin = SessionsPythonPlugin(POOL_ENDPOINT, lambda: TOKEN)

    step("ExecuteCodeAsync: a string result (escaped quotes in the body)")
    result = plugin.execute_code("greeting = 'hello ' + \"<world> & co\"\ngreeting")
    expect_equal(result["status"], "Succeeded", "status")
    expect_equal(result["executionResult"], "hello <world> & co", "executionResult")

    step("ExecuteCodeAsync: print, and non-ASCII through \\u escapes")
    result = plugin.execute_code("print('h\u00e9llo \u2713')")
    expect_equal((result["status"], result["stdout"]), ("Succeeded", "h\u00e9llo \u2713\n"), "status and stdout")

    step("ExecuteCodeAsync: an exception is 200 with status Failed")
    result = plugin.execute_code("import json\njson.loads('{oops')")
    expect_equal(result["status"], "Failed", "status")
    check("JSONDecodeError" in (result["stderr"] or ""), "stderr carries the traceback", shown(result))

    step("UploadFileAsync: quoted boundary, bare name, filename*; a single resource back")
    path = os.path.join(local, "data.csv")
    with open(path, "wb") as f:
        f.write(b"a,b\n1,2\n")
    meta = plugin.upload_file("data.csv", path)
    expect_equal((meta["name"], meta["size"], meta["type"] is not None), ("data.csv", 8, True), "uploaded metadata")
    check(meta["lastModifiedAt"] is not None, "lastModifiedAt is present", shown(meta))
    meta = plugin.upload_file("r\u00e9sum\u00e9 2024.txt", path)
    expect_equal(meta["name"], "r\u00e9sum\u00e9 2024.txt", "name of a non-ASCII upload (from filename*)")

    step("ListFilesAsync and DownloadFileAsync (EscapeDataString)")
    listed = {f["name"]: f for f in plugin.list_files()}
    for name in ("data.csv", "r\u00e9sum\u00e9 2024.txt"):
        check(name in listed and listed[name]["size"] == 8, f"{name} is listed with its size", shown(listed))
    expect_equal(plugin.download_file("r\u00e9sum\u00e9 2024.txt"), b"a,b\n1,2\n", "downloaded bytes")
    result = plugin.execute_code("open('/mnt/data/r\u00e9sum\u00e9 2024.txt').read()")
    expect_equal(result["executionResult"], "a,b\n1,2\n", "the upload as code sees it")


def legacy_scenario(local):
    plugin = LegacySessionsPythonPlugin(POOL_ENDPOINT, lambda: TOKEN)

    step("earlier releases: python/execute with identifier and pythonCode in the body; flat answer")
    result = plugin.execute_code("x = 40\nprint('legacy')\nx + 2")
    expect_equal((result["status"], result["result"], result["stdout"]), ("Success", 42, "legacy\n"), "flat answer")

    step("earlier releases: files/upload of /mnt/data/legacy.csv (quoted filename)")
    path = os.path.join(local, "legacy.csv")
    with open(path, "wb") as f:
        f.write(b"k,v\n")
    meta = plugin.upload_file("/mnt/data/legacy.csv", path)
    expect_equal((meta["filename"], meta["size"]), ("legacy.csv", 4), "value[0].properties")

    step("earlier releases: {endpoint}/files (double slash) and python/downloadFile")
    names = [f["filename"] for f in plugin.list_files()]
    check("legacy.csv" in names, "legacy.csv is listed", shown(names))
    expect_equal(plugin.download_file("legacy.csv"), b"k,v\n", "downloaded bytes")
    result = plugin.execute_code("x")
    expect_equal(result["result"], 40, "the session kept x")


def main():
    with tempfile.TemporaryDirectory() as local:
        current_scenario(local)
        legacy_scenario(local)


if __name__ == "__main__":
    run(main)
