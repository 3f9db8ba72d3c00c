"""Semantic Kernel Python's SessionsPythonTool (httpx) against a PythonLTS pool.

Mirrors microsoft/semantic-kernel
python/semantic_kernel/core_plugins/sessions_python_tool/sessions_python_plugin.py
with sessions_python_settings.py and sessions_remote_file_metadata.py: one
shared httpx.AsyncClient(timeout=5) whose headers are updated in place before
each call; execute indexes properties['status'], ['result'], ['stdout'] and
['stderr'] (a missing key is a KeyError); uploads name the file
/mnt/data/<name>, read value[0].properties (filename, size) and then, in the
newest releases, list the files and look for the upload. The package is not
installable here, so its code is transcribed.

Because execute_code leaves "Content-Type: application/json" in the client's
headers, every later upload goes out as a multipart body under that
Content-Type (httpx keeps a client header over the one it would generate).
The scenario uploads after executing, as a conversation does."""

import asyncio
import os
import re
import tempfile
import uuid
from io import BytesIO

import httpx
from httpx import AsyncClient, HTTPStatusError

from conformance import PLOT_CODE, POOL_ENDPOINT, TOKEN, check, expect_equal, fail, run, shown, step

USER_AGENT = "User-Agent"  # semantic_kernel.const.USER_AGENT
SESSIONS_USER_AGENT = "semantic-kernel-python/1.37.0 (Language=Python)"
SESSIONS_API_VERSION = "2024-02-02-preview"


class FunctionExecutionException(Exception):
    pass


class SessionsRemoteFileMetadata:
    def __init__(self, filename, size_in_bytes):
        self.filename = filename
        self.size_in_bytes = size_in_bytes

    @property
    def full_path(self):
        if not self.filename.startswith("/mnt/data/"):
            return f"/mnt/data/{self.filename}"
        return self.filename

    @staticmethod
    def from_dict(data):
        return SessionsRemoteFileMetadata(filename=data["filename"], size_in_bytes=data["size"])


def _validate_endpoint(endpoint):
    # ACASessionsSettings._validate_endpoint: strip python/execute, collapse //.
    from urllib.parse import urlsplit, urlunsplit

    if "python/execute" in endpoint:
        parts = urlsplit(endpoint.replace("python/execute", ""))._asdict()
    else:
        parts = urlsplit(endpoint)._asdict()
    parts["path"] = re.sub(r"/{2,}", "/", parts["path"]) if parts["path"] else "/"
    return str(urlunsplit(parts.values()))


class SessionsPythonTool:
    def __init__(self, auth_callback, pool_management_endpoint):
        # The real field is a pydantic HttpsUrl, which refuses http://, so the
        # plugin needs sessiond's HTTPS listener.
        if not pool_management_endpoint.startswith("https://"):
            fail("Semantic Kernel takes only an https:// pool management endpoint", pool_management_endpoint)
        self.pool_management_endpoint = _validate_endpoint(pool_management_endpoint)
        self.auth_callback = auth_callback
        # SessionsPythonTool(http_client=...) is how a user trusts their own CA
        # (httpx ignores SSL_CERT_FILE); without it the plugin makes
        # AsyncClient(timeout=5) and trusts the system's CAs.
        self.http_client = AsyncClient(timeout=5, verify=os.environ["SESSIOND_TEST_CA_FILE"])
        # SessionsPythonSettings.model_dump(exclude_none, by_alias), field order kept.
        self.session_id = str(uuid.uuid4())
        self.settings = {"codeInputType": "inline", "executionType": "synchronous", "code": None, "timeoutInSeconds": 100}

    async def _ensure_auth_token(self):
        import inspect

        if inspect.iscoroutinefunction(self.auth_callback):
            return await self.auth_callback()
        return self.auth_callback()

    def _sanitize_input(self, code):
        code = re.sub(r"^(\s|`)*(?i:python)?\s*", "", code)
        return re.sub(r"(\s|`)*$", "", code)

    def _construct_remote_file_path(self, remote_file_path):
        if not remote_file_path.startswith("/mnt/data/"):
            remote_file_path = f"/mnt/data/{remote_file_path}"
        return remote_file_path

    def _build_url_with_version(self, base_url, endpoint, params):
        params["api-version"] = SESSIONS_API_VERSION
        query_string = "&".join([f"{key}={value}" for key, value in params.items()])
        if not base_url.endswith("/"):
            base_url += "/"
        if endpoint.endswith("/"):
            endpoint = endpoint[:-1]
        return f"{base_url}{endpoint}?{query_string}"

    async def execute_code(self, code):
        if not code:
            raise FunctionExecutionException("The provided code is empty")
        code = self._sanitize_input(code)
        auth_token = await self._ensure_auth_token()
        self.http_client.headers.update(
            {"Authorization": f"Bearer {auth_token}", "Content-Type": "application/json", USER_AGENT: SESSIONS_USER_AGENT}
        )
        properties = dict(self.settings, code=code)
        request_body = {"properties": {k: v for k, v in properties.items() if v is not None}}
        url = self._build_url_with_version(
            base_url=str(self.pool_management_endpoint), endpoint="code/execute/", params={"identifier": self.session_id}
        )
        try:
            response = await self.http_client.post(url=url, json=request_body)
            response.raise_for_status()
            result = response.json()["properties"]
            return (
                f"Status:\n{result['status']}\n"
                f"Result:\n{result['result']}\n"
                f"Stdout:\n{result['stdout']}\n"
                f"Stderr:\n{result['stderr']}"
            )
        except HTTPStatusError as e:
            error_message = e.response.text if e.response.text else e.response.reason_phrase
            raise FunctionExecutionException(
                f"Code execution failed with status code {e.response.status_code} and error: {error_message}"
            ) from e

    async def upload_file(self, *, local_file_path, remote_file_path=None):
        remote_file_path = self._construct_remote_file_path(remote_file_path or os.path.basename(local_file_path))
        auth_token = await self._ensure_auth_token()
        self.http_client.headers.update({"Authorization": f"Bearer {auth_token}", USER_AGENT: SESSIONS_USER_AGENT})
        url = self._build_url_with_version(
            base_url=str(self.pool_management_endpoint), endpoint="files/upload", params={"identifier": self.session_id}
        )
        try:
            with open(local_file_path, "rb") as data:
                files = {"file": (remote_file_path, data, "application/octet-stream")}
                response = await self.http_client.post(url=url, files=files)
                response.raise_for_status()
                response_json = response.json()
                uploaded = SessionsRemoteFileMetadata.from_dict(response_json["value"][0]["properties"])
        except HTTPStatusError as e:
            error_message = e.response.text if e.response.text else e.response.reason_phrase
            raise FunctionExecutionException(
                f"Upload failed with status code {e.response.status_code} and error: {error_message}"
            ) from e
        # Newer releases confirm the upload by listing the session's files.
        listed = await self.list_files()
        expected_filename = os.path.basename(remote_file_path)
        matching = next(
            (
                f
                for f in listed
                if f.full_path == remote_file_path or f.filename == expected_filename or f.full_path == expected_filename
            ),
            None,
        )
        if matching is None:
            raise RuntimeError(f"Upload verification failed: '{remote_file_path}' not found in session file list")
        return uploaded, matching

    async def list_files(self):
        auth_token = await self._ensure_auth_token()
        self.http_client.headers.update({"Authorization": f"Bearer {auth_token}", USER_AGENT: SESSIONS_USER_AGENT})
        url = self._build_url_with_version(
            base_url=str(self.pool_management_endpoint), endpoint="files", params={"identifier": self.session_id}
        )
        try:
            response = await self.http_client.get(url=url)
            response.raise_for_status()
            response_json = response.json()
            return [SessionsRemoteFileMetadata.from_dict(entry["properties"]) for entry in response_json["value"]]
        except HTTPStatusError as e:
            error_message = e.response.text if e.response.text else e.response.reason_phrase
            raise FunctionExecutionException(
                f"List files failed with status code {e.response.status_code} and error: {error_message}"
            ) from e

    async def download_file(self, *, remote_file_name, local_file_path=None):
        auth_token = await self._ensure_auth_token()
        self.http_client.headers.update({"Authorization": f"Bearer {auth_token}", USER_AGENT: SESSIONS_USER_AGENT})
        url = self._build_url_with_version(
            base_url=str(self.pool_management_endpoint),
            endpoint=f"files/content/{remote_file_name}",
            params={"identifier": self.session_id},
        )
        try:
            response = await self.http_client.get(url=url)
            response.raise_for_status()
            if local_file_path:
                with open(local_file_path, "wb") as f:
                    f.write(response.content)
                return None
            return BytesIO(response.content)
        except HTTPStatusError as e:
            error_message = e.response.text if e.response.text else e.response.reason_phrase
            raise FunctionExecutionException(
                f"Download failed with status code {e.response.status_code} and error: {error_message}"
            ) from e


def sections(text):
    """Splits execute_code's answer back into its four sections."""
    match = re.fullmatch(r"Status:\n(.*)\nResult:\n(.*)\nStdout:\n(.*)\nStderr:\n(.*)", text, re.S)
    if not match:
        fail("execute_code's answer has the four sections", text)
    return dict(zip(["status", "result", "stdout", "stderr"], match.groups()))


async def scenario():
    async def auth_callback():  # what users give as auth_callback
        return TOKEN

    tool = SessionsPythonTool(auth_callback=auth_callback, pool_management_endpoint=POOL_ENDPOINT)
    check(
        tool.pool_management_endpoint.rstrip("/") == POOL_ENDPOINT.rstrip("/"),
        "endpoint kept by the settings validator",
        tool.pool_management_endpoint,
    )
    async with tool.http_client:
        step("execute_code: a result (within the 5 s client timeout)")
        out = sections(await tool.execute_code("6 * 7"))
        expect_equal(out, {"status": "Success", "result": "42", "stdout": "", "stderr": ""}, "execute_code sections")

        step("execute_code: print, after sanitising a fenced block")
        out = sections(await tool.execute_code("```python\nprint('hello')\n```"))
        expect_equal((out["status"], out["result"], out["stdout"]), ("Success", "", "hello\n"), "status/result/stdout")

        step("execute_code: an exception is 200 with Failure and the traceback")
        out = sections(await tool.execute_code("raise ValueError('bad input')"))
        expect_equal(out["status"], "Failure", "status")
        check("ValueError" in out["stderr"] and "bad input" in out["stderr"], "stderr carries the traceback", shown(out))

        step("execute_code: a matplotlib figure comes back as the result object")
        out = sections(await tool.execute_code(PLOT_CODE))
        check(
            "'type': 'image'" in out["result"] and "'format': 'png'" in out["result"] and "'base64_data': 'iVBOR" in out["result"],
            "the result is the image object",
            shown(out["result"], 120),
        )

        with tempfile.TemporaryDirectory() as local:
            step("upload_file after executing: multipart body under the client's application/json header")
            path = os.path.join(local, "prices.csv")
            with open(path, "wb") as f:
                f.write(b"item,price\napple,3\npear,4\n")
            uploaded, listed = await tool.upload_file(local_file_path=path)
            expect_equal((uploaded.filename, uploaded.size_in_bytes), ("prices.csv", 26), "value[0].properties")
            expect_equal(listed.full_path, "/mnt/data/prices.csv", "the listed file's full_path")

            # Only into /mnt/data itself: the newer releases look for the upload
            # in GET files, which lists one directory (as Azure's does).
            step("upload_file with an explicit /mnt/data/ remote path")
            uploaded, listed = await tool.upload_file(local_file_path=path, remote_file_path="/mnt/data/p.csv")
            expect_equal((uploaded.filename, listed.filename), ("p.csv", "p.csv"), "the upload's and the listing's filename")

            step("code reads the upload; list_files and download_file")
            out = sections(await tool.execute_code("import pandas as pd\nint(pd.read_csv('/mnt/data/prices.csv').price.sum())"))
            expect_equal(out["result"], "7", "sum over the upload")
            names = {f.filename: f.size_in_bytes for f in await tool.list_files()}
            expect_equal(names.get("prices.csv"), 26, f"listed size ({names})")
            data = await tool.download_file(remote_file_name="prices.csv")
            expect_equal(data.read(), b"item,price\napple,3\npear,4\n", "downloaded bytes")
            target = os.path.join(local, "copy.csv")
            await tool.download_file(remote_file_name="p.csv", local_file_path=target)
            with open(target, "rb") as f:
                expect_equal(len(f.read()), 26, "size of the downloaded p.csv")

        step("a download of a missing file raises the client's FunctionExecutionException")
        try:
            await tool.download_file(remote_file_name="nope.csv")
            fail("download of a missing file succeeded")
        except FunctionExecutionException as error:
            check("404" in str(error), "the exception names the 404", str(error))


def main():
    asyncio.run(scenario())


if __name__ == "__main__":
    run(main)
