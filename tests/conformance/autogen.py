"""AutoGen's ACADynamicSessionsCodeExecutor (aiohttp) against a PythonLTS pool.

Mirrors microsoft/autogen
python/packages/autogen-ext/src/autogen_ext/code_executors/azure/_azure_container_code_executor.py
(and get_required_packages from ../_common.py): a fresh aiohttp.ClientSession
per call, `api-version` before `identifier`, no User-Agent of its own.
Before the first code block it runs a bootstrap that lists the installed
packages with pkg_resources and parses str(result) by stripping "[]" and
splitting on ",\\n" — so `result` must be IPython's text/plain repr of the
list, one item per line — then `os.chdir('/mnt/data')`. Uploads stream an
anyio file through aiohttp.FormData (a chunked request body). The package is
not installable here, so its code is transcribed."""

import asyncio
import os
import re
import tempfile
import uuid
from pathlib import Path

import aiohttp
from anyio import open_file

from conformance import POOL_ENDPOINT, TOKEN, check, expect_equal, fail, run, shown, step


class CodeBlock:
    def __init__(self, code, language):
        self.code, self.language = code, language


class CodeResult:
    def __init__(self, exit_code, output):
        self.exit_code, self.output = exit_code, output


def get_required_packages(code, lang):
    ret = set()
    if lang != "python":
        return ret
    for line in code.split("\n"):
        match = re.search(r"^! ?pip install(.*)$", line)
        if match is not None:
            ret = {req.strip(" ") for req in match.group(1).split(",")}
    return ret


class AccessToken:
    def __init__(self, token):
        self.token = token


class TokenCredential:
    """What users pass as `credential`: anything with get_token(*scopes)."""

    def get_token(self, *scopes, **kwargs):
        assert scopes == ("https://dynamicsessions.io",), scopes
        return AccessToken(TOKEN)


class ACADynamicSessionsCodeExecutor:
    SUPPORTED_LANGUAGES = ["python"]
    PYTHON_VARIANTS = ["python", "Python", "py"]
    _AZURE_API_VER = "2024-02-02-preview"

    def __init__(self, pool_management_endpoint, credential, timeout=60, work_dir=Path(".")):
        self._pool_management_endpoint = pool_management_endpoint
        self._credential = credential
        self._timeout = timeout
        self._work_dir = Path(work_dir)
        self._session_id = str(uuid.uuid4())
        self._access_token = None
        self._available_packages = None
        self._setup_cwd_complete = False

    def _ensure_access_token(self):
        if not self._access_token:
            self._access_token = self._credential.get_token("https://dynamicsessions.io").token

    def _construct_url(self, path):
        endpoint = self._pool_management_endpoint
        if not endpoint.endswith("/"):
            endpoint += "/"
        return endpoint + f"{path}?api-version={self._AZURE_API_VER}&identifier={self._session_id}"

    async def get_available_packages(self):
        if self._available_packages is not None:
            return self._available_packages
        avail_pkgs = """
import pkg_resources\n[d.project_name for d in pkg_resources.working_set]
"""
        ret = await self._execute_code_dont_check_setup([CodeBlock(code=avail_pkgs, language="python")])
        if ret.exit_code != 0:
            raise ValueError(f"Failed to get list of available packages: {ret.output.strip()}")
        pkgs = ret.output.strip("[]")
        pkglist = pkgs.split(",\n")
        return {pkg.strip(" '") for pkg in pkglist}

    async def _setup_cwd(self):
        exec_result = await self._execute_code_dont_check_setup(
            [CodeBlock(code="import os; os.chdir('/mnt/data')", language="python")]
        )
        if exec_result.exit_code != 0:
            raise ValueError("Failed to set up Azure container working directory")
        self._setup_cwd_complete = True

    async def get_file_list(self):
        self._ensure_access_token()
        timeout = aiohttp.ClientTimeout(total=float(self._timeout))
        headers = {"Authorization": f"Bearer {self._access_token}"}
        async with aiohttp.ClientSession(timeout=timeout) as client:
            try:
                resp = await client.get(self._construct_url("files"), headers=headers)
                resp.raise_for_status()
                data = await resp.json()
            except aiohttp.ClientResponseError as e:
                raise ConnectionError("Error while getting file list") from e
        return [value["properties"]["filename"] for value in data["value"]]

    async def upload_files(self, files):
        self._ensure_access_token()
        headers = {"Authorization": f"Bearer {self._access_token}"}
        url = self._construct_url("files/upload")
        timeout = aiohttp.ClientTimeout(total=float(self._timeout))
        async with aiohttp.ClientSession(timeout=timeout) as client:
            for file in files:
                file_path = os.path.join(self._work_dir, file)
                if not os.path.isfile(file_path):
                    raise FileNotFoundError(f"{file} does not exist")
                data = aiohttp.FormData()
                async with await open_file(file_path, "rb") as f:
                    data.add_field("file", f, filename=os.path.basename(file_path), content_type="application/octet-stream")
                    try:
                        resp = await client.post(url, headers=headers, data=data)
                        resp.raise_for_status()
                    except aiohttp.ClientResponseError as e:
                        raise ConnectionError("Error while uploading files") from e

    async def download_files(self, files):
        self._ensure_access_token()
        available_files = await self.get_file_list()
        headers = {"Authorization": f"Bearer {self._access_token}"}
        timeout = aiohttp.ClientTimeout(total=float(self._timeout))
        local_paths = []
        async with aiohttp.ClientSession(timeout=timeout) as client:
            for file in files:
                if file not in available_files:
                    raise FileNotFoundError(f"{file} does not exist")
                try:
                    resp = await client.get(self._construct_url(f"files/content/{file}"), headers=headers)
                    resp.raise_for_status()
                    local_path = os.path.join(self._work_dir, file)
                    local_paths.append(local_path)
                    async with await open_file(local_path, "wb") as f:
                        await f.write(await resp.read())
                except aiohttp.ClientResponseError as e:
                    raise ConnectionError("Error while downloading files") from e
        return local_paths

    async def execute_code_blocks(self, code_blocks):
        self._ensure_access_token()
        if self._available_packages is None:
            self._available_packages = await self.get_available_packages()
        if not self._setup_cwd_complete:
            await self._setup_cwd()
        return await self._execute_code_dont_check_setup(code_blocks)

    async def _execute_code_dont_check_setup(self, code_blocks):
        logs_all = ""
        exitcode = 0
        assert self._access_token is not None
        headers = {"Authorization": f"Bearer {self._access_token}", "Content-Type": "application/json"}
        properties = {"codeInputType": "inline", "executionType": "synchronous", "code": ""}
        url = self._construct_url("code/execute")
        timeout = aiohttp.ClientTimeout(total=float(self._timeout))
        async with aiohttp.ClientSession(timeout=timeout) as client:
            for code_block in code_blocks:
                lang, code = code_block.language.lower(), code_block.code
                if lang in self.PYTHON_VARIANTS:
                    lang = "python"
                if lang not in self.SUPPORTED_LANGUAGES:
                    exitcode = 1
                    logs_all += "\n" + f"unknown language {lang}"
                    break
                if self._available_packages is not None:
                    missing_pkgs = set(get_required_packages(code, lang) - self._available_packages)
                    if len(missing_pkgs) > 0:
                        exitcode = 1
                        logs_all += "\n" + f"Python packages unavailable in environment: {missing_pkgs}"
                        break
                properties["code"] = code_block.code
                try:
                    response = await client.post(url, headers=headers, json={"properties": properties})
                    response.raise_for_status()
                    data = await response.json()
                    data = data["properties"]
                    logs_all += data.get("stderr", "") + data.get("stdout", "")
                    if "Success" in data["status"]:
                        logs_all += str(data["result"])
                    elif "Failure" in data["status"]:
                        exitcode = 1
                except aiohttp.ClientResponseError as e:
                    logs_all += "\nError while sending code block to endpoint"
                    raise ConnectionError(logs_all) from e
        return CodeResult(exit_code=exitcode, output=logs_all)

    async def restart(self):
        self._session_id = str(uuid.uuid4())
        self._access_token = None
        self._available_packages = None
        self._setup_cwd_complete = False


async def scenario(work_dir):
    executor = ACADynamicSessionsCodeExecutor(POOL_ENDPOINT, TokenCredential(), work_dir=work_dir)

    step("execute_code_blocks: bootstraps (package list, os.chdir('/mnt/data')), then runs the blocks")
    result = await executor.execute_code_blocks(
        [CodeBlock("import os\nprint(os.getcwd())", "python"), CodeBlock("6 * 7", "py")]
    )
    expect_equal((result.exit_code, result.output), (0, "/mnt/data\n42"), "exit code and output")

    step("the bootstrap's package list parsed into one name per entry")
    packages = executor._available_packages
    for name in ("numpy", "pandas", "matplotlib"):
        check(name in packages, f"{name} is among the parsed packages", shown(sorted(packages)))
    odd = sorted(p for p in packages if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", p))
    check(not odd, "every parsed entry is a bare package name (no repr leftovers, no warnings)", shown(odd))

    step("an exception: exit code 1, the traceback in the output")
    result = await executor.execute_code_blocks([CodeBlock("print('before')\n{}['missing']", "python")])
    expect_equal(result.exit_code, 1, "exit code")
    check("KeyError" in result.output and "before\n" in result.output, "output", shown(result.output))

    step("upload_files: a chunked multipart stream from an anyio file")
    with open(os.path.join(work_dir, "input.txt"), "w") as f:
        f.write("line one\nline two\n")
    await executor.upload_files(["input.txt"])
    result = await executor.execute_code_blocks(
        [CodeBlock("n = len(open('input.txt').read().splitlines())\nwith open('count.txt', 'w') as f:\n    f.write(str(n))\nn", "python")]
    )
    expect_equal((result.exit_code, result.output), (0, "2"), "code reading the upload from the working directory")

    step("get_file_list and download_files")
    names = await executor.get_file_list()
    check({"input.txt", "count.txt"} <= set(names), "both files are listed", shown(names))
    paths = await executor.download_files(["count.txt"])
    with open(paths[0]) as f:
        expect_equal(f.read(), "2", "downloaded count.txt")
    try:
        await executor.download_files(["absent.txt"])
        fail("download of an unlisted file went ahead")
    except FileNotFoundError:
        pass

    step("restart: a new session, bootstrapped again")
    await executor.restart()
    result = await executor.execute_code_blocks([CodeBlock("import os\nsorted(os.listdir('.'))", "python")])
    expect_equal((result.exit_code, result.output), (0, "[]"), "the new session's empty /mnt/data")


def main():
    with tempfile.TemporaryDirectory() as work_dir:
        asyncio.run(scenario(work_dir))


if __name__ == "__main__":
    run(main)
