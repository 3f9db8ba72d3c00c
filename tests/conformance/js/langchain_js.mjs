// LangChain JS's SessionsPythonREPLTool against a PythonLTS pool, on Node's
// own fetch and FormData (undici), as the package runs.
//
// Mirrors langchain-ai/langchainjs
// libs/langchain-azure-dynamic-sessions/src/tools.ts (SessionsPythonREPLTool:
// _buildUrl, _call, uploadFile, downloadFile, listFiles). The npm registry
// answers 404 for @langchain/azure-dynamic-sessions, so the class is
// transcribed without LangChain's Tool base; every request and every read of
// an answer is the package's.

import { POOL_ENDPOINT, PLOT_CODE, TOKEN, check, expectEqual, fail, run, shown, step } from "./conformance.mjs";
import { randomUUID } from "node:crypto";

const userAgent =
  `langchainjs-azure-dynamic-sessions @langchain/azure-dynamic-sessions/0.2.1 ` +
  `(Language=JavaScript; node.js/${process.version}; ${process.platform}; ${process.arch})`;

class SessionsPythonREPLTool {
  constructor(params) {
    this.poolManagementEndpoint =
      params?.poolManagementEndpoint ?? process.env.AZURE_CONTAINER_APP_SESSION_POOL_MANAGEMENT_ENDPOINT ?? "";
    if (!this.poolManagementEndpoint) throw new Error("poolManagementEndpoint must be defined.");
    this.sessionId = params?.sessionId ?? randomUUID();
    this.azureADTokenProvider = params.azureADTokenProvider;
  }

  _buildUrl(path) {
    let url = `${this.poolManagementEndpoint}${this.poolManagementEndpoint.endsWith("/") ? "" : "/"}${path}`;
    url += url.includes("?") ? "&" : "?";
    url += `identifier=${encodeURIComponent(this.sessionId)}`;
    url += `&api-version=2024-02-02-preview`;
    return url;
  }

  // Tool.invoke(input) ends here.
  async _call(pythonCode) {
    const token = await this.azureADTokenProvider();
    const apiUrl = this._buildUrl("code/execute");
    const headers = {
      "Content-Type": "application/json",
      Authorization: `Bearer ${token}`,
      "User-Agent": userAgent,
    };
    const body = JSON.stringify({
      properties: { codeInputType: "inline", executionType: "synchronous", code: pythonCode },
    });
    const response = await fetch(apiUrl, { method: "POST", headers, body });
    if (!response.ok) throw new Error(`HTTP error! status: ${response.status}`);
    const { properties } = await response.json();
    const output = { result: properties.result, stdout: properties.stdout, stderr: properties.stderr };
    return JSON.stringify(output, null, 2);
  }

  async uploadFile(params) {
    const token = await this.azureADTokenProvider();
    const apiUrl = this._buildUrl("files/upload");
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    const formData = new FormData();
    formData.append("file", params.data, params.remoteFilename);
    const response = await fetch(apiUrl, { method: "POST", headers, body: formData });
    if (!response.ok) throw new Error(`HTTP error! status: ${response.status}`);
    const json = await response.json();
    return json.value[0].properties;
  }

  async downloadFile(params) {
    const token = await this.azureADTokenProvider();
    const apiUrl = this._buildUrl(`files/content/${params.remoteFilename}`);
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    const response = await fetch(apiUrl, { method: "GET", headers });
    if (!response.ok) throw new Error(`HTTP error! status: ${response.status}`);
    return await response.blob();
  }

  async listFiles() {
    const token = await this.azureADTokenProvider();
    const apiUrl = this._buildUrl("files");
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    const response = await fetch(apiUrl, { method: "GET", headers });
    if (!response.ok) throw new Error(`HTTP error! status: ${response.status}`);
    const json = await response.json();
    return json.value.map((x) => x.properties);
  }
}

await run(async () => {
  const tool = new SessionsPythonREPLTool({
    poolManagementEndpoint: POOL_ENDPOINT,
    azureADTokenProvider: async () => TOKEN,
  });

  step("invoke('6 * 7'): the JSON string the tool returns");
  expectEqual(JSON.parse(await tool._call("6 * 7")), { result: 42, stdout: "", stderr: "" }, "tool output");

  step("a print, and the session keeps state");
  let out = JSON.parse(await tool._call("import sys\nname = 'node'\nprint(f'hi {name}')"));
  expectEqual([out.stdout, out.result], ["hi node\n", ""], "stdout and result");
  out = JSON.parse(await tool._call("name.upper()"));
  expectEqual(out.result, "NODE", "result using the earlier variable");

  step("an exception: 200, the traceback in stderr");
  out = JSON.parse(await tool._call("undefined_name + 1"));
  check(out.stderr.includes("NameError"), "stderr names the exception", shown(out));

  step("a matplotlib figure: the result object passes through");
  out = JSON.parse(await tool._call(PLOT_CODE));
  expectEqual([out.result?.type, out.result?.format], ["image", "png"], "image result");
  check(Buffer.from(out.result.base64_data, "base64").subarray(0, 4).toString("latin1") === "\x89PNG", "PNG data");

  step("uploadFile: undici's FormData multipart; value[0].properties typed RemoteFile");
  const text = "city,temp\noslo,3\nlima,19\n";
  const remote = await tool.uploadFile({ data: new Blob([text]), remoteFilename: "weather.csv" });
  expectEqual([remote.filename, remote.size], ["weather.csv", text.length], "filename and size");
  check(typeof remote.last_modified_time === "string" && !Number.isNaN(Date.parse(remote.last_modified_time)),
    "last_modified_time is a date string", shown(remote));
  const binary = new Uint8Array(300).map((_, i) => (i * 7) % 256);
  const bin = await tool.uploadFile({ data: new Blob([binary]), remoteFilename: "data/blob.bin" });
  expectEqual(bin.size, 300, "size of the binary upload");

  step("the code reads the upload; listFiles; downloadFile (path not encoded)");
  out = JSON.parse(await tool._call("import pandas as pd\nint(pd.read_csv('weather.csv').temp.max())"));
  expectEqual(out.result, 19, "max over the upload");
  const listed = await tool.listFiles();
  const names = listed.map((f) => f.filename);
  check(names.includes("weather.csv") && names.includes("data"), "the upload and its directory are listed", shown(names));
  const blob = await tool.downloadFile({ remoteFilename: "weather.csv" });
  expectEqual(await blob.text(), text, "downloaded text");
  const back = new Uint8Array(await (await tool.downloadFile({ remoteFilename: "data/blob.bin" })).arrayBuffer());
  expectEqual(Array.from(back), Array.from(binary), "downloaded bytes");

  step("a missing file: the client throws its HTTP error");
  try {
    await tool.downloadFile({ remoteFilename: "missing.csv" });
    fail("download of a missing file succeeded");
  } catch (error) {
    if (error.message !== "HTTP error! status: 404") throw error;
  }
});
// Kept-alive fetch connections would hold the process open a little longer.
process.exit();
