"""Contract testing: schemathesis drives a real server from the committed openapi.json and checks
every answer against it: no 5xx but the contract's 503 KILL_SWITCH, every status code documented
for its operation, bodies, content types and headers as the spec says, invalid requests
rejected, auth not ignored, a deleted resource gone (schemathesis' other checks).

Two phases, each with its own key, so the fuzzer never kills or rotates the key it is using:
everything else with the partner's admin key, then the own-key kill and rotate operations with a
second admin key minted for them. Reports (JUnit) land in target/contract-reports/."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from server import ROOT, Server

# Every check schemathesis has, but two: `not_a_server_error` gives way to the hooks' version
# that accepts the contract's 503 KILL_SWITCH, and `positive_data_acceptance` (a schema-valid
# request must not get a 4xx) counts the contract's own 402 BILLING_EXHAUSTED and 422s on
# opaque cursors and on headers its generator got wrong (`X-Layers-Organization: 0`, which the
# spec's pattern excludes) as failures.
CHECKS = ["--checks", "all", "--exclude-checks", "not_a_server_error,positive_data_acceptance"]
OWN_KEY_OPERATIONS = r"^/v1/api-keys/\{keyId\}/(kill|rotate)$"
REPORTS = ROOT / "target" / "contract-reports"


def schemathesis(srv: Server, key: str, phase: str, spec: Path, args: argparse.Namespace, *filters: str) -> int:
    here = Path(__file__).resolve().parent
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks", PYTHONPATH=str(here))
    cmd = [
        str(Path(sys.executable).with_name("st")), "run", str(spec.resolve()),
        "--url", srv.base_url,
        "--header", f"Authorization: Bearer {key}",
        *CHECKS,
        "--max-examples", str(args.max_examples),
        "--workers", str(args.workers),
        "--request-timeout", "10",
        "--report", "junit",
        "--report-junit-path", str(REPORTS / f"{phase}.xml"),
        "--no-color",
        *filters,
    ]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    print(f"\n--- schemathesis: {phase} ---", flush=True)
    # In target/: schemathesis keeps its replay store (.schemathesis/) in the working directory.
    return subprocess.run(cmd, env=env, cwd=REPORTS, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, default=ROOT / "openapi.json")
    parser.add_argument("--max-examples", type=int, default=int(os.environ.get("CONTRACT_MAX_EXAMPLES", "10")))
    # One worker: with two, CPython 3.11's `ast` (hypothesis parses lambdas with it) races between
    # threads and now and then fails a run with "AST constructor recursion depth mismatch".
    parser.add_argument("--workers", type=int, default=1)
    seed = os.environ.get("CONTRACT_SEED", "1")
    parser.add_argument("--seed", type=int, default=None if seed == "random" else int(seed),
                        help="generation seed (CONTRACT_SEED; 'random' for a new one each run)")
    args = parser.parse_args()
    REPORTS.mkdir(parents=True, exist_ok=True)

    with Server("schemathesis") as srv:
        main_phase = schemathesis(srv, srv.admin_key, "main", args.spec, args,
                                  "--exclude-path-regex", OWN_KEY_OPERATIONS)
        own = json.loads(srv.cli(
            "keys", "create", "--org", srv.org_id, "--scopes", "org:admin,*", "--name", "schemathesis own keys",
            "--tier", "internal", "--json",
        ))
        own_phase = schemathesis(srv, own["apiKey"], "own-keys", args.spec, args,
                                 "--include-path-regex", OWN_KEY_OPERATIONS)
    failed = [name for name, rc in (("main", main_phase), ("own-keys", own_phase)) if rc != 0]
    print(f"\nschemathesis: {'failed in ' + ', '.join(failed) if failed else 'no failure'} "
          f"(server log: target/contract-logs/schemathesis.log)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
