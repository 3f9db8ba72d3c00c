"""LlamaIndex Python's AzureCodeInterpreterToolSpec against a PythonLTS pool.

Mirrors run-llama/llama_index
llama-index-integrations/tools/llama-index-tools-azure-code-interpreter/llama_index/tools/azure_code_interpreter/base.py:
python-requests; the sanitiser appends a newline to the code; the whole JSON
answer goes back to the LLM, except that an image result (a dict with
base64_data) is decoded and saved to local_save_path as
<session>_<timestamp>.<format>; uploads are named /mnt/data/<basename>; the
file metadata accepts names with or without the /mnt/data prefix; downloads
strip "/mnt/data/" from the path. The package is not installable here, so its
code is transcribed."""

import base64
import os
import re
import tempfile
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO

import requests

from conformance import PLOT_CODE, PNG_MAGIC, POOL_ENDPOINT, TOKEN, check, expect_equal, run, shown, step


@dataclass
class RemoteFileMetadata:
    filename: str
    size_in_bytes: int
    file_full_path: str

    @staticmethod
    def from_dict(data):
        filename = data["filename"]
        file_full_path = filename if filename.startswith("/mnt/data") else f"/mnt/data/{filename}"
        return RemoteFileMetadata(filename=filename, size_in_bytes=data["size"], file_full_path=file_full_path)


def _sanitize_input(query):
    query = re.sub(r"^(\s|`)*(?i:python)?\s*", "", query)
    query = re.sub(r"(\s|`)*$", "", query)
    if not query.endswith("\n"):
        query += "\n"
    return query


class AzureCodeInterpreterToolSpec:
    def __init__(self, pool_management_endpoint, session_id=None, local_save_path=None, sanitize_input=True):
        self.pool_management_endpoint = pool_management_endpoint or os.getenv("AZURE_POOL_MANAGEMENT_ENDPOINT")
        # The real provider calls DefaultAzureCredential; users replace this
        # attribute to give another token.
        self.access_token_provider = lambda: TOKEN
        self.session_id = session_id or str(uuid.uuid4())
        self.sanitize_input = sanitize_input
        self.local_save_path = local_save_path
        self.user_agent = "llamaindex-azure-code-interpreter/0.0.0 (Language=Python)"

    def _build_url(self, path):
        endpoint = self.pool_management_endpoint
        if not endpoint.endswith("/"):
            endpoint += "/"
        query = f"identifier={urllib.parse.quote(self.session_id)}&api-version=2024-02-02-preview"
        return endpoint + path + ("&" if "?" in endpoint else "?") + query

    def code_interpreter(self, python_code):
        if self.sanitize_input:
            python_code = _sanitize_input(python_code)
        access_token = self.access_token_provider()
        headers = {
            "Authorization": f"Bearer {access_token}",
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
        }
        body = {"properties": {"codeInputType": "inline", "executionType": "synchronous", "code": python_code}}
        response = requests.post(self._build_url("code/execute"), headers=headers, json=body)
        response.raise_for_status()
        response_json = response.json()
        if "properties" in response_json:
            if "result" in response_json["properties"] and response_json["properties"]["result"]:
                if isinstance(response_json["properties"]["result"], dict):
                    if "base64_data" in response_json["properties"]["result"]:
                        base64_encoded_data = response_json["properties"]["result"]["base64_data"]
                        if self.local_save_path:
                            file_path = (
                                f"{self.local_save_path}/{self.session_id}_"
                                f"{datetime.now().strftime('%Y%m%d_%H%M%S')}.{response_json['properties']['result']['format']}"
                            )
                            decoded_data = base64.b64decode(base64_encoded_data)
                            with open(file_path, "wb") as f:
                                f.write(decoded_data)
                            response_json["properties"]["result"]["saved_to_local_path"] = response_json["properties"][
                                "result"
                            ].pop("base64_data")
                            response_json["properties"]["result"]["saved_to_local_path"] = os.path.exists(file_path)
                        else:
                            response_json["properties"]["result"]["base64_data"] = ""
        return response_json

    def upload_file(self, data=None, local_file_path=None):
        if data and local_file_path:
            raise ValueError("data and local_file_path cannot be provided together")
        if local_file_path:
            remote_file_path = f"/mnt/data/{os.path.basename(local_file_path)}"
            data = open(local_file_path, "rb")
        access_token = self.access_token_provider()
        if not remote_file_path.startswith("/mnt/data"):
            remote_file_path = f"/mnt/data/{remote_file_path}"
        headers = {"Authorization": f"Bearer {access_token}"}
        files = [("file", (remote_file_path, data, "application/octet-stream"))]
        try:
            response = requests.request("POST", self._build_url("files/upload"), headers=headers, files=files)
        finally:
            data.close()
        response.raise_for_status()
        response_json = response.json()
        return [
            RemoteFileMetadata.from_dict(entry["properties"]) for entry in response_json["value"] if "properties" in entry
        ]

    def download_file_to_local(self, remote_file_path, local_file_path=None):
        access_token = self.access_token_provider()
        remote_file_path = remote_file_path.replace("/mnt/data/", "")
        response = requests.get(
            self._build_url(f"files/content/{remote_file_path}"), headers={"Authorization": f"Bearer {access_token}"}
        )
        response.raise_for_status()
        if local_file_path:
            with open(local_file_path, "wb") as f:
                f.write(response.content)
            return None
        return BytesIO(response.content)

    def list_files(self):
        access_token = self.access_token_provider()
        response = requests.get(self._build_url("files"), headers={"Authorization": f"Bearer {access_token}"})
        response.raise_for_status()
        return [RemoteFileMetadata.from_dict(entry["properties"]) for entry in response.json()["value"]]


def main():
    with tempfile.TemporaryDirectory() as saved, tempfile.TemporaryDirectory() as local:
        tool = AzureCodeInterpreterToolSpec(POOL_ENDPOINT, local_save_path=saved)

        step("code_interpreter: a result and a print")
        answer = tool.code_interpreter("total = sum(range(10))\nprint('total is', total)\ntotal")
        properties = answer["properties"]
        expect_equal((properties["status"], properties["result"], properties["stdout"]), ("Success", 45, "total is 45\n"), "answer")

        step("code_interpreter: an exception is 200, Failure, traceback in stderr")
        properties = tool.code_interpreter("import math\nmath.sqrt(-1)")["properties"]
        expect_equal(properties["status"], "Failure", "status")
        check("ValueError" in properties["stderr"], "stderr carries the traceback", shown(properties))

        step("code_interpreter: a figure is saved to local_save_path and its base64 dropped")
        properties = tool.code_interpreter(PLOT_CODE)["properties"]
        result = properties["result"]
        check(isinstance(result, dict), "the result is the image object", shown(properties))
        expect_equal((result.get("type"), result.get("format"), result.get("saved_to_local_path")), ("image", "png", True), "image result")
        check("base64_data" not in result, "base64 dropped from the answer", shown(result))
        saved_files = os.listdir(saved)
        expect_equal(len(saved_files), 1, f"one saved image ({saved_files})")
        check(saved_files[0].startswith(tool.session_id + "_") and saved_files[0].endswith(".png"), "its name", saved_files[0])
        with open(os.path.join(saved, saved_files[0]), "rb") as f:
            check(f.read(8) == PNG_MAGIC, "the saved file is a PNG")

        step("upload_file(local_file_path): named /mnt/data/<basename>")
        path = os.path.join(local, "scores.csv")
        with open(path, "w") as f:
            f.write("name,score\nada,9\nbob,7\n")
        uploaded = tool.upload_file(local_file_path=path)
        expect_equal(len(uploaded), 1, "one uploaded entry")
        expect_equal((uploaded[0].file_full_path, uploaded[0].size_in_bytes), ("/mnt/data/scores.csv", 23), "upload metadata")

        step("the code reads it; list_files; download_file_to_local with an absolute path")
        properties = tool.code_interpreter("import pandas as pd\nfloat(pd.read_csv('/mnt/data/scores.csv').score.mean())")["properties"]
        expect_equal(properties["result"], 8.0, "mean over the upload")
        listed = {f.file_full_path: f.size_in_bytes for f in tool.list_files()}
        expect_equal(listed.get("/mnt/data/scores.csv"), 23, f"listed ({listed})")
        target = os.path.join(local, "back.csv")
        expect_equal(tool.download_file_to_local("/mnt/data/scores.csv", target), None, "download to a local file")
        with open(target) as f:
            expect_equal(f.read(), "name,score\nada,9\nbob,7\n", "downloaded content")
        expect_equal(tool.download_file_to_local("scores.csv").read()[:10], b"name,score", "download as bytes")


if __name__ == "__main__":
    run(main)
