"""Pydantic models that document the contract in the OpenAPI page.

Requests are parsed by the engine (so that every broken rule gets its documented
error code, which a model's validation error could not give); these models
describe the same fields for /docs and for client generators.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class EmailAddress(BaseModel):
    email: str = Field(examples=["news@example.com"])
    name: str = Field(examples=["Jane Doe"])


class AttachmentIn(BaseModel):
    filename: str
    type: str = Field(default="application/octet-stream", description="MIME type")
    content: str = Field(description="base64 of the file")


class _Sending(BaseModel):
    """What a single send and a batch both take."""

    SenderAPIKey: str | None = Field(
        default=None, description="Alternative to the Authorization: Bearer header"
    )
    ReplyTo: list[EmailAddress] | None = None
    Headers: dict[str, str] | None = None
    Tags: list[str] | None = None
    TrackLinks: bool | None = None
    TrackOpens: bool | None = None
    SendAt: int | str | None = Field(
        default=None, description="Unix timestamp, 'YYYY-MM-DD HH:MM:SS' (UTC) or ISO-8601"
    )
    TemplateVersion: int | None = Field(
        default=None, description="the template's version to send (its active one if absent)"
    )


class SendEmailRequest(_Sending):
    Subject: str
    ContentType: str = Field(description="'html' or 'plain'")
    HtmlContent: str | None = None
    PlainContent: str | None = None
    From: EmailAddress
    To: list[EmailAddress]
    CC: list[EmailAddress] | None = None
    BCC: list[EmailAddress] | None = None
    Attachments: list[AttachmentIn] | None = None
    TemplateID: str | None = Field(
        default=None,
        description="a stored template of the account (Template.Create): its subject and "
        "bodies, rendered with TemplateData, take the place of Subject, ContentType, "
        "HtmlContent and PlainContent",
    )
    TemplateData: dict[str, Any] | None = Field(
        default=None, description="the values the template reads ({{ name }}, {% for %} …)"
    )
    TargetListID: str | None = None


class SendEmailResponse(BaseModel):
    MessageID: str


class ErrorItem(BaseModel):
    Code: int
    Message: str


class ErrorsResponse(BaseModel):
    Errors: list[ErrorItem]


class BatchRecipient(BaseModel):
    email: str = Field(examples=["jane@example.org"])
    name: str | None = Field(default=None, examples=["Jane Doe"])
    TemplateData: dict[str, Any] | None = Field(
        default=None, description="this recipient's values, over the batch's TemplateData"
    )


class SendBatchRequest(_Sending):
    Recipients: list[BatchRecipient] = Field(
        min_length=1, max_length=1000,
        description="each recipient gets its own message (its own MessageID and history)",
    )  # fmt: skip
    Subject: str | None = Field(
        default=None, description="a template ({{ name }}) rendered for each recipient"
    )
    ContentType: str | None = Field(default=None, description="'html' or 'plain'")
    HtmlContent: str | None = Field(default=None, description="a template, as Subject")
    PlainContent: str | None = Field(default=None, description="a template, as Subject")
    From: EmailAddress
    Attachments: list[AttachmentIn] | None = Field(
        default=None, description="at most 100,000 bytes of base64 in all"
    )
    TemplateID: str | None = Field(
        default=None, description="a stored template in place of Subject and content"
    )
    TemplateData: dict[str, Any] | None = Field(
        default=None, description="values every recipient's rendering reads"
    )


class BatchOutcome(BaseModel):
    Email: str
    MessageID: str | None = Field(default=None, description="when the recipient was accepted")
    Errors: list[ErrorItem] | None = Field(default=None, description="why it was not")


class SendBatchResponse(BaseModel):
    Accepted: int
    Refused: int
    Recipients: list[BatchOutcome] = Field(description="in the order of the request")


class EventOut(BaseModel):
    EventId: str
    EventType: str
    EventTimestamp: str
    Recipient: str
    MessageId: str
    CampaignId: str | None = Field(description="null for transactional mail")
    Details: dict[str, Any]


class EventsResponse(BaseModel):
    TotalRecords: int
    Events: list[EventOut]


class SmtpReply(BaseModel):
    """The receiving server's last reply to this recipient (lower-case keys, as the
    message's events record it)."""

    code: int
    enhanced_status: str | None
    text: str


class RecipientView(BaseModel):
    Recipient: str
    Kind: str = Field(description="to, cc or bcc")
    Status: str
    Attempts: int
    LastReply: SmtpReply | None = Field(description="null before the first attempt")
    Raw: str = Field(description="the MIME message this recipient gets")


class ShownEmail(BaseModel):
    MessageID: str
    Subject: str
    Source: str = Field(description="api or smtp")
    AcceptedAt: str
    Recipients: list[RecipientView]


class WebhookOut(BaseModel):
    WebhookID: str
    URL: str
    Event: str
    Events: list[str]
    Method: str = Field(description="POST, FORM or GET")
    Parameters: dict[str, str]
    Status: str = Field(description="Active or Disabled")
    DisabledReason: str | None
    DisabledDate: str | None
    ConsecutiveFailures: int
    PendingDeliveries: int
    CreationDate: str | None


class WebhooksResponse(BaseModel):
    SigningKey: str = Field(description="verifies the calls' Standard Webhooks signatures")
    Webhooks: list[WebhookOut]


class NewWebhookResponse(BaseModel):
    NewWebhookID: str


class DeletedWebhookResponse(BaseModel):
    Message: str = Field(examples=["Webhook successfully deleted."])


class CommandFailure(BaseModel):
    """What ``/api.php`` answers when a command or the endpoint refuses a request."""

    Success: Literal[False]
    ErrorCode: int
    ErrorMessage: str


class CommandSuccess(BaseModel):
    """``/api.php``'s answer to a command that succeeded: these fields and the command's own."""

    model_config = {"extra": "allow"}

    Success: Literal[True]
    ErrorCode: Literal[0]


class TemplateCreate(BaseModel):
    TemplateName: str = Field(min_length=1, description="unique in the account")
    Subject: str = Field(min_length=1, examples=["Your order {{ order.number }}"])
    HTMLContent: str | None = Field(
        default=None, examples=["<p>Hi {{ name }}</p>"], description="this or PlainContent"
    )
    PlainContent: str | None = Field(default=None, examples=["Hi {{ name }}"])


class TemplateUpdate(BaseModel):
    TemplateName: str | None = Field(default=None, description="a new name")
    Subject: str | None = Field(default=None, description="parts given make a new version")
    HTMLContent: str | None = None
    PlainContent: str | None = None
    Version: int | None = Field(
        default=None, description="alone: makes this earlier version active again"
    )


class NewTemplateResponse(BaseModel):
    TemplateID: str
    Version: int = Field(description="the version now active")


class DeletedTemplateResponse(BaseModel):
    TemplateID: str


class TemplateSummary(BaseModel):
    TemplateID: str
    TemplateName: str
    ActiveVersion: int
    Subject: str
    UpdatedAt: str


class TemplatesResponse(BaseModel):
    TotalTemplates: int
    Templates: list[TemplateSummary]


class TemplateVersionOut(BaseModel):
    Version: int
    Subject: str
    HTMLContent: str
    PlainContent: str
    CreatedAt: str


class ShownTemplate(TemplateSummary):
    Versions: list[TemplateVersionOut]


class ShownTemplateResponse(BaseModel):
    Template: ShownTemplate


class RouteCreate(BaseModel):
    Domain: str | None = Field(
        default=None, description="the receiving domain: the key's (default) or under it"
    )
    Recipient: str | None = Field(
        default=None, description="one address or local part, or * (default) for every one"
    )
    Pattern: str | None = Field(
        default=None, description="instead of Recipient: a regular expression over the address"
    )
    Action: Literal["post", "forward", "store"] | None = Field(default=None, description="post")
    URL: str | None = Field(default=None, description="for post: where the message is POSTed")
    ForwardTo: list[str] | None = Field(default=None, description="for forward: up to 10")
    Priority: int | None = Field(default=None, ge=0, le=1000, description="lower first (0)")
    Description: str | None = None


class NewRouteResponse(BaseModel):
    RouteID: str


class RouteOut(BaseModel):
    RouteID: str
    Domain: str
    Recipient: str
    Pattern: str
    Action: str
    URL: str
    ForwardTo: list[str]
    Priority: int
    Description: str
    CreatedAt: str


class RoutesResponse(BaseModel):
    TotalRoutes: int
    Routes: list[RouteOut]


class ShownRouteResponse(BaseModel):
    Route: RouteOut
