"""What every replayed client shares: the endpoints and token the gtest
(tests/conformance_test.cpp) hands over, and failing on the first mismatch.

Each script mirrors one real client's request building and response reading
(named in its docstring) and fails, with the request and what came back, as
soon as sessiond answers something that client would choke on."""

import json
import os
import sys

POOL_ENDPOINT = os.environ.get("SESSIOND_POOL_ENDPOINT", "")
SHELL_POOL_ENDPOINT = os.environ.get("SESSIOND_SHELL_POOL_ENDPOINT", "")

# The clients always send a bearer token (from Entra ID on Azure); with API
# keys the test gives one here. Without, a placeholder stands in, as clients
# send one whatever the server wants.
TOKEN = os.environ.get("SESSIOND_TEST_TOKEN") or "conformance-placeholder-token"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A matplotlib cell as an agent writes it: the figure comes back as the result.
PLOT_CODE = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [4, 1, 9])\n"
    "plt.title('conformance')\n"
    "plt.show()"
)


class Mismatch(Exception):
    pass


def step(text):
    print(f"-- {text}", flush=True)


def fail(message, detail=None):
    raise Mismatch(message if detail is None else f"{message}\n   got: {detail}")


def check(condition, message, detail=None):
    if not condition:
        fail(message, detail)


def expect_equal(got, want, what):
    if got != want:
        fail(f"{what}: expected {want!r}", repr(got))


def shown(value, limit=600):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def run(main):
    """Runs a scenario; exit status 1 with the mismatch, or with the exception
    the client itself would have raised."""
    if not POOL_ENDPOINT:
        print("SESSIOND_POOL_ENDPOINT is not set", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except Mismatch as error:
        print(f"MISMATCH: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as error:  # what the client would raise to its caller
        import traceback

        traceback.print_exc()
        print(f"CLIENT FAILED: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("OK", flush=True)
