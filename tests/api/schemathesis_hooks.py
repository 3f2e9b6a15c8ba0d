"""What schemathesis cannot know of ``/api.php`` by itself (SCHEMATHESIS_HOOKS).

A command's own refusals travel with HTTP 200 and ``Success`` false, so schemathesis's
``negative_data_rejection``, which reads only the status, would count every refusal as an
acceptance. This check reads the answer instead: a command called without a parameter its
operation calls required must refuse. And an Idempotency-Key is made each request's own.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis

from domain.idempotency import is_valid_key


@schemathesis.check
def command_refuses_missing_required_parameters(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    path = case.operation.path
    if "#" not in path or not isinstance(case.body, dict):
        return None
    command = path.split("#", 1)[1]
    if case.body.get("Command") != command:
        return None  # refused as another or no command, which the endpoint checks
    content = case.operation.definition.raw["requestBody"]["content"]
    schema: dict[str, Any] = content.get(case.media_type or "", {}).get("schema", {})
    missing = [
        name for name in schema.get("required", ())
        if name != "Command" and case.body.get(name) in (None, "")
    ]  # fmt: skip
    if not missing or response.status_code != 200:
        return None
    if response.json().get("Success") is True:
        raise AssertionError(f"{command} succeeded without its required {', '.join(missing)}")
    return True


@schemathesis.hook("map_headers")
def one_idempotency_key_per_request(
    ctx: schemathesis.HookContext, headers: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Generated keys repeat (``0``, ``A``…), and a repeated key with the same body is
    answered the first answer, whose resource a later step may have deleted: stateful
    testing would take that for a created resource gone missing. A valid key is made the
    request's own; an invalid one is left to be refused."""
    key = (headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and is_valid_key(key) and len(key) <= 200:
        headers = {**(headers or {}), "Idempotency-Key": f"{key}-{uuid.uuid4().hex}"}
    return headers
