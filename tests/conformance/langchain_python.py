"""LangChain Python's SessionsPythonREPLTool against a PythonLTS pool.

Mirrors langchain-ai/langchain-azure
libs/azure-dynamic-sessions/langchain_azure_dynamic_sessions/tools/sessions.py
(SessionsPythonREPLTool, _build_url, _delete_session, RemoteFileMetadata):
the same python-requests calls, URLs, headers and bodies, and the same reads
of the answers. The package itself is not installable here, so its code is
transcribed, minus LangChain's BaseTool plumbing."""

import io
import json
import os
import re
import tempfile
import urllib.parse
import uuid
from copy import deepcopy
from dataclasses import dataclass
from io import BytesIO

import requests

from conformance import PLOT_CODE, PNG_MAGIC, POOL_ENDPOINT, TOKEN, check, expect_equal, run, shown, step

USER_AGENT = "langchain-azure-dynamic-sessions/1.0.4 (Language=Python)"
SESSION_DELETE_API_VERSION = "2025-10-02-preview"


def _sanitize_input(query):
    query = re.sub(r"^(\s|`)*(?i:python)?\s*", "", query)
    query = re.sub(r"(\s|`)*$", "", query)
    return query


def _build_delete_session_url(pool_management_endpoint, session_id):
    if not pool_management_endpoint.endswith("/"):
        pool_management_endpoint += "/"
    encoded_session_id = urllib.parse.quote(session_id)
    query = f"identifier={encoded_session_id}&api-version={SESSION_DELETE_API_VERSION}"
    query_separator = "&" if "?" in pool_management_endpoint else "?"
    return pool_management_endpoint + "session" + query_separator + query


def _delete_session(*, pool_management_endpoint, session_id, access_token):
    api_url = _build_delete_session_url(pool_management_endpoint, session_id)
    headers = {"Authorization": "Bearer " + str(access_token), "User-Agent": USER_AGENT}
    response = requests.delete(api_url, headers=headers)
    response.raise_for_status()


@dataclass
class RemoteFileMetadata:
    filename: str
    size_in_bytes: int

    @staticmethod
    def from_dict(data):
        properties = data.get("properties", {})
        return RemoteFileMetadata(filename=properties.get("filename"), size_in_bytes=properties.get("size"))


class SessionsPythonREPLTool:
    def __init__(self, pool_management_endpoint, access_token_provider, session_id=None):
        self.pool_management_endpoint = pool_management_endpoint
        self.access_token_provider = access_token_provider
        self.session_id = session_id or str(uuid.uuid4())
        self.sanitize_input = True

    def _build_url(self, path):
        pool_management_endpoint = self.pool_management_endpoint
        if not pool_management_endpoint.endswith("/"):
            pool_management_endpoint += "/"
        encoded_session_id = urllib.parse.quote(self.session_id)
        query = f"identifier={encoded_session_id}&api-version=2024-02-02-preview"
        query_separator = "&" if "?" in pool_management_endpoint else "?"
        return pool_management_endpoint + path + query_separator + query

    def execute(self, python_code):
        if self.sanitize_input:
            python_code = _sanitize_input(python_code)
        access_token = self.access_token_provider()
        api_url = self._build_url("code/execute")
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": python_code}}
        response = requests.post(api_url, headers=headers, json=body)
        response.raise_for_status()
        response_json = response.json()
        return response_json.get("properties", {})

    # BaseTool.invoke() calls this; it returns (content for the LLM, artifact).
    def _run(self, python_code, remove_image_base64=True):
        response = self.execute(python_code)
        result = deepcopy(response.get("result"))
        if isinstance(result, dict) and remove_image_base64:
            if result.get("type") == "image" and "base64_data" in result:
                result.pop("base64_data")
        content = json.dumps(
            {"result": result, "stdout": response.get("stdout"), "stderr": response.get("stderr")}, indent=2
        )
        return content, response

    def upload_file(self, *, data=None, remote_file_path=None, local_file_path=None):
        if data and local_file_path:
            raise ValueError("data and local_file_path cannot be provided together")
        if data:
            file_data = data
        elif local_file_path:
            if not remote_file_path:
                remote_file_path = os.path.basename(local_file_path)
            file_data = open(local_file_path, "rb")
        access_token = self.access_token_provider()
        api_url = self._build_url("files/upload")
        headers = {"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT}
        files = [("file", (remote_file_path, file_data, "application/octet-stream"))]
        try:
            response = requests.request("POST", api_url, headers=headers, data={}, files=files)
        finally:
            if local_file_path:
                file_data.close()
        response.raise_for_status()
        response_json = response.json()
        return RemoteFileMetadata.from_dict(response_json["value"][0])

    def download_file(self, *, remote_file_path, local_file_path=None):
        access_token = self.access_token_provider()
        encoded_remote_file_path = urllib.parse.quote(remote_file_path)
        api_url = self._build_url(f"files/content/{encoded_remote_file_path}")
        headers = {"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT}
        response = requests.get(api_url, headers=headers)
        response.raise_for_status()
        if local_file_path:
            with open(local_file_path, "wb") as f:
                f.write(response.content)
        return BytesIO(response.content)

    def list_files(self):
        access_token = self.access_token_provider()
        api_url = self._build_url("files")
        headers = {"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT}
        response = requests.get(api_url, headers=headers)
        response.raise_for_status()
        response_json = response.json()
        return [RemoteFileMetadata.from_dict(entry) for entry in response_json["value"]]

    def delete_session(self):
        _delete_session(
            pool_management_endpoint=self.pool_management_endpoint,
            session_id=self.session_id,
            access_token=self.access_token_provider(),
        )

    def close(self):
        self.delete_session()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.close()


def main():
    token_provider = lambda: TOKEN  # noqa: E731  (what users pass as access_token_provider)

    with SessionsPythonREPLTool(POOL_ENDPOINT, token_provider) as tool:
        step("invoke('6 * 7'): the result as JSON for the LLM")
        content, artifact = tool._run("6 * 7")
        expect_equal(json.loads(content), {"result": 42, "stdout": "", "stderr": ""}, "tool content")

        step("an LLM-style fenced block is sanitised, then prints")
        content, artifact = tool._run("```python\nx = 6 * 7\nprint('hello', x)\n```")
        parsed = json.loads(content)
        expect_equal(parsed["stdout"], "hello 42\n", "stdout")
        expect_equal(parsed["result"], "", "result of a cell ending in print()")

        step("state persists in the session")
        content, _ = tool._run("x + 1")
        expect_equal(json.loads(content)["result"], 43, "result using the earlier variable")

        step("an exception is HTTP 200 with the traceback in stderr")
        content, artifact = tool._run("1 / 0")
        parsed = json.loads(content)
        check("ZeroDivisionError" in (parsed["stderr"] or ""), "stderr names the exception", shown(parsed))
        expect_equal(artifact.get("status"), "Failure", "status of a failed execution")

        step("a matplotlib figure: base64 left out of the content, kept in the artifact")
        content, artifact = tool._run(PLOT_CODE)
        parsed = json.loads(content)
        result = parsed["result"]
        check(isinstance(result, dict), "the figure's result is an object", shown(parsed))
        expect_equal(result.get("type"), "image", "result.type")
        expect_equal(result.get("format"), "png", "result.format")
        check("base64_data" not in result, "the content for the LLM carries no base64", shown(result))
        import base64

        png = base64.b64decode(artifact["result"]["base64_data"])
        check(png.startswith(PNG_MAGIC), "artifact's base64_data is a PNG", shown(repr(png[:16])))

        step("upload_file(data=...): filename and size from value[0].properties")
        csv = b"region,sales\nnorth,10\nsouth,32\n"
        meta = tool.upload_file(data=io.BytesIO(csv), remote_file_path="sales.csv")
        expect_equal(meta, RemoteFileMetadata("sales.csv", len(csv)), "upload metadata")

        step("upload_file into a directory, and with a local file (remote name defaults to its basename)")
        meta = tool.upload_file(data=io.BytesIO(b"q1"), remote_file_path="reports/q1 final.txt")
        expect_equal(meta.size_in_bytes, 2, "size of reports/q1 final.txt")
        with tempfile.TemporaryDirectory() as local:
            path = os.path.join(local, "local-notes.txt")
            with open(path, "wb") as f:
                f.write(b"written locally\n")
            meta = tool.upload_file(local_file_path=path)
            expect_equal(meta, RemoteFileMetadata("local-notes.txt", 16), "upload of a local file")

        step("code sees the uploads in /mnt/data, its working directory")
        content, _ = tool._run("import pandas as pd\ndf = pd.read_csv('sales.csv')\nint(df.sales.sum())")
        expect_equal(json.loads(content)["result"], 42, "sum over the uploaded CSV")
        content, _ = tool._run("open('/mnt/data/reports/q1 final.txt').read()")
        expect_equal(json.loads(content)["result"], "q1", "file in the uploaded directory")

        step("a file written by code, listed and downloaded")
        tool._run("with open('/mnt/data/out.txt', 'w') as f:\n    f.write('from code')")
        files = {f.filename: f.size_in_bytes for f in tool.list_files()}
        for name, size in [("sales.csv", len(csv)), ("local-notes.txt", 16), ("out.txt", 9)]:
            expect_equal(files.get(name), size, f"listed size of {name} (listing {files})")
        check("reports" in files, "the uploaded directory is listed", shown(files))
        expect_equal(tool.download_file(remote_file_path="out.txt").read(), b"from code", "download of out.txt")
        expect_equal(tool.download_file(remote_file_path="sales.csv").read(), csv, "download of sales.csv")

        step("download of a quoted name in a directory (slashes kept, space as %20)")
        with tempfile.TemporaryDirectory() as local:
            target = os.path.join(local, "q1.txt")
            tool.download_file(remote_file_path="reports/q1 final.txt", local_file_path=target)
            with open(target, "rb") as f:
                expect_equal(f.read(), b"q1", "downloaded reports/q1 final.txt")

        session_id = tool.session_id
    step("leaving the context manager deleted the session; the identifier starts afresh")
    again = SessionsPythonREPLTool(POOL_ENDPOINT, token_provider, session_id=session_id)
    expect_equal(again.list_files(), [], "files of the recreated session")
    content, artifact = again._run("'x' in globals()")
    expect_equal(json.loads(content)["result"], False, "variables of the recreated session")
    again.delete_session()

    step("a session id that needs quoting")
    odd = SessionsPythonREPLTool(POOL_ENDPOINT, token_provider, session_id="team|run#7(a)")
    content, _ = odd._run("'quoted id works'")
    expect_equal(json.loads(content)["result"], "quoted id works", "result in a session with a quoted id")
    odd.delete_session()


if __name__ == "__main__":
    run(main)
