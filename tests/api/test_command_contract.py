"""Each command's parameters and errors, as the OpenAPI document shows them, are read from
its handler's code (api.command_contract), not written a second time."""

from __future__ import annotations

from api.command_contract import contract_of
from api.commands import CommandSpec
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
