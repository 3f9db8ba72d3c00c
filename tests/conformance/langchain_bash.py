"""LangChain Python's SessionsBashTool and SessionsBashBackend against a Shell pool.

Mirrors langchain-ai/langchain-azure libs/azure-dynamic-sessions:
langchain_azure_dynamic_sessions/tools/sessions.py (SessionsBashTool) and
langchain_azure_dynamic_sessions/backends/sessions.py (SessionsBashBackend,
the deepagents sandbox backend): the same python-requests calls and reads.
The backend turns `status` into an exit code with a bare int(), so any
non-numeric status breaks it; its file operations are bash one-liners
(base64, awk, mktemp, find) that must work in the sandbox."""

import base64
import io
import json
import os
import re
import shlex
import urllib.parse
import uuid
from dataclasses import dataclass
from io import BytesIO

import requests

from conformance import SHELL_POOL_ENDPOINT, TOKEN, check, expect_equal, fail, run, shown, step

USER_AGENT = "langchain-azure-dynamic-sessions/1.0.4 (Language=Python)"
SESSION_DELETE_API_VERSION = "2025-10-02-preview"


def _sanitize_bash_input(query):
    query = re.sub(r"^(\s|`)*(?i:bash|sh)?\s*", "", query)
    query = re.sub(r"(\s|`)*$", "", query)
    return query


def _delete_session(*, pool_management_endpoint, session_id, access_token):
    if not pool_management_endpoint.endswith("/"):
        pool_management_endpoint += "/"
    query = f"identifier={urllib.parse.quote(session_id)}&api-version={SESSION_DELETE_API_VERSION}"
    separator = "&" if "?" in pool_management_endpoint else "?"
    api_url = pool_management_endpoint + "session" + separator + query
    response = requests.delete(api_url, headers={"Authorization": "Bearer " + str(access_token), "User-Agent": USER_AGENT})
    response.raise_for_status()


@dataclass
class RemoteFileMetadata:
    filename: str
    size_in_bytes: int


def _build_url(endpoint, session_id, path):
    if not endpoint.endswith("/"):
        endpoint += "/"
    query = f"identifier={urllib.parse.quote(session_id)}&api-version=2025-02-02-preview"
    separator = "&" if "?" in endpoint else "?"
    return endpoint + path + separator + query


class SessionsBashTool:
    def __init__(self, pool_management_endpoint, access_token_provider):
        self.pool_management_endpoint = pool_management_endpoint
        self.access_token_provider = access_token_provider
        self.session_id = str(uuid.uuid4())

    def _build_url(self, path):
        return _build_url(self.pool_management_endpoint, self.session_id, path)

    def execute(self, bash_command):
        bash_command = _sanitize_bash_input(bash_command)
        access_token = self.access_token_provider()
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        response = requests.post(self._build_url("executions"), headers=headers, json={"shellCommand": bash_command})
        response.raise_for_status()
        return response.json()

    def _run(self, bash_command):
        response = self.execute(bash_command)
        result = response.get("result", {})
        status_raw = response.get("status")
        try:
            exit_code = int(status_raw) if status_raw is not None else None
        except (ValueError, TypeError):
            exit_code = None
        content = json.dumps(
            {"stdout": result.get("stdout"), "stderr": result.get("stderr"), "exitCode": exit_code}, indent=2
        )
        return content, response

    def upload_file(self, *, data, remote_file_path):
        access_token = self.access_token_provider()
        api_url = self._build_url("files") + "&path=/mnt/data"
        headers = {"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT}
        files = [("file", (remote_file_path, data, "application/octet-stream"))]
        response = requests.request("POST", api_url, headers=headers, data={}, files=files)
        response.raise_for_status()
        response_json = response.json()
        return RemoteFileMetadata(filename=response_json.get("name"), size_in_bytes=response_json.get("sizeInBytes"))

    def download_file(self, *, remote_file_path):
        access_token = self.access_token_provider()
        api_url = self._build_url(f"files/{urllib.parse.quote(remote_file_path)}/content")
        response = requests.get(api_url, headers={"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT})
        response.raise_for_status()
        return BytesIO(response.content)

    def list_files(self):
        access_token = self.access_token_provider()
        response = requests.get(
            self._build_url("files"), headers={"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT}
        )
        response.raise_for_status()
        return [
            RemoteFileMetadata(filename=entry.get("name"), size_in_bytes=entry.get("sizeInBytes"))
            for entry in response.json()["value"]
        ]

    def delete_session(self):
        _delete_session(
            pool_management_endpoint=self.pool_management_endpoint,
            session_id=self.session_id,
            access_token=self.access_token_provider(),
        )


# deepagents' result types, reduced to the fields the backend fills.
@dataclass
class ExecuteResponse:
    output: str
    exit_code: int
    truncated: bool


class SessionsBashBackend:
    def __init__(self, pool_management_endpoint, *, access_token_provider, timeout=120, max_output_bytes=100_000):
        self._pool_management_endpoint = pool_management_endpoint
        self._session_id = str(uuid.uuid4())
        self._access_token_provider = access_token_provider
        self._timeout = timeout
        self._max_output_bytes = max_output_bytes

    def _build_url(self, path):
        return _build_url(self._pool_management_endpoint, self._session_id, path)

    def _auth_headers(self):
        return {"Authorization": f"Bearer {self._access_token_provider()}", "User-Agent": USER_AGENT}

    def execute(self, command, *, timeout=None):
        effective_timeout = timeout if timeout is not None else self._timeout
        headers = {**self._auth_headers(), "Content-Type": "application/json"}
        response = requests.post(
            self._build_url("executions"), headers=headers, json={"shellCommand": command}, timeout=effective_timeout
        )
        if not response.ok:
            try:
                detail = response.json()
            except Exception:
                detail = response.text
            raise RuntimeError(f"Execution request failed ({response.status_code}): {detail}")
        data = response.json()
        result = data.get("result", {})
        output = result.get("stdout", "") + result.get("stderr", "")
        truncated = False
        if len(output.encode("utf-8")) > self._max_output_bytes:
            output = output[: self._max_output_bytes]
            truncated = True
        raw_status = data.get("status")
        exit_code = int(raw_status) if raw_status is not None else None
        return ExecuteResponse(output=output, exit_code=exit_code, truncated=truncated)

    def ls_info(self, path):
        result = self.execute(f"ls -1apL {shlex.quote(path)} 2>/dev/null || true")
        items = []
        for name in result.output.strip().splitlines():
            if not name or name in ("./", "../"):
                continue
            items.append({"path": name.rstrip("/"), "is_dir": name.endswith("/")})
        return items

    def read(self, file_path, offset=0, limit=2000):
        start, end = offset + 1, offset + limit
        cmd = (
            f"awk 'NR>={start} && NR<={end} "
            f'{{printf "%6d\\t%s\\n", NR, $0}}\' '
            f"{shlex.quote(file_path)} 2>&1"
        )
        result = self.execute(cmd)
        if result.exit_code != 0 or "No such file" in result.output:
            return f"Error: File '{file_path}' not found"
        return result.output.rstrip()

    def write(self, file_path, content):
        b64 = base64.b64encode(content.encode("utf-8")).decode("ascii")
        escaped_path = shlex.quote(file_path)
        cmd = (
            f"if [ -e {escaped_path} ]; then "
            f"echo \"Error: File '{file_path}' already exists\" >&2; exit 1; fi && "
            f"mkdir -p $(dirname {escaped_path}) && "
            f"echo '{b64}' | base64 -d > {escaped_path}"
        )
        result = self.execute(cmd)
        if result.exit_code != 0 or "Error:" in result.output:
            return {"error": result.output.strip() or f"Failed to write file '{file_path}'"}
        return {"path": file_path}

    def edit(self, file_path, old_string, new_string, replace_all=False):
        old_b64 = base64.b64encode(old_string.encode("utf-8")).decode("ascii")
        new_b64 = base64.b64encode(new_string.encode("utf-8")).decode("ascii")
        escaped_path = shlex.quote(file_path)
        ra_flag = "1" if replace_all else "0"
        cmd = (
            f"OLD=$(echo '{old_b64}' | base64 -d) && "
            f"NEW=$(echo '{new_b64}' | base64 -d) && "
            f"if [ ! -f {escaped_path} ]; then exit 3; fi && "
            f'COUNT=$(grep -cF "$OLD" {escaped_path} || true) && '
            f'if [ "$COUNT" -eq 0 ]; then exit 1; fi && '
            f'if [ "$COUNT" -gt 1 ] && [ "{ra_flag}" = "0" ]; then '
            f"echo $COUNT; exit 2; fi && "
            f"TMPF=$(mktemp) && "
            f'awk -v old="$OLD" -v new="$NEW" -v ra={ra_flag} '
            "'BEGIN{done=0} "
            "{line=$0; "
            "while(idx=index(line,old)) { "
            "if(!ra && done){break}; "
            'printf "%s%s",substr(line,1,idx-1),new; '
            "line=substr(line,idx+length(old)); done=1}; "
            "print line}' "
            f'{escaped_path} > "$TMPF" && '
            f'mv "$TMPF" {escaped_path} && '
            f"echo $COUNT"
        )
        result = self.execute(cmd)
        if result.exit_code == 1:
            return {"error": f"Error: String not found in file: '{old_string}'"}
        if result.exit_code == 2:
            return {"error": f"Error: String '{old_string}' appears multiple times."}
        if result.exit_code == 3:
            return {"error": f"Error: File '{file_path}' not found"}
        if result.exit_code != 0:
            return {"error": result.output.strip() or f"Edit failed for '{file_path}'"}
        try:
            count = int(result.output.strip())
        except ValueError:
            count = 1
        return {"path": file_path, "occurrences": count}

    def glob_info(self, pattern, path="/"):
        cmd = (
            f"cd {shlex.quote(path)} 2>/dev/null && "
            f"find . -path './{pattern}' -printf '%P\\n' 2>/dev/null | "
            "while IFS= read -r f; do "
            'if [ -d "$f" ]; then echo "D:$f"; else echo "F:$f"; fi; done'
        )
        items = []
        for line in self.execute(cmd).output.strip().splitlines():
            if ":" in line:
                kind, fpath = line.split(":", 1)
                items.append({"path": fpath, "is_dir": kind == "D"})
        return items

    def upload_files(self, files):
        responses = []
        api_url = self._build_url("files") + "&path=/mnt/data"
        headers = self._auth_headers()
        for path, content in files:
            try:
                multipart = [("file", (os.path.basename(path), BytesIO(content), "application/octet-stream"))]
                resp = requests.post(api_url, headers=headers, data={}, files=multipart, timeout=self._timeout)
                resp.raise_for_status()
                responses.append({"path": path, "error": None})
            except Exception as error:
                responses.append({"path": path, "error": "permission_denied", "why": repr(error)})
        return responses

    def download_files(self, paths):
        responses = []
        headers = self._auth_headers()
        for path in paths:
            try:
                encoded = urllib.parse.quote(os.path.basename(path))
                resp = requests.get(self._build_url(f"files/{encoded}/content"), headers=headers, timeout=self._timeout)
                resp.raise_for_status()
                responses.append({"path": path, "content": resp.content, "error": None})
            except Exception:
                responses.append({"path": path, "content": None, "error": "file_not_found"})
        return responses


def tool_scenario(token_provider):
    tool = SessionsBashTool(SHELL_POOL_ENDPOINT, token_provider)

    step("SessionsBashTool: invoke('echo hello') gives stdout and exit code 0")
    content, response = tool._run("echo hello")
    expect_equal(json.loads(content), {"stdout": "hello\n", "stderr": "", "exitCode": 0}, "tool content")
    check(isinstance(response.get("status"), str), "status is the exit code as a string", shown(response))

    step("a fenced bash block is sanitised; a failing command reports its exit code")
    content, _ = tool._run("```bash\nls /no/such/dir\n```")
    parsed = json.loads(content)
    expect_equal(parsed["exitCode"], 2, "exit code of ls on a missing directory")
    check("No such file" in parsed["stderr"], "stderr of ls", shown(parsed))
    content, _ = tool._run("echo partial; exit 3")
    expect_equal(json.loads(content)["exitCode"], 3, "exit code of 'exit 3'")

    step("upload_file: top-level name and sizeInBytes of the resource")
    meta = tool.upload_file(data=io.BytesIO(b"alpha\nbeta\n"), remote_file_path="notes.txt")
    expect_equal(meta, RemoteFileMetadata("notes.txt", 11), "upload metadata")

    step("bash sees the upload; list_files and download_file read it back")
    content, _ = tool._run("wc -l < /mnt/data/notes.txt")
    expect_equal(json.loads(content)["stdout"].strip(), "2", "line count of the upload")
    tool._run("printf 'made by bash' > /mnt/data/made.txt")
    files = {f.filename: f.size_in_bytes for f in tool.list_files()}
    expect_equal(files.get("notes.txt"), 11, f"listed size of notes.txt ({files})")
    expect_equal(files.get("made.txt"), 12, f"listed size of made.txt ({files})")
    expect_equal(tool.download_file(remote_file_path="made.txt").read(), b"made by bash", "download of made.txt")

    step("delete_session")
    tool.delete_session()


def backend_scenario(token_provider):
    backend = SessionsBashBackend(SHELL_POOL_ENDPOINT, access_token_provider=token_provider)

    step("SessionsBashBackend.execute: int(status) of success and failure")
    result = backend.execute("echo out; echo err >&2")
    expect_equal((result.output, result.exit_code), ("out\nerr\n", 0), "output and exit code")
    expect_equal(backend.execute("false").exit_code, 1, "exit code of false")

    step("write / read / edit through base64, awk and mktemp in the sandbox")
    written = backend.write("/mnt/data/project/app.py", "def greet():\n    return 'hi'\n")
    expect_equal(written, {"path": "/mnt/data/project/app.py"}, "write")
    expect_equal(
        backend.write("/mnt/data/project/app.py", "again")["error"].startswith("Error: File"), True, "second write refused"
    )
    expect_equal(backend.read("/mnt/data/project/app.py"), "     1\tdef greet():\n     2\t    return 'hi'", "read")
    expect_equal(
        backend.edit("/mnt/data/project/app.py", "'hi'", "'hello'"),
        {"path": "/mnt/data/project/app.py", "occurrences": 1},
        "edit",
    )
    expect_equal(backend.read("/mnt/data/project/app.py", offset=1), "     2\t    return 'hello'", "read after edit")
    expect_equal(backend.read("/mnt/data/missing.py"), "Error: File '/mnt/data/missing.py' not found", "read of a missing file")

    step("ls_info and glob_info")
    listing = backend.ls_info("/mnt/data")
    check({"path": "project", "is_dir": True} in listing, "ls_info lists the directory", shown(listing))
    found = backend.glob_info("project/*.py", "/mnt/data")
    expect_equal(found, [{"path": "project/app.py", "is_dir": False}], "glob_info")

    step("upload_files / download_files through the file API")
    uploaded = backend.upload_files([("/mnt/data/input.bin", bytes(range(256)))])
    expect_equal(uploaded[0]["error"], None, f"upload_files ({uploaded})")
    expect_equal(backend.execute("wc -c < /mnt/data/input.bin").output.strip(), "256", "size seen by bash")
    downloaded = backend.download_files(["/mnt/data/input.bin", "/mnt/data/app-missing.txt"])
    expect_equal(downloaded[0]["content"], bytes(range(256)), "downloaded bytes")
    expect_equal(downloaded[1]["error"], "file_not_found", "download of a missing file")


def main():
    if not SHELL_POOL_ENDPOINT:
        fail("SESSIOND_SHELL_POOL_ENDPOINT is not set")
    token_provider = lambda: TOKEN  # noqa: E731
    tool_scenario(token_provider)
    backend_scenario(token_provider)


if __name__ == "__main__":
    run(main)
