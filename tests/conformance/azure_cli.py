"""`az containerapp session code-interpreter` against a PythonLTS pool.

Mirrors Azure/azure-cli-extensions src/containerapp/azext_containerapp/
_clients.py (SessionCodeInterpreterPreviewClient: execute, upload,
show_file_content, show_file_metadata, list_files, delete_file,
extract_path_from_filename) and containerapp_session_code_interpreter_decorator.py
(the execute envelope), with azure-cli-core's azure/cli/core/util.py
send_raw_request (a requests Session; User-Agent, x-ms-client-request-id,
CommandName and ParameterSetName headers; Content-Type application/json when
the body is JSON; any non-2xx raises). The api-version is the extension's
PREVIEW_API_VERSION; the execute body is wrapped in "properties" and carries
the identifier; `files list` sends path= even when empty; file names with a
directory are split into path= and a name.

send_raw_request only attaches the CLI's token to https:// URLs (the upload
always does); this replay sends the test token on every request, as the CLI
does in front of a TLS endpoint."""

import json
import os
import platform
import tempfile
import uuid

import requests

from conformance import POOL_ENDPOINT, TOKEN, check, expect_equal, fail, run, shown, step

PREVIEW_API_VERSION = "2025-02-02-preview"
USER_AGENT = f"python/{platform.python_version()} ({platform.platform()}) AZURECLI/2.77.0"


class CLIError(Exception):
    pass


def send_raw_request(method, url, body=None, command="", params=""):
    headers = requests.structures.CaseInsensitiveDict()
    headers["User-Agent"] = USER_AGENT
    headers["x-ms-client-request-id"] = str(uuid.uuid4())
    if body:
        try:
            json.loads(body)
            headers["Content-Type"] = "application/json"
        except ValueError:
            pass
    headers["CommandName"] = command
    if params:
        headers["ParameterSetName"] = params
    headers["Authorization"] = f"Bearer {TOKEN}"
    s = requests.Session()
    prepped = s.prepare_request(requests.Request(method=method, url=url, headers=headers, data=body))
    r = s.send(prepped)
    if not r.ok:
        reason = r.reason
        if r.text:
            reason += f"({r.text})"
        raise CLIError(reason)
    return r


def extract_path_from_filename(path, filename):
    if "/" not in filename:
        return path, filename
    path_in_filename, filename = filename.rsplit("/", 1)
    if path is None:
        return path_in_filename, filename
    return path.rstrip("/") + "/" + path_in_filename.lstrip("/"), filename


class SessionCodeInterpreterPreviewClient:
    api_version = PREVIEW_API_VERSION
    base = "containerapp session code-interpreter"

    @classmethod
    def execute(cls, identifier, code, session_pool_endpoint, timeout_in_seconds=None):
        envelope = {
            "properties": {
                "identifier": identifier,
                "codeInputType": "inline",
                "executionType": "synchronous",
                "timeoutInSeconds": timeout_in_seconds if timeout_in_seconds is not None else 60,
                "code": code,
            }
        }
        request_url = f"{session_pool_endpoint}/executions?identifier={identifier}&api-version={cls.api_version}"
        r = send_raw_request("POST", request_url, body=json.dumps(envelope), command=cls.base + " execute",
                             params="--name --resource-group --identifier --code")
        if r.status_code == 201:
            fail("execute answered 201: the CLI would poll azure-asyncoperation", shown(dict(r.headers)))
        return r.json()

    @classmethod
    def upload(cls, identifier, filepath, path, session_pool_endpoint):
        query_path = f"path={path}&" if path is not None else ""
        request_url = f"{session_pool_endpoint}/files?{query_path}identifier={identifier}&api-version={cls.api_version}"
        headers = {"Authorization": "Bearer " + TOKEN}
        with open(filepath, "rb") as data_file:
            files = [("file", (os.path.basename(filepath), data_file))]
            r = requests.post(request_url, files=files, headers=headers)
        if r.status_code not in [200, 201, 202, 204]:
            fail(f"upload answered {r.status_code}", shown(r.text))
        if r.status_code == 202:
            fail("upload answered 202: the CLI would poll azure-asyncoperation")
        return r.json()

    @classmethod
    def show_file_content(cls, identifier, filename, path, session_pool_endpoint):
        path, filename = extract_path_from_filename(path, filename)
        query_path = f"path={path}&" if path is not None else ""
        request_url = f"{session_pool_endpoint}/files/{filename}/content?{query_path}identifier={identifier}&api-version={cls.api_version}"
        r = send_raw_request("GET", request_url, command=cls.base + " file show-content")
        return json.dumps(r.content.decode())

    @classmethod
    def show_file_metadata(cls, identifier, filename, path, session_pool_endpoint):
        path, filename = extract_path_from_filename(path, filename)
        query_path = f"path={path}&" if path is not None else ""
        request_url = f"{session_pool_endpoint}/files/{filename}?{query_path}identifier={identifier}&api-version={cls.api_version}"
        return send_raw_request("GET", request_url, command=cls.base + " file show-metadata").json()

    @classmethod
    def delete_file(cls, identifier, filename, path, session_pool_endpoint):
        path, filename = extract_path_from_filename(path, filename)
        query_path = f"path={path}&" if path is not None else ""
        request_url = f"{session_pool_endpoint}/files/{filename}?{query_path}identifier={identifier}&api-version={cls.api_version}"
        r = send_raw_request("DELETE", request_url, command=cls.base + " file delete")
        if r.status_code == 202:
            fail("delete answered 202: the CLI would poll the location header")
        check(r.status_code in [200, 201, 202, 204], "delete's status", r.status_code)

    @classmethod
    def list_files(cls, identifier, path, session_pool_endpoint):
        if path is None:
            path = ""
        request_url = f"{session_pool_endpoint}/files?identifier={identifier}&path={path}&api-version={cls.api_version}"
        return send_raw_request("GET", request_url, command=cls.base + " file list").json()


def main():
    client = SessionCodeInterpreterPreviewClient
    endpoint = POOL_ENDPOINT.rstrip("/")  # the pool's poolManagementEndpoint
    identifier = "cli-" + uuid.uuid4().hex[:12]

    step("execute: the wrapped body on /executions; the whole JSON is printed")
    out = client.execute(identifier, "x = 21\nprint('doubling')\nx * 2", endpoint)
    expect_equal(out.get("status"), "Succeeded", "status")
    expect_equal(out.get("identifier"), identifier, "identifier")
    result = out.get("result") or {}
    expect_equal((result.get("executionResult"), result.get("stdout")), (42, "doubling\n"), "result")

    step("execute: an exception is 200 with status Failed; --timeout-in-seconds")
    out = client.execute(identifier, "open('/mnt/data/none.txt')", endpoint, timeout_in_seconds=30)
    expect_equal(out.get("status"), "Failed", "status")
    check("FileNotFoundError" in (out.get("result") or {}).get("stderr", ""), "stderr", shown(out))

    with tempfile.TemporaryDirectory() as local:
        step("file upload, to /mnt/data and into a directory given as --path")
        path = os.path.join(local, "report.md")
        with open(path, "w") as f:
            f.write("# Report\n\nAll good.\n")
        uploaded = client.upload(identifier, path, None, endpoint)
        expect_equal((uploaded.get("name"), uploaded.get("sizeInBytes")), ("report.md", 20), "upload answer")
        check(uploaded.get("type") in ("File", "file"), "type of the upload", shown(uploaded))
        uploaded = client.upload(identifier, path, "archive/2024", endpoint)
        expect_equal(uploaded.get("name"), "report.md", "name of the upload into archive/2024")

    step("file list, with path= empty and with a directory")
    listing = client.list_files(identifier, None, endpoint)
    names = {item.get("name"): item for item in listing.get("value", [])}
    check("report.md" in names and "archive" in names, "the root lists the file and the directory", shown(list(names)))
    listing = client.list_files(identifier, "archive/2024", endpoint)
    expect_equal([item.get("name") for item in listing.get("value", [])], ["report.md"], "listing of archive/2024")

    step("file show-content and show-metadata, a directory in the name split into path=")
    content = json.loads(client.show_file_content(identifier, "archive/2024/report.md", None, endpoint))
    expect_equal(content, "# Report\n\nAll good.\n", "content")
    meta = client.show_file_metadata(identifier, "report.md", None, endpoint)
    expect_equal((meta.get("name"), meta.get("sizeInBytes")), ("report.md", 20), "metadata")
    meta = client.show_file_metadata(identifier, "archive/2024/report.md", None, endpoint)
    expect_equal(meta.get("name"), "report.md", "metadata of archive/2024/report.md")

    step("file delete; the deleted file is gone (the CLI raises on the 404)")
    client.delete_file(identifier, "archive/2024/report.md", None, endpoint)
    try:
        client.show_file_metadata(identifier, "archive/2024/report.md", None, endpoint)
        fail("metadata of a deleted file was served")
    except CLIError as error:
        check("Not Found" in str(error), "the CLI's error names the 404", str(error))
    out = client.execute(identifier, "import os\nsorted(os.listdir('/mnt/data/archive/2024'))", endpoint)
    expect_equal((out.get("result") or {}).get("executionResult"), "[]", "the directory as code sees it")


if __name__ == "__main__":
    run(main)
