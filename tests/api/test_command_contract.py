"""Each command's parameters and errors, as the OpenAPI document shows them, are read from
its handler's code (api.command_contract), not written a second time."""

from __future__ import annotations

from typing import Any

from jsonschema_rs import Draft202012Validator

from api.command_contract import contract_of
from api.commands import CommandSpec
from api.examples import COMMAND_EXAMPLES
from domain import errors as E


def test_a_commands_parameters_and_errors_come_from_its_handler(
    commands: dict[str, CommandSpec],
) -> None:
    add_domain = contract_of(commands["EmailGateway.AddDomain"].handler)
    assert add_domain.parameters == ("DomainName",)
    assert set(add_domain.errors) == {
        E.AddDomain.MISSING_DOMAIN_NAME, E.AddDomain.INVALID_DOMAIN_NAME,
        E.AddDomain.LIMIT_REACHED,
    }  # fmt: skip


def test_parameters_read_through_helpers_and_local_readers_are_found(
    commands: dict[str, CommandSpec],
) -> None:
    # Email.Create reads its fields through a method it passes params to, and that method
    # through a function of its own (value("Subject", …)).
    email = contract_of(commands["Email.Create"].handler)
    assert {"EmailName", "Subject", "FromName", "FromEmail", "ReplyTo", "MessageHTML",
            "MessagePlain"} <= set(email.parameters)  # fmt: skip
    assert E.Lists.MISSING_SUBJECT in email.errors
    # A suppression list's handler is made by a method and closes over its object.
    assert contract_of(commands["Unsubscribe.Add"].handler).parameters == ("EmailAddress",)


def test_a_parameter_read_in_several_spellings_is_shown_in_the_documented_one(
    commands: dict[str, CommandSpec],
) -> None:
    parameters = contract_of(commands["Campaign.Get"].handler).parameters
    assert "CampaignID" in parameters and "campaignid" not in parameters


def test_the_endpoints_own_parameters_are_not_repeated_per_command(
    commands: dict[str, CommandSpec],
) -> None:
    for spec in commands.values():
        assert not {"Command", "APIKey", "SessionID"} & set(contract_of(spec.handler).parameters)


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The schema beside the document's components, so that "#/components/…" resolves.
    return Draft202012Validator({"allOf": [schema], "components": document["components"]})


def test_the_documents_sample_requests_fit_their_operations(
    api_document: dict[str, Any],
) -> None:
    document = api_document
    shown = 0
    for path, methods in document["paths"].items():
        for operation in methods.values():
            body = operation.get("requestBody", {}).get("content", {})
            for content in body.values():
                samples = [e["value"] for e in content.get("examples", {}).values()]
                samples += [content["example"]] if "example" in content else []
                for sample in samples:
                    errors = list(_validator(document, content["schema"]).iter_errors(sample))
                    assert not errors, (path, sample, errors[0].message)
                    shown += 1
            for parameter in operation.get("parameters", []):
                if "example" in parameter:
                    validator = _validator(document, parameter["schema"])
                    assert validator.is_valid(parameter["example"]), (path, parameter)
                    shown += 1
    # Every command with a sample in the documents, in both encodings, and the REST ones.
    assert shown >= 2 * len(COMMAND_EXAMPLES) + 1


def test_a_command_answers_the_fields_its_operation_documents(
    commands: dict[str, CommandSpec],
) -> None:
    add_domain = contract_of(commands["EmailGateway.AddDomain"].handler)
    assert add_domain.answer == {"NewSenderDomainID": "string", "Domain": "object"}
    assert add_domain.answer_required == {"NewSenderDomainID", "Domain"}
    assert add_domain.kinds["DomainName"] == "domain"
    assert add_domain.required == {"DomainName"}
    # Either of two parameters will do: neither is required.
    update = contract_of(commands["Account.Update"].handler)
    assert not update.required & {"CustomIDHeader", "TimeZone"}
    # A refusal built from a named exception of 000 is documented with its number.
    block = contract_of(commands["Block.Add"].handler)
    assert {19, 20, 21} <= {error.code for error in block.errors}


def test_a_command_that_answers_an_id_links_to_those_that_take_it(
    api_document: dict[str, Any],
) -> None:
    answer = api_document["paths"]["/api.php#EmailGateway.AddDomain"]["post"]["responses"]["200"]
    linked = {link["operationId"]: link["requestBody"] for link in answer["links"].values()}
    for target in ("emailGatewayGetDomain", "emailGatewayUpdateDomain",
                   "emailGatewayDeleteDomain"):  # fmt: skip
        assert linked[target] == {"DomainID": "$response.body#/NewSenderDomainID"}
