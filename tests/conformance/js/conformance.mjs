// What the replayed JavaScript clients share; see ../conformance.py.

export const POOL_ENDPOINT = process.env.SESSIOND_POOL_ENDPOINT ?? "";
// The clients always send a bearer token; without API keys a placeholder.
export const TOKEN = process.env.SESSIOND_TEST_TOKEN || "conformance-placeholder-token";

export const PLOT_CODE =
  "import matplotlib.pyplot as plt\n" +
  "plt.plot([1, 2, 3], [4, 1, 9])\n" +
  "plt.title('conformance')\n" +
  "plt.show()";

export class Mismatch extends Error {}

export function step(text) {
  console.log(`-- ${text}`);
}

export function shown(value, limit = 600) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length <= limit ? text : `${text.slice(0, limit)}... (${text.length} characters)`;
}

export function fail(message, detail) {
  throw new Mismatch(detail === undefined ? message : `${message}\n   got: ${detail}`);
}

export function check(condition, message, detail) {
  if (!condition) fail(message, detail);
}

export function expectEqual(got, want, what) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) fail(`${what}: expected ${w}`, g);
}

// Runs a scenario and sets the exit code: 1 with the mismatch, or with what
// the client itself threw. The caller cleans up, then exits.
export async function run(main) {
  if (!POOL_ENDPOINT) {
    console.error("SESSIOND_POOL_ENDPOINT is not set");
    process.exitCode = 2;
    return;
  }
  try {
    await main();
    console.log("OK");
  } catch (error) {
    if (error instanceof Mismatch) console.error(`MISMATCH: ${error.message}`);
    else console.error(`CLIENT FAILED: ${error?.stack ?? error}`);
    process.exitCode = 1;
  }
}
