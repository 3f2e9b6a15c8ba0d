"""The OpenAPI document's contract details that FastAPI cannot infer from the routes.

The REST routes read their own bodies and parameters (so that each broken rule answers
its documented error, which a validation error could not), so FastAPI sees neither their
parameters nor their errors. Here each operation gets:

* its request body schema with every ``$ref`` resolving inside the document;
* its parameters (query string, or the same names in a form or JSON body);
* one response per HTTP status it can answer, each listing the catalogue's codes and
  texts (``domain.errors``) that travel with that status, with an example of each;
* the keys it takes (``securitySchemes``).

The error lists are the catalogue classes themselves, never a copy of their texts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from api.command_contract import CommandContract, contract_of
from api.commands import IDEMPOTENT_COMMANDS, command_status
from api.errors import status_for
from api.examples import COMMAND_EXAMPLES, REST_EXAMPLES
from api.schemas import (
    CommandFailure,
    CommandSuccess,
    ErrorsResponse,
    RouteCreate,
    SendBatchRequest,
    SendEmailRequest,
    TemplateCreate,
    TemplateUpdate,
)
from domain import errors as E
from domain.errors import ErrorText, Extensions
from domain.webhook import EVENT_SYNONYMS
from engine.params import EVENT_SYNONYMS as EVENT_NAMES
from projections.events import EVENT_TYPE_NAMES

__all__ = ["SECURITY_SCHEMES", "catalogue", "install_contract"]

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "SenderKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A domain's sender API key (`snd_…`, `EmailGateway.AddAPI`), as "
        "`Authorization: Bearer snd_…`.",
    },
    "SenderKeyParameter": {
        "type": "apiKey",
        "in": "query",
        "name": "SenderAPIKey",
        "description": "The same sender key as the `SenderAPIKey` parameter (query string, or "
        "the form or JSON body).",
    },
    "AccountKey": {
        "type": "apiKey",
        "in": "query",
        "name": "APIKey",
        "description": "The account's API key (`acc_…`, from `sendstream bootstrap`) as the "
        "`APIKey` parameter of `/api.php` (query string, or the form or JSON body).",
    },
    "Session": {
        "type": "apiKey",
        "in": "query",
        "name": "SessionID",
        "description": "A session of `User.Login`, as the `SessionID` parameter of `/api.php`.",
    },
}
SENDER_SECURITY: list[dict[str, list[str]]] = [{"SenderKey": []}, {"SenderKeyParameter": []}]
# Sending reads the key from the header or the JSON body, showing an email from the header.
BEARER_ONLY: list[dict[str, list[str]]] = [{"SenderKey": []}]
TEMPLATE_OPERATIONS = (
    ("post", "/api/v1/templates"), ("get", "/api/v1/templates"),
    ("get", "/api/v1/templates/{template_id}"), ("put", "/api/v1/templates/{template_id}"),
    ("delete", "/api/v1/templates/{template_id}"),
)  # fmt: skip
ROUTE_OPERATIONS = (
    ("post", "/api/v1/routes"), ("get", "/api/v1/routes"),
    ("get", "/api/v1/routes/{route_id}"), ("delete", "/api/v1/routes/{route_id}"),
)  # fmt: skip
BEARER_ONLY_OPERATIONS = frozenset(
    {
        ("post", "/api/v1/email"),
        ("post", "/api/v1/email/batch"),
        ("get", "/api/v1/email/{message_id}"),
        *TEMPLATE_OPERATIONS,
        *ROUTE_OPERATIONS,
    }
)
COMMAND_SECURITY: list[dict[str, list[str]]] = [{"AccountKey": []}, {"Session": []}]

# Every endpoint can fail on its body, on the engine itself or on the machine's storage.
STORAGE_FAULTS = (Extensions.STORAGE_FULL, Extensions.STORAGE_UNAVAILABLE)
ANY_ENDPOINT = (
    Extensions.MALFORMED_BODY, Extensions.TOO_LARGE, Extensions.INTERNAL, *STORAGE_FAULTS
)  # fmt: skip
# What the request parsers shared by the endpoints raise (engine.params, engine.sending).
PARAMETER_ERRORS = (Extensions.INVALID_PARAMETER, Extensions.INVALID_DATE)


def catalogue(section: type) -> list[ErrorText]:
    """The errors a catalogue class of ``domain.errors`` names, in their order there."""
    return [value for value in vars(section).values() if isinstance(value, ErrorText)]


REST_ERRORS: dict[tuple[str, str], list[ErrorText]] = {
    ("post", "/api/v1/email"): [
        *catalogue(E.SendEmail), *ANY_ENDPOINT, *PARAMETER_ERRORS,
        Extensions.UNSUPPORTED_MEDIA_TYPE, Extensions.TOO_MANY_RECIPIENTS,
        Extensions.INVALID_HEADERS, Extensions.INVALID_ATTACHMENTS, Extensions.INVALID_TAGS,
        Extensions.INVALID_IDEMPOTENCY_KEY, Extensions.IDEMPOTENCY_KEY_REUSED, Extensions.BUSY,
        Extensions.TEMPLATE_NOT_RENDERED, Extensions.TEMPLATE_AND_CONTENT,
    ],
    ("post", "/api/v1/email/batch"): [
        *catalogue(E.SendEmail), *ANY_ENDPOINT, *PARAMETER_ERRORS,
        Extensions.UNSUPPORTED_MEDIA_TYPE, Extensions.TOO_MANY_RECIPIENTS,
        Extensions.INVALID_HEADERS, Extensions.INVALID_ATTACHMENTS, Extensions.INVALID_TAGS,
        Extensions.INVALID_IDEMPOTENCY_KEY, Extensions.IDEMPOTENCY_KEY_REUSED, Extensions.BUSY,
        Extensions.TEMPLATE_NOT_RENDERED, Extensions.TEMPLATE_AND_CONTENT,
        Extensions.NOT_IN_A_BATCH, Extensions.CONTENT_NOT_A_TEMPLATE,
        Extensions.DUPLICATE_RECIPIENT, Extensions.BATCH_ATTACHMENTS_TOO_LARGE,
    ],
    ("get", "/api/v1/email/{message_id}"): [
        E.GetEvents.MISSING_SENDER_API_KEY, E.GetEvents.INVALID_SENDER_API_KEY,
        E.GetEvents.TOO_MANY_REQUESTS, Extensions.NOT_FOUND,
        Extensions.INTERNAL, *STORAGE_FAULTS,
    ],
    **{
        operation: [
            E.TemplatesRest.MISSING_SENDER_API_KEY, E.TemplatesRest.INVALID_SENDER_API_KEY,
            E.TemplatesRest.TOO_MANY_REQUESTS, Extensions.INTERNAL, *STORAGE_FAULTS,
            *{
                ("post", "/api/v1/templates"): [
                    E.TemplatesRest.MISSING_PARAMETER, E.TemplatesRest.DUPLICATE_NAME,
                    E.TemplatesRest.INVALID_TEMPLATE, E.TemplatesRest.TOO_LARGE,
                    E.TemplatesRest.INVALID_NAME, Extensions.MALFORMED_BODY,
                    Extensions.TOO_LARGE, Extensions.UNSUPPORTED_MEDIA_TYPE,
                    Extensions.INVALID_IDEMPOTENCY_KEY, Extensions.IDEMPOTENCY_KEY_REUSED,
                    Extensions.INVALID_PARAMETER,
                ],
                ("get", "/api/v1/templates"): [],
                ("get", "/api/v1/templates/{template_id}"): [
                    E.TemplatesRest.INVALID_ID, Extensions.NOT_FOUND,
                ],
                ("put", "/api/v1/templates/{template_id}"): [
                    E.TemplatesRest.INVALID_ID, Extensions.NOT_FOUND,
                    E.TemplatesRest.MISSING_PARAMETER, E.TemplatesRest.DUPLICATE_NAME,
                    E.TemplatesRest.INVALID_TEMPLATE, E.TemplatesRest.INVALID_VERSION,
                    E.TemplatesRest.TOO_LARGE, E.TemplatesRest.INVALID_NAME,
                    Extensions.MALFORMED_BODY, Extensions.TOO_LARGE,
                    Extensions.UNSUPPORTED_MEDIA_TYPE, Extensions.INVALID_PARAMETER,
                ],
                ("delete", "/api/v1/templates/{template_id}"): [
                    E.TemplatesRest.INVALID_ID, Extensions.NOT_FOUND,
                ],
            }[operation],
        ]
        for operation in TEMPLATE_OPERATIONS
    },
    **{
        operation: [
            E.TemplatesRest.MISSING_SENDER_API_KEY, E.TemplatesRest.INVALID_SENDER_API_KEY,
            E.TemplatesRest.TOO_MANY_REQUESTS, Extensions.INTERNAL, *STORAGE_FAULTS,
            *{
                ("post", "/api/v1/routes"): [
                    *catalogue(E.RoutesRest), Extensions.MALFORMED_BODY, Extensions.TOO_LARGE,
                    Extensions.UNSUPPORTED_MEDIA_TYPE, Extensions.INVALID_WEBHOOK_URL,
                    Extensions.INVALID_IDEMPOTENCY_KEY, Extensions.IDEMPOTENCY_KEY_REUSED,
                ],
                ("get", "/api/v1/routes"): [],
                ("get", "/api/v1/routes/{route_id}"): [
                    E.RoutesRest.INVALID_ID, Extensions.NOT_FOUND,
                ],
                ("delete", "/api/v1/routes/{route_id}"): [
                    E.RoutesRest.INVALID_ID, Extensions.NOT_FOUND,
                ],
            }[operation],
        ]
        for operation in ROUTE_OPERATIONS
    },
    ("get", "/api/v1/events"): [
        *catalogue(E.GetEvents), *ANY_ENDPOINT, *PARAMETER_ERRORS,
        Extensions.UNSUPPORTED_MEDIA_TYPE, Extensions.TOO_MANY_RECORDS,
    ],
    ("post", "/api/v1/webhooks"): [
        *catalogue(E.AddWebhookRest), *ANY_ENDPOINT, Extensions.UNSUPPORTED_MEDIA_TYPE,
        Extensions.INVALID_WEBHOOK_URL, Extensions.INVALID_WEBHOOK_PARAMETERS,
        Extensions.INVALID_WEBHOOK_METHOD, Extensions.INVALID_IDEMPOTENCY_KEY,
        Extensions.IDEMPOTENCY_KEY_REUSED,
    ],
    ("get", "/api/v1/webhooks"): [
        *catalogue(E.GetWebhooksRest), *ANY_ENDPOINT, Extensions.UNSUPPORTED_MEDIA_TYPE,
    ],
    ("delete", "/api/v1/webhooks"): [
        *catalogue(E.DeleteWebhookRest), *ANY_ENDPOINT, Extensions.UNSUPPORTED_MEDIA_TYPE,
    ],
}  # fmt: skip


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}  # fmt: skip


_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


def _or_empty(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter that may also be given empty (``RetrieveCount=``): its default."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


# Years 1000 to 9998: any offset or time zone keeps them within what UTC can hold.
_YEAR = "^(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
_DATE = {
    "type": "string",
    "anyOf": [
        {"format": "date", "pattern": _YEAR},
        {"format": "date-time", "pattern": _YEAR},
        {"pattern": "^[0-9]{1,9}$"},  # a Unix timestamp (before 2001-09-09 in this form)
        {"maxLength": 0},  # empty: no bound
    ],
    "description": "YYYY-MM-DD, an RFC 3339 date-time, or a Unix timestamp; YYYY-MM-DD "
    "HH:MM:SS and the other ISO-8601 forms are read too",
}

_IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[ -~]+$",
}
_IDEMPOTENCY_KEY_MEANING = (
    "a key of the client's choosing (a UUID): the same request again with it within 24 "
    "hours answers the first answer (with `Idempotent-Replayed: true`) and does nothing "
    "again; another request with it is refused (422). Only what succeeded is kept: a "
    "refused request may be retried with the same key."
)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": _IDEMPOTENCY_KEY_SCHEMA,
    "description": _IDEMPOTENCY_KEY_MEANING,
}

REST_PARAMETERS: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("post", "/api/v1/email"): [IDEMPOTENCY_KEY],
    ("post", "/api/v1/email/batch"): [IDEMPOTENCY_KEY],
    ("post", "/api/v1/templates"): [IDEMPOTENCY_KEY],
    ("post", "/api/v1/routes"): [IDEMPOTENCY_KEY],
    ("get", "/api/v1/events"): [
        _query(
            "StartFrom",
            _or_empty({"type": "integer", "minimum": 0, "maximum": 19_999}),
            "records to skip (0); the first 20,000 records of a range can be paged",
        ),
        _query("RetrieveCount", _or_empty(_COUNT), "records to answer (5); at most 100 are"),
        _query("StartDate", _DATE, "from this moment, in the account's time zone"),
        _query("EndDate", _DATE, "up to this moment; a bare date includes its whole day"),
        _query(
            "Event",
            {"type": "string", "enum": ["", *sorted({*EVENT_TYPE_NAMES, *EVENT_NAMES})]},
            "one event type (empty: all)",
        ),
        _query(
            "MessageID",
            {"type": "string", "anyOf": [{"format": "uuid"}, {"maxLength": 0}]},
            "one accepted email (empty: all)",
        ),
    ],
    ("post", "/api/v1/webhooks"): [
        IDEMPOTENCY_KEY,
        _query(
            "Event",
            {"type": "string", "enum": sorted(EVENT_SYNONYMS)},
            "the event to be called for",
            required=True,
        ),
        _query(
            "WebhookURL",
            {"type": "string", "format": "uri", "pattern": "^https?://"},
            "the URL to call: https, or http where the installation allows it",
            required=True,
        ),
        _query("Method", {"type": "string", "enum": ["POST", "FORM", "GET"]}, "(POST)"),
    ],
    ("delete", "/api/v1/webhooks"): [
        _query(
            "WebhookID",
            {"type": "string", "format": "uuid"},
            "the webhook to delete",
            required=True,
        ),
    ],
}


# The endpoint's own refusals and the named exceptions that carry their HTTP status
# (api.commands.failure); a command's numbered errors travel with 200.
COMMAND_ENDPOINT_ERRORS = [
    *catalogue(E.Command),
    Extensions.INVALID_IDEMPOTENCY_KEY,
    E.IpAddresses.DUPLICATE_IP_ADDRESS,
    E.IpAddresses.INVALID_IP_ADDRESS,
]


def error_responses(
    errors: Iterable[ErrorText], *, command: bool = False
) -> dict[str, dict[str, Any]]:
    """One response per HTTP status, listing its codes and texts with an example of each;
    ``command``: in ``/api.php``'s form (``CommandFailure``)."""
    by_status: dict[int, list[ErrorText]] = {}
    for error in errors:
        status = command_status(error) if command else status_for(error)
        by_status.setdefault(status, []).append(error)
    responses: dict[str, dict[str, Any]] = {}
    for status, listed in sorted(by_status.items()):
        schema = _refusal_schema(listed) if command else _errors_schema(listed)
        lines = "\n".join(f"- `{e.code}`: {e.message}" for e in listed)
        responses[str(status)] = {
            "description": f"`ErrorCode` and text of each error answered with {status}:\n\n"
            + lines,
            "content": {
                "application/json": {
                    "schema": schema,
                    "examples": {
                        f"code{e.code}_{n}": {"summary": e.message, "value": _body(e, command)}
                        for n, e in enumerate(listed)
                    },
                }
            },
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
    return responses


def _errors_schema(errors: Iterable[ErrorText]) -> dict[str, Any]:
    """``ErrorsResponse`` with the codes listed that may travel with one status."""
    codes = sorted({error.code for error in errors})
    item = {"properties": {"Code": {"enum": codes}}}
    return {
        "allOf": [
            {"$ref": "#/components/schemas/ErrorsResponse"},
            {"properties": {"Errors": {"items": item}}},
        ]
    }


def _link(
    document: dict[str, Any], path: str, method: str, target: str, parameter: str, field: str
) -> None:
    """An OpenAPI link: what ``path`` answers names the resource ``target`` acts on."""
    answer = document["paths"][path][method]["responses"]["200"]
    answer.setdefault("links", {})[target] = {
        "operationId": target,
        "parameters": {parameter: f"$response.body#/{field}"},
    }


def _body(error: ErrorText, command: bool) -> dict[str, Any]:
    if command:
        return {"Success": False, "ErrorCode": error.code, "ErrorMessage": error.message}
    return {"Errors": [{"Code": error.code, "Message": error.message}]}


def _component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The models' JSON schemas with their nested models as components of the document."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


_FLAG = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "integer", "enum": [0, 1]},
        {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no", "on", "off"]},
    ],
    "description": "`1` or `0` as the documents have it; true/false, yes/no and on/off too",
}
# The everyday forms, which a generated client or fuzzer should send; the engine reads more.
_HOST = "(?:[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\\.){1,3}[a-z]{2,12}"
_ATOM = "[a-z0-9_+-]{1,20}"
# The schema of each kind of parameter (api.command_contract.READERS).
PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "id": {"type": "string", "format": "uuid"},
    "count": {
        "anyOf": [_COUNT, {"type": "string", "pattern": "^[0-9]{1,9}$"}],
        "description": "a 32-bit natural number, as a number or as text",
    },
    "date": _DATE,
    "flag": _FLAG,
    "time_zone": {"type": "string", "maxLength": 64, "description": "an IANA time zone name"},
    "event": {"type": "string", "enum": sorted({*EVENT_TYPE_NAMES, *EVENT_NAMES})},
    "domain": {
        "type": "string",
        "pattern": f"^{_HOST}$",
        "description": "a domain name (IDNA names are read too)",
    },
    "email": {
        "type": "string",
        "pattern": f"^{_ATOM}(?:\\.{_ATOM}){{0,2}}@{_HOST}$",
        "description": "an email address (any RFC 5321 allows is read)",
    },
}
# A text the command needs: some character other than white space.
_PRESENT = {"type": "string", "minLength": 1, "pattern": "\\S"}
_ANSWER_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"}, "integer": {"type": "integer"},
    "boolean": {"type": "boolean"}, "array": {"type": "array", "items": {}},
    "object": {"type": "object"},
    "any": {},
}  # fmt: skip


def _parameter_schema(contract: CommandContract, name: str) -> dict[str, Any]:
    kind = contract.kinds.get(name)
    if kind is None:
        schema: dict[str, Any] = {"description": "read by the command"}
    else:
        schema = dict(PARAMETER_SCHEMAS[kind])
    if name in contract.required and kind == "text":
        schema = {**schema, **_PRESENT}
    elif name in contract.required and kind is None:
        schema = {**schema, "not": {"enum": [None, ""]}}
    return schema


def _answer_schema(name: str, contract: CommandContract) -> dict[str, Any]:
    """The command's success answer: ``Success``, ``ErrorCode`` and the fields its handler
    answers, where its code shows them (api.command_contract)."""
    if contract.answer is None:
        return {"$ref": "#/components/schemas/CommandSuccess"}
    return {
        "title": f"{name.replace('.', '')}Answer",
        "type": "object",
        "required": ["Success", "ErrorCode", *sorted(contract.answer_required)],
        "properties": {
            "Success": {"type": "boolean", "const": True},
            "ErrorCode": {"type": "integer", "const": 0},
            **{field: _ANSWER_SCHEMAS[kind] for field, kind in contract.answer.items()},
        },
        "additionalProperties": False,
    }


def _refusal_schema(errors: Iterable[ErrorText]) -> dict[str, Any]:
    """``CommandFailure`` with the codes listed that may travel with one status."""
    codes = sorted({error.code for error in errors})
    return {
        "allOf": [
            {"$ref": "#/components/schemas/CommandFailure"},
            {"properties": {"ErrorCode": {"enum": codes}}},
        ]
    }


def _operation_id(command: str) -> str:
    return command[0].lower() + command[1:].replace(".", "")


def _command_links(document: dict[str, Any], contracts: Mapping[str, CommandContract]) -> None:
    """A command that answers an id (``NewSenderDomainID``, ``CampaignID``) links to every
    command that takes it (``DomainID``, ``CampaignID``): create, then get, update, delete."""
    for source, contract in sorted(contracts.items()):
        links: dict[str, Any] = {}
        for field, kind in (contract.answer or {}).items():
            if kind != "string" or not field.endswith("ID"):
                continue
            taken = field.removeprefix("New").replace("SenderDomain", "Domain").lower()
            for target, other in sorted(contracts.items()):
                parameter = next((p for p in other.parameters if p.lower() == taken), None)
                if target != source and parameter is not None:
                    links[f"{_operation_id(target)}By{field}"] = {
                        "operationId": _operation_id(target),
                        "requestBody": {parameter: f"$response.body#/{field}"},
                    }
        if links:
            answer = document["paths"][f"/api.php#{source}"]["post"]["responses"]["200"]
            answer["links"] = links


def _sample(command: str) -> dict[str, Any]:
    """The API document's sample request of the command, where it shows one."""
    if command not in COMMAND_EXAMPLES:
        return {}
    value = {"Command": command, **COMMAND_EXAMPLES[command]}
    return {"examples": {"document": {"summary": "The API document's sample", "value": value}}}


def _command_operation(name: str, handler: Callable[..., Any]) -> dict[str, Any]:
    """One command as an operation of its own: its parameters, answer and errors as its
    handler reads, builds and raises them (api.command_contract). The path's fragment
    names the command for readers and generated clients; what travels is ``POST /api.php``."""
    contract = contract_of(handler)
    body: dict[str, Any] = {
        "type": "object",
        "required": ["Command", *(p for p in contract.parameters if p in contract.required)],
        "properties": {
            "Command": {"type": "string", "const": name},
            **{p: _parameter_schema(contract, p) for p in contract.parameters},
        },
    }
    errors = list(contract.errors)
    if name in IDEMPOTENT_COMMANDS:
        body["properties"]["IdempotencyKey"] = {
            **_IDEMPOTENCY_KEY_SCHEMA,
            "description": _IDEMPOTENCY_KEY_MEANING
            + " Also taken as the `Idempotency-Key` header.",
        }
        errors += [Extensions.IDEMPOTENCY_KEY_REUSED]
    own = [e for e in errors if command_status(e) == 200]
    failures = "\n".join(f"- `{e.code}`: {e.message}" for e in own)
    refusals = error_responses(
        [*(e for e in errors if command_status(e) != 200),
         *(e for e in COMMAND_ENDPOINT_ERRORS if command_status(e) != 200)],
        command=True,
    )  # fmt: skip
    answer = _answer_schema(name, contract)
    failure = _refusal_schema(own) if own else None
    return {
        "operationId": _operation_id(name),
        "summary": name,
        "tags": [name.split(".")[0].rstrip("s")],
        "security": COMMAND_SECURITY,
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": body, **_sample(name)}
                for media in ("application/json", "application/x-www-form-urlencoded")
            },
        },
        "responses": {
            "200": {
                "description": "The command's answer, or one of its own refusals (`Success` "
                "false) with 200:" + (f"\n\n{failures}" if failures else " none numbered."),
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [answer, failure]} if failure else answer,
                        "examples": {
                            f"code{e.code}_{n}": {"summary": e.message, "value": _body(e, True)}
                            for n, e in enumerate(own)
                        },
                    }
                },
            },
            **refusals,
        },
    }


def install_contract(app: FastAPI, commands: Mapping[str, Callable[..., Any]]) -> None:
    """Make ``app.openapi()`` answer the completed document (built once, then cached);
    ``commands``: each ``/api.php`` command's handler, by name."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(
            _component_schemas(
                SendEmailRequest,
                SendBatchRequest,
                TemplateCreate,
                TemplateUpdate,
                RouteCreate,
                ErrorsResponse,
                CommandFailure,
                CommandSuccess,
            )
        )
        components["securitySchemes"] = SECURITY_SCHEMES
        for (method, path), errors in REST_ERRORS.items():
            operation = document["paths"][path][method]
            success = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            operation["responses"] = {**success, **error_responses(errors)}
            bearer_only = (method, path) in BEARER_ONLY_OPERATIONS
            operation["security"] = BEARER_ONLY if bearer_only else SENDER_SECURITY
            operation.setdefault("parameters", []).extend(REST_PARAMETERS.get((method, path), []))
        command_responses = {
            "200": {
                "description": "The command's answer; a command's own refusals (`Success` "
                "false, its numbered `ErrorCode`) travel with 200 too, as clients of the "
                "API this one replaces read `Success`.",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/CommandSuccess"},
                                {"$ref": "#/components/schemas/CommandFailure"},
                            ]
                        }
                    }
                },
            },
            **error_responses(
                (e for e in COMMAND_ENDPOINT_ERRORS if command_status(e) != 200), command=True
            ),
        }
        shown = document["paths"]["/api/v1/email/{message_id}"]["get"]
        shown["parameters"] = [
            {"name": "message_id", "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"},
             "description": "the MessageID that sending answered"}
        ]  # fmt: skip
        _link(document, "/api/v1/email", "post", "showEmail", "message_id", "MessageID")
        for operation_id in ("getTemplate", "updateTemplate", "deleteTemplate"):
            _link(document, "/api/v1/templates", "post", operation_id, "template_id",
                  "TemplateID")  # fmt: skip
        for operation_id in ("getRoute", "deleteRoute"):
            _link(document, "/api/v1/routes", "post", operation_id, "route_id", "RouteID")
        for path, name, field in (
            ("/api/v1/templates/{template_id}", "template_id", "TemplateID"),
            ("/api/v1/routes/{route_id}", "route_id", "RouteID"),
        ):
            for operation in document["paths"][path].values():
                operation["parameters"] = [
                    {"name": name, "in": "path", "required": True,
                     "schema": {"type": "string", "format": "uuid"},
                     "description": f"the {field} that creating it answered"}
                ]  # fmt: skip
        _link(document, "/api/v1/webhooks", "post", "deleteWebhook", "WebhookID", "NewWebhookID")
        for command in document["paths"]["/api.php"].values():
            command["security"] = COMMAND_SECURITY
            command["responses"] = command_responses
        for name, handler in sorted(commands.items()):
            document["paths"][f"/api.php#{name}"] = {"post": _command_operation(name, handler)}
        _command_links(document, {name: contract_of(h) for name, h in commands.items()})
        for method, path, model in (
            ("post", "/api/v1/email", SendEmailRequest),
            ("post", "/api/v1/email/batch", SendBatchRequest),
            ("post", "/api/v1/templates", TemplateCreate),
            ("put", "/api/v1/templates/{template_id}", TemplateUpdate),
            ("post", "/api/v1/routes", RouteCreate),
        ):
            body = document["paths"][path][method]["requestBody"]
            body["content"]["application/json"]["schema"] = {
                "$ref": f"#/components/schemas/{model.__name__}"
            }
        for (method, path), sample in REST_EXAMPLES.items():
            operation = document["paths"][path][method]
            if "requestBody" in operation:
                for content in operation["requestBody"]["content"].values():
                    content["example"] = sample
            for parameter in operation.get("parameters", []):
                if parameter["name"] in sample:
                    parameter["example"] = sample[parameter["name"]]
        # FastAPI adds its validation error models for a path parameter; no answer uses them.
        text = json.dumps(document["paths"])
        for unused in ("HTTPValidationError", "ValidationError"):
            if f'"#/components/schemas/{unused}"' not in text:
                components["schemas"].pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
