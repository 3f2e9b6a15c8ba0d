"""Pydantic models that document the contract in the OpenAPI page.

Requests are parsed by the engine (so that every broken rule gets its documented
error code, which a model's validation error could not give); these models
describe the same fields for /docs and for client generators.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EmailAddress(BaseModel):
    email: str = Field(examples=["jane@example.com"])
    name: str = Field(examples=["Jane Doe"])


class AttachmentIn(BaseModel):
    filename: str
    type: str = Field(default="application/octet-stream", description="MIME type")
    content: str = Field(description="base64 of the file")


class SendEmailRequest(BaseModel):
    SenderAPIKey: str | None = Field(
        default=None, description="Alternative to the Authorization: Bearer header"
    )
    Subject: str
    ContentType: str = Field(description="'html' or 'plain'")
    HtmlContent: str | None = None
    PlainContent: str | None = None
    From: EmailAddress
    To: list[EmailAddress]
    CC: list[EmailAddress] | None = None
    BCC: list[EmailAddress] | None = None
    ReplyTo: list[EmailAddress] | None = None
    Attachments: list[AttachmentIn] | None = None
    Headers: dict[str, str] | None = None
    Tags: list[str] | None = None
    TrackLinks: bool | None = None
    TrackOpens: bool | None = None
    SendAt: int | str | None = Field(
        default=None, description="Unix timestamp, 'YYYY-MM-DD HH:MM:SS' (UTC) or ISO-8601"
    )
    TemplateID: str | None = None
    TargetListID: str | None = None


class SendEmailResponse(BaseModel):
    MessageID: str


class ErrorItem(BaseModel):
    Code: int
    Message: str


class ErrorsResponse(BaseModel):
    Errors: list[ErrorItem]


class EventOut(BaseModel):
    EventId: str
    EventType: str
    EventTimestamp: str
    Recipient: str
    MessageId: str
    CampaignId: str
    Details: dict[str, Any]


class EventsResponse(BaseModel):
    TotalRecords: int
    Events: list[EventOut]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorsResponse, "description": text}
    for status, text in (
        (400, "Malformed body"),
        (401, "Missing or invalid sender API key"),
        (403, "Account or domain not allowed to send"),
        (413, "Body too large"),
        (415, "Not JSON"),
        (420, "Sending limit reached"),
        (422, "Invalid fields"),
        (429, "Rate limited (see Retry-After)"),
    )
}
