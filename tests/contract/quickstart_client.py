"""The generated client runs the quickstart. openapi-python-client generates a Python client from
the committed openapi.json into target/generated-client/, and that client (not hand-written HTTP)
makes the six calls of the seed quickstart, "Provision and fund a customer", against a real
server, checking the fields the quickstart tells the reader to look at:

  1. create the child org (Acme Coffee)      -> its org_ id
  2. mint the customer's API key              -> the secret, shown once
  3. allocate 5,000 credits                    -> a txn_ id, the child's balance and available
  4. set the cap and auto-refill               -> config.autoRefillEnabled: true
  5. subscribe the firehose (all_children)     -> the endpoint and its whsec_ signing secret
  6. verify                                    -> summary: balance, available, creditConfig

Each call goes through the generated function for its operation (found from the spec by method
and path), with a fresh Idempotency-Key, and its answer is read through the generated model's
attributes, so a field the spec does not document fails the check."""

import importlib
import shutil
import subprocess
import sys
import typing
import uuid
from pathlib import Path

from server import ROOT, Server

SPEC = ROOT / "openapi.json"
CONFIG = Path(__file__).resolve().parent / "openapi-python-client.yaml"
OUT = ROOT / "target" / "generated-client"
PACKAGE = "strata_client"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def generate() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    tool = Path(sys.executable).with_name("openapi-python-client")
    subprocess.run(
        [str(tool), "generate", "--path", str(SPEC), "--config", str(CONFIG), "--meta", "none",
         "--output-path", str(OUT / PACKAGE), "--overwrite", "--fail-on-warning"],
        check=True,
    )
    sys.path.insert(0, str(OUT))


class Client:
    """The generated package, and the operation functions it made from the spec."""

    def __init__(self, base_url: str, key: str):
        import json

        from openapi_python_client.strings import PythonIdentifier

        self.spec = json.loads(SPEC.read_text())
        self.pkg = importlib.import_module(PACKAGE)
        self.client = self.pkg.AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
        self._identifier = lambda s: PythonIdentifier(s, prefix="")

    def operation(self, method: str, path: str):
        """The generated module of `method path`: api/<first tag>/<operationId>.py."""
        op = self.spec["paths"][path][method]
        tag = (op.get("tags") or ["default"])[0]
        return importlib.import_module(
            f"{PACKAGE}.api.{self._identifier(tag)}.{self._identifier(op['operationId'])}"
        )

    def call(self, method: str, path: str, *path_args, body: dict | None = None, status: int = 200):
        """Calls the operation with a fresh Idempotency-Key on writes; returns the parsed model."""
        module = self.operation(method, path)
        kwargs = {"client": self.client}
        if body is not None:
            body_type = typing.get_type_hints(module.sync_detailed)["body"]
            kwargs["body"] = body_type.from_dict(body)
        if method != "get":
            kwargs["idempotency_key"] = str(uuid.uuid4())
        resp = module.sync_detailed(*path_args, **kwargs)
        assert resp.status_code == status, f"{method.upper()} {path}: {resp.status_code} {resp.content!r}"
        assert resp.parsed is not None, f"{method.upper()} {path}: the client could not parse {resp.content!r}"
        return resp.parsed


def field(obj, name: str):
    """The documented field `name` (as on the wire) of a generated model, never UNSET."""
    from openapi_python_client.strings import snake_case

    attr = snake_case(name)
    assert hasattr(obj, attr), f"{type(obj).__name__} has no field {name!r} (the spec does not document it)"
    value = getattr(obj, attr)
    assert type(value).__name__ != "Unset", f"{type(obj).__name__}.{name} was not in the answer"
    return value


def wire(value):
    """A generated enum member's wire value; anything else as it is."""
    return getattr(value, "value", value)


def quickstart(client: Client) -> None:
    # 1 · Create the child org.
    org = client.call("post", "/v1/organizations",
                      body={"name": "Acme Coffee", "metadata": {"externalId": "acme-coffee"}}, status=201)
    org_id = field(org, "id")
    assert org_id.startswith("org_"), org_id
    assert field(org, "name") == "Acme Coffee"
    assert wire(field(org, "status")) == "active"
    assert field(org, "metadata").to_dict() == {"externalId": "acme-coffee"}
    print(f"1. created {org_id}")

    # 2 · Mint the customer's API key.
    minted = client.call("post", "/v1/organizations/{orgId}/api-keys", org_id,
                         body={"name": "acme-integration", "scopes": ["content:read", "content:write"]}, status=201)
    secret = field(minted, "secret")
    assert secret.startswith("lp_live_"), "the secret is shown once, in full"
    key = field(minted, "apiKey")
    assert field(key, "organizationId") == org_id
    assert sorted(wire(s) for s in field(key, "scopes")) == ["content:read", "content:write"]
    print(f"2. minted {field(key, 'id')} ({field(key, 'prefix')}…)")

    # 3 · Allocate credits.
    alloc = client.call("post", "/v1/organizations/{orgId}/credits/allocate", org_id, body={"credits": 5000}, status=201)
    assert field(alloc, "id").startswith("txn_")
    assert field(alloc, "organizationId") == org_id
    assert field(alloc, "allocated") == 5000
    assert (field(alloc, "balance"), field(alloc, "available")) == (5000, 5000)
    assert field(alloc, "replayed") is False
    print(f"3. allocated 5000 in {field(alloc, 'id')}")

    # 4 · Set the cap and auto-refill.
    cfg = client.call("patch", "/v1/organizations/{orgId}/credit-config", org_id,
                      body={"monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000})
    config = field(cfg, "config")
    assert field(config, "autoRefillEnabled") is True
    assert (field(config, "monthlyCreditCap"), field(config, "refillThreshold"), field(config, "refillAmount")) == (5000, 1000, 2000)
    print("4. capped at 5000/month, refill 2000 below 1000")

    # 5 · Subscribe the firehose.
    hook = client.call("post", "/v1/webhook-endpoints", body={
        "url": "https://quinns-crm.example.com/layers/webhooks",
        "events": ["content.generated", "post.published"],
        "scope": "all_children",
    }, status=201)
    assert field(hook, "signingSecret").startswith("whsec_")
    endpoint = field(hook, "endpoint")
    assert field(endpoint, "id").startswith("whe_")
    assert wire(field(endpoint, "scope")) == "all_children"
    assert sorted(wire(e) for e in field(endpoint, "events")) == ["content.generated", "post.published"]
    print(f"5. subscribed {field(endpoint, 'id')} to every child's events")

    # 6 · Verify.
    seen = client.call("get", "/v1/organizations/{orgId}", org_id)
    summary = field(seen, "summary")
    assert (field(summary, "balance"), field(summary, "available")) == (5000, 5000)
    credit_config = field(summary, "creditConfig")
    assert field(credit_config, "monthlyCreditCap") == 5000
    assert field(credit_config, "autoRefillEnabled") is True
    print("6. verified: funded, capped, observable")


def main() -> int:
    generate()
    with Server("quickstart") as srv:
        quickstart(Client(srv.base_url, srv.admin_key))
    print("generated client: the quickstart's six calls passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
