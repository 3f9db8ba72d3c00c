// LlamaIndexTS's AzureDynamicSessionTool against a PythonLTS pool: the legacy
// python/execute route with `identifier` and `pythonCode` in the body, read
// flat (top-level result/stdout/stderr), on Node's fetch and FormData.
//
// Mirrors run-llama/LlamaIndexTS
// packages/llamaindex/src/tools/AzureDynamicSessionTool.node.ts (call,
// saveToDisk, uploadFile, listFiles, downloadFile). The tool ships only
// inside the whole llamaindex package, so the class is transcribed. Note how
// it reads answers: no status check before response.json(), and
// `typeof result !== "string"` followed by `result.type`, so a null result
// turns into the tool's "Failed to execute" error.

import { POOL_ENDPOINT, PLOT_CODE, TOKEN, check, expectEqual, fail, run, shown, step } from "./conformance.mjs";
import { randomUUID } from "node:crypto";
import { promises as fs, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const userAgent = `llamaindex/0.5.0 (Language=TypeScript; node.js/${process.version}; ${process.platform}; ${process.arch})`;

class AzureDynamicSessionTool {
  constructor(params, outputDir) {
    this.sessionId = params?.sessionId || randomUUID();
    this.poolManagementEndpoint =
      params?.poolManagementEndpoint || (process.env.AZURE_CONTAINER_APP_SESSION_POOL_MANAGEMENT_ENDPOINT ?? "");
    this.azureADTokenProvider = params.azureADTokenProvider;
    this.outputDir = outputDir; // path.normalize("tool-output") upstream, relative to the cwd
  }

  _buildUrl(p) {
    let url = `${this.poolManagementEndpoint}${this.poolManagementEndpoint.endsWith("/") ? "" : "/"}${p}`;
    url += url.includes("?") ? "&" : "?";
    url += `identifier=${encodeURIComponent(this.sessionId)}`;
    url += `&api-version=2024-02-02-preview`;
    return url;
  }

  async uploadFile(params) {
    const token = await this.azureADTokenProvider();
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    const body = new FormData();
    body.append("file", params.data, params.remoteFilename);
    try {
      const response = await fetch(this._buildUrl("files/upload"), { method: "POST", headers, body });
      const json = await response.json();
      return json.value[0].properties;
    } catch (error) {
      throw new Error(`[AzureDynamicSessionTool.downloadFile] HTTP error! status: ${error}`);
    }
  }

  async downloadFile(params) {
    const token = await this.azureADTokenProvider();
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    const response = await fetch(this._buildUrl(`files/content/${params.remoteFilename}`), { method: "GET", headers });
    if (response.body) return response; // upstream returns response.body, a ReadableStream
    throw new Error(`[AzureDynamicSessionTool.downloadFile] HTTP error! status: ${response.status}`);
  }

  async listFiles() {
    const token = await this.azureADTokenProvider();
    const headers = { Authorization: `Bearer ${token}`, "User-Agent": userAgent };
    try {
      const response = await fetch(this._buildUrl("files"), { method: "GET", headers });
      const json = await response.json();
      return json.value.map((x) => x.properties);
    } catch (error) {
      throw new Error(`[AzureDynamicSessionTool.listFiles] HTTP error! status: ${error}`);
    }
  }

  async call({ code }) {
    const token = await this.azureADTokenProvider();
    const headers = {
      Authorization: `Bearer ${token}`,
      "Content-Type": "application/json",
      "User-Agent": userAgent,
    };
    const payload = {
      properties: {
        identifier: this.sessionId,
        codeInputType: "inline",
        executionType: "synchronous",
        pythonCode: code,
      },
    };
    try {
      const response = await fetch(this._buildUrl("python/execute"), {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
      });
      const output = await response.json();
      if (typeof output.result !== "string") {
        const result = output.result;
        if (result.type === "image") {
          const { outputPath } = await this.saveToDisk(result.base64_data, result.format);
          output.result = outputPath;
        }
      }
      return output;
    } catch (error) {
      return { result: "", stdout: "", stderr: "Error: Failed to execute Python code. " + error };
    }
  }

  async saveToDisk(base64Data, ext) {
    const filename = `${randomUUID()}.${ext}`;
    await fs.mkdir(this.outputDir, { recursive: true });
    const outputPath = path.join(this.outputDir, filename);
    await fs.writeFile(outputPath, Buffer.from(base64Data, "base64"));
    return { outputPath, filename };
  }
}

const outputDir = mkdtempSync(path.join(os.tmpdir(), "llamaindexts-"));
try {
  await run(async () => {
    const tool = new AzureDynamicSessionTool(
      { poolManagementEndpoint: POOL_ENDPOINT, azureADTokenProvider: async () => TOKEN },
      outputDir,
    );
    const failedToExecute = (output) => String(output.stderr).startsWith("Error: Failed to execute");

    step("call: python/execute answers flat");
    let output = await tool.call({ code: "a = 5\nprint('five')\na * 3" });
    check(!failedToExecute(output), "the tool could read the answer", shown(output));
    expectEqual([output.status, output.result, output.stdout, output.stderr], ["Success", 15, "five\n", ""], "flat fields");

    step("call: a cell ending in print() has a string result");
    output = await tool.call({ code: "print(a)" });
    check(!failedToExecute(output), "the tool could read the answer", shown(output));
    expectEqual([output.result, output.stdout], ["", "5\n"], "result and stdout");

    step("call: an exception, 200 with Failure and a readable answer");
    output = await tool.call({ code: "int('x')" });
    check(!failedToExecute(output), "the tool could read the failure", shown(output));
    expectEqual(output.status, "Failure", "status");
    check(output.stderr.includes("ValueError"), "stderr", shown(output));

    step("call: a figure is saved to disk and the result becomes its path");
    output = await tool.call({ code: PLOT_CODE });
    check(!failedToExecute(output), "the tool could read the answer", shown(output));
    check(typeof output.result === "string" && output.result.endsWith(".png") && existsSync(output.result),
      "result is the saved PNG's path", shown(output));
    const head = (await fs.readFile(output.result)).subarray(0, 4).toString("latin1");
    expectEqual(head, "\x89PNG", "the saved file's magic");

    step("uploadFile / listFiles / downloadFile");
    const remote = await tool.uploadFile({ data: new Blob(["x,y\n1,2\n"]), remoteFilename: "points.csv" });
    expectEqual([remote.filename, remote.size], ["points.csv", 8], "value[0].properties");
    output = await tool.call({ code: "open('points.csv').read().count('\\n')" });
    expectEqual(output.result, 2, "the upload as code sees it");
    const names = (await tool.listFiles()).map((f) => f.filename);
    check(names.includes("points.csv"), "listed", shown(names));
    const response = await tool.downloadFile({ remoteFilename: "points.csv" });
    expectEqual(await response.text(), "x,y\n1,2\n", "downloaded content");
  });
} finally {
  rmSync(outputDir, { recursive: true, force: true });
}
process.exit();
