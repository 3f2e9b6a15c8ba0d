"""The error catalogue of the API documents in ``shared/seeds``.

Each endpoint numbers its errors on its own, and the same number can carry a
different text on another endpoint, so the catalogue is grouped by endpoint.
Texts are copied from the documents letter for letter; HTTP statuses are the
API layer's business (see ``api/errors.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorText:
    """One documented error: its number and its exact text (maybe a template)."""

    code: int
    message: str
    # The HTTP status on the REST endpoints when the code's usual one (api/errors.py) does
    # not fit this endpoint: DeleteWebhook's 1 is a missing field, not missing credentials.
    status: int | None = None

    def format(self, **values: object) -> ErrorText:
        return ErrorText(self.code, self.message.format(**values), self.status)


class RequestRejected(Exception):
    """A request broke one or more documented rules; nothing was recorded."""

    def __init__(self, *errors: ErrorText, retry_after: int | None = None) -> None:
        super().__init__("; ".join(f"{e.code}: {e.message}" for e in errors))
        self.errors: tuple[ErrorText, ...] = errors
        self.retry_after = retry_after


class SendEmail:
    """``POST /api/v1/email`` ("Send Email" in 002)."""

    MISSING_SENDER_API_KEY = ErrorText(1, "Missing SenderAPIKey")
    INVALID_DOMAIN_ID = ErrorText(2, "Invalid DomainID")
    INVALID_FROM = ErrorText(
        3,
        "From parameter is either missing or invalid. Make sure you pass both name and "
        "email address for the from field",
    )
    MISSING_SUBJECT = ErrorText(8, "Missing Subject")
    MISSING_CONTENT_TYPE = ErrorText(9, "Missing ContentType")
    MISSING_HTML_CONTENT = ErrorText(10, "Missing HTMLContent")
    MISSING_PLAIN_CONTENT = ErrorText(11, "Missing PlainContent")
    ACCOUNT_DEACTIVATED = ErrorText(12, "Invalid or deactivated user account")
    INVALID_SENDER_API_KEY = ErrorText(13, "Invalid SenderAPIKey")
    SUPPRESSED = ErrorText(
        14, "Email address is in the suppression list. Email delivery is blocked."
    )
    INVALID_TEMPLATE_ID = ErrorText(15, "Invalid TemplateID")
    INVALID_TARGET_LIST_ID = ErrorText(16, "Invalid TargetListID")
    SENDING_LIMIT_REACHED = ErrorText(17, "Email sending limit reached")
    RECIPIENT_MISSING = ErrorText(18, "Recipient name or email address is missing")
    RECIPIENT_INVALID = ErrorText(19, "Recipient email address is invalid.")
    NO_RECIPIENT = ErrorText(20, "There is no recipient set for the email.")
    CC_MISSING = ErrorText(21, "CC name or email address is missing")
    CC_INVALID = ErrorText(22, "CC email address is invalid.")
    FROM_EMAIL_INVALID = ErrorText(23, "Invalid from email address format")
    BCC_NOT_ARRAY = ErrorText(24, "BCC email addresses must be set as an array")
    BCC_MISSING = ErrorText(25, "BCC name or email address is missing")
    BCC_INVALID = ErrorText(26, "BCC email address is invalid.")
    BCC_TOO_MANY = ErrorText(
        27, "The number of BCC email addresses exceed the allowed email address count"
    )
    REPLY_TO_NOT_ARRAY = ErrorText(28, "Reply-To email addresses must be set as an array")
    REPLY_TO_MISSING = ErrorText(29, "Reply-To name or email address is missing")
    REPLY_TO_INVALID = ErrorText(30, "Reply-To email address is invalid.")
    REPLY_TO_TOO_MANY = ErrorText(
        31, "The number of Reply-To email addresses exceed the allowed email address count"
    )
    DOMAIN_NOT_ACTIVATED = ErrorText(32, "Domain is not activated")
    ACCOUNT_NOT_VERIFIED = ErrorText(34, "User account is not verified")
    TOO_MANY_REQUESTS = ErrorText(
        429, "Too many requests. Wait for {seconds} seconds for another {attempts} attempts."
    )
    SEND_RATE_EXCEEDED = ErrorText(
        429, "You have exceeded your send rate limits. Please wait before sending another email."
    )


class GetEvents:
    """``GET /api/v1/events`` ("Retrieve Email Events (End User Friendly)" in 002)."""

    MISSING_SENDER_API_KEY = ErrorText(1, "Missing SenderAPIKey")
    INVALID_USER_ACCOUNT = ErrorText(2, "Invalid user account")
    MISSING_START_FROM = ErrorText(4, "Missing StartFrom")
    MISSING_RETRIEVE_COUNT = ErrorText(5, "Missing RetrieveCount")
    INVALID_SENDER_API_KEY = ErrorText(13, "Invalid SenderAPIKey")
    TOO_MANY_REQUESTS = ErrorText(
        429, "Too many requests. Please wait for {seconds} seconds before trying again."
    )


class Extensions:
    """Errors the documents do not number. Their code is the HTTP status they travel with,
    as the documents themselves do for 429, and each is listed in the README."""

    MALFORMED_BODY = ErrorText(400, "The request body is not a valid JSON object")
    NOT_FOUND = ErrorText(404, "Not found")
    METHOD_NOT_ALLOWED = ErrorText(405, "Method not allowed")
    TOO_LARGE = ErrorText(413, "The request body exceeds the limit of {limit} bytes")
    UNSUPPORTED_MEDIA_TYPE = ErrorText(415, "Content-Type must be application/json")
    TOO_MANY_RECIPIENTS = ErrorText(
        422, "The number of recipients exceeds the allowed count of {limit}"
    )
    INVALID_HEADERS = ErrorText(422, "Invalid Headers: {reason}")
    INVALID_ATTACHMENTS = ErrorText(422, "Invalid Attachments: {reason}")
    INVALID_TAGS = ErrorText(422, "Invalid Tags: tags must be an array of strings")
    INVALID_DATE = ErrorText(422, "Date specified is invalid.")  # InvalidDateException (000)
    INVALID_PARAMETER = ErrorText(422, "Invalid {name}")
    # TooManyRecordsException (000): paging beyond the first 20,000 records of a range.
    TOO_MANY_RECORDS = ErrorText(
        422,
        "Date range resulted in too many records. "
        "Please narrow date range to pull 20,000 records or less.",
    )
    INTERNAL = ErrorText(500, "An unknown exception was encountered.")  # UnknownException
    # Faults of the machine, not of the request: nothing was stored, and the same request
    # succeeds once they pass (Retry-After says when to try again).
    STORAGE_FULL = ErrorText(
        503, "The event store is out of disk space: nothing was stored. Retry later."
    )
    STORAGE_UNAVAILABLE = ErrorText(
        503, "The event store cannot be reached: nothing was stored. Retry later."
    )
    # A stored template rendered with a send's TemplateData (adapters/templating.py).
    TEMPLATE_NOT_RENDERED = ErrorText(
        422, "The template could not be rendered with this TemplateData: {reason}"
    )
    TEMPLATE_AND_CONTENT = ErrorText(422, "Give TemplateID or Subject and content, not both")
    # POST /api/v1/email/batch (engine/sending/batch.py).
    NOT_IN_A_BATCH = ErrorText(
        422, "{name} is not taken by a batch: give each recipient in Recipients"
    )
    CONTENT_NOT_A_TEMPLATE = ErrorText(422, "The content is not a valid template: {reason}")
    DUPLICATE_RECIPIENT = ErrorText(422, "The recipient is given earlier in this batch")
    BATCH_ATTACHMENTS_TOO_LARGE = ErrorText(
        422, "A batch's attachments are kept with each recipient's message: at most {limit} bytes"
    )
    # Idempotency-Key (engine/idempotency.py), as Stripe answers them.
    INVALID_IDEMPOTENCY_KEY = ErrorText(
        400, "Idempotency-Key must be 1 to 255 printable ASCII characters"
    )
    IDEMPOTENCY_KEY_REUSED = ErrorText(
        422, "Idempotency-Key was used in the last 24 hours for another request"
    )
    # Offered more than it can accept in time (engine/admission.py): a share is refused.
    BUSY = ErrorText(503, "The server is busy: nothing was stored. Retry later.")
    INVALID_WEBHOOK_URL = ErrorText(422, "Invalid WebhookURL: {reason}")
    INVALID_WEBHOOK_PARAMETERS = ErrorText(422, "Invalid Parameters: {reason}")
    INVALID_WEBHOOK_METHOD = ErrorText(422, "Invalid Method: use POST, FORM or GET")


_WEBHOOKS_TOO_MANY_REQUESTS = ErrorText(
    429, "Too many requests. Wait for {seconds} seconds for another {attempts} attempts."
)


class AddWebhookRest:
    """``POST /api/v1/webhooks`` (002)."""

    MISSING_EVENT = ErrorText(2, "Event is missing")
    INVALID_EVENT = ErrorText(3, "Invalid Event value")
    MISSING_URL = ErrorText(5, "WebhookURL is missing")
    INVALID_SENDER_API_KEY = ErrorText(13, "Invalid SenderAPIKey")
    TOO_MANY_REQUESTS = _WEBHOOKS_TOO_MANY_REQUESTS


class GetWebhooksRest:
    """``GET /api/v1/webhooks`` (002)."""

    INVALID_USER_ACCOUNT = ErrorText(2, "Invalid user account")
    INVALID_SENDER_API_KEY = ErrorText(13, "Invalid SenderAPIKey")
    TOO_MANY_REQUESTS = _WEBHOOKS_TOO_MANY_REQUESTS


class DeleteWebhookRest:
    """``DELETE /api/v1/webhooks`` (002)."""

    MISSING_WEBHOOK_ID = ErrorText(1, "WebhookID is missing", status=422)
    INVALID_USER_ACCOUNT = ErrorText(2, "Invalid user account")
    INVALID_WEBHOOK_ID = ErrorText(4, "Invalid WebhookID", status=404)
    INVALID_SENDER_API_KEY = ErrorText(13, "Invalid SenderAPIKey")
    TOO_MANY_REQUESTS = _WEBHOOKS_TOO_MANY_REQUESTS


# ``POST /api.php``: each command numbers its own errors ("ErrorCode"), texts from 002.


class Command:
    """Errors of the command endpoint itself, before any command runs. Not numbered by the
    documents: the code is the HTTP status they travel with (as ``Extensions``); the texts
    are those of the named exceptions of 000 where one fits."""

    MISSING_COMMAND = ErrorText(400, "A required field was not supplied: Command.")
    UNKNOWN_COMMAND = ErrorText(400, "Unknown command: {command}")
    MALFORMED_BODY = ErrorText(400, "The request body could not be read as JSON or form fields")
    NOT_AUTHENTICATED = ErrorText(401, "A required field was not supplied: SessionID or APIKey.")
    INVALID_CREDENTIALS = ErrorText(401, "Invalid SessionID or APIKey.")
    LOGIN_FAILED = ErrorText(401, "Username and password do not match.")  # LoginFailedException
    TOO_LARGE = ErrorText(413, "The request body exceeds the limit of {limit} bytes")
    TOO_MANY_REQUESTS = ErrorText(
        429, "Too many requests. Wait for {seconds} seconds for another {attempts} attempts."
    )
    INVALID_OPTION = ErrorText(400, "Invalid Option specified: {name}")  # InvalidOptionException
    IDEMPOTENCY_NOT_TAKEN = ErrorText(400, "{command} does not take an Idempotency-Key")
    INTERNAL = ErrorText(500, "An unknown exception was encountered.")  # UnknownException
    # No named exception of 000 fits a role's limit; 003 answers 403 for a forbidden action.
    FORBIDDEN = ErrorText(403, "The {role} role may not run {command}.")
    STORAGE_FULL = Extensions.STORAGE_FULL
    STORAGE_UNAVAILABLE = Extensions.STORAGE_UNAVAILABLE


class Templates:
    """``Template.*`` (ours, in the documents' ``Noun.Verb`` style and numbering)."""

    MISSING_PARAMETER = ErrorText(1, "A required field was not supplied: {name}.")
    INVALID_ID = ErrorText(2, "Invalid TemplateID.")
    DUPLICATE_NAME = ErrorText(3, "A template with this name already exists.")
    INVALID_TEMPLATE = ErrorText(4, "Invalid template: {reason}")
    INVALID_VERSION = ErrorText(5, "Invalid Version.")
    TOO_LARGE = ErrorText(6, "A template's parts may hold {limit} bytes at most.")
    INVALID_NAME = ErrorText(7, "Invalid TemplateName.")


class Routes:
    """``Route.*`` (ours): inbound routes, numbered as ``Templates`` are."""

    MISSING_PARAMETER = ErrorText(1, "A required field was not supplied: {name}.")
    INVALID_ID = ErrorText(2, "Invalid RouteID.")
    INVALID_DOMAIN = ErrorText(
        3, "Invalid Domain: it must be one of the account's sender domains or under one."
    )
    INVALID_PATTERN = ErrorText(
        4, "Invalid Pattern: a regular expression of at most 256 characters."
    )
    INVALID_OPTION = ErrorText(5, "Invalid Option specified: {name}")


def _rest(error: ErrorText, status: int) -> ErrorText:
    return ErrorText(error.code, error.message, status)


class TemplatesRest:
    """``/api/v1/templates``: the ``Template.*`` errors, with REST's statuses (a code 2
    there is an unknown template, 404, not the usual 403)."""

    MISSING_PARAMETER = _rest(Templates.MISSING_PARAMETER, 422)
    INVALID_ID = _rest(Templates.INVALID_ID, 404)
    DUPLICATE_NAME = _rest(Templates.DUPLICATE_NAME, 409)
    INVALID_TEMPLATE = _rest(Templates.INVALID_TEMPLATE, 422)
    INVALID_VERSION = _rest(Templates.INVALID_VERSION, 422)
    TOO_LARGE = _rest(Templates.TOO_LARGE, 422)
    INVALID_NAME = _rest(Templates.INVALID_NAME, 422)
    # The sender key's errors, as sending words them.
    INVALID_SENDER_API_KEY = SendEmail.INVALID_SENDER_API_KEY
    MISSING_SENDER_API_KEY = SendEmail.MISSING_SENDER_API_KEY
    TOO_MANY_REQUESTS = _WEBHOOKS_TOO_MANY_REQUESTS

    @classmethod
    def of(cls, error: ErrorText) -> ErrorText:
        """The REST form of a ``Templates`` error (its text as formatted)."""
        status = {1: 422, 2: 404, 3: 409}.get(error.code, 422)
        return ErrorText(error.code, error.message, status)


class RoutesRest:
    """``/api/v1/routes``: the ``Route.*`` errors with REST's statuses."""

    MISSING_PARAMETER = _rest(Routes.MISSING_PARAMETER, 422)
    INVALID_ID = _rest(Routes.INVALID_ID, 404)
    INVALID_DOMAIN = _rest(Routes.INVALID_DOMAIN, 422)
    INVALID_PATTERN = _rest(Routes.INVALID_PATTERN, 422)
    INVALID_OPTION = _rest(Routes.INVALID_OPTION, 422)

    @classmethod
    def of(cls, error: ErrorText) -> ErrorText:
        """The REST form of a ``Routes`` error (its text as formatted)."""
        return ErrorText(error.code, error.message, 404 if error.code == 2 else 422)


class Users:
    """``User.*``, ``Users.Get`` and ``Account.*APIKey*`` (ours, numbered as ``Templates``;
    the texts of 000's named exceptions where one fits)."""

    MISSING_PARAMETER = ErrorText(1, "A required field was not supplied: {name}.")
    INVALID_ID = ErrorText(2, "Invalid UserID.")
    DUPLICATE_USERNAME = ErrorText(3, "The supplied Username is already in use.")
    INVALID_USERNAME = ErrorText(4, "Invalid Username.")  # InvalidUsernameException
    INVALID_ROLE = ErrorText(5, "Invalid Role: use owner, admin, developer, marketer or viewer.")
    WEAK_PASSWORD = ErrorText(6, "The Password must be 12 to 1024 characters.")
    OWNER_ONLY = ErrorText(7, "Only an owner may make, change or delete an owner.")
    LAST_OWNER = ErrorText(8, "The account's own login stays its owner; it cannot be changed here.")
    INVALID_KEY_ID = ErrorText(9, "Invalid KeyID.")
    INVALID_DESCRIPTION = ErrorText(10, "Missing or invalid 'Description' parameter")


class Agencies:
    """Agencies and their client accounts (000's InvalidAgencyAccountException)."""

    INVALID_AGENCY = ErrorText(403, "The specified Master Agency Account could not be found.")
    MISSING_PARAMETER = ErrorText(1, "A required field was not supplied: {name}.")
    NOT_AN_AGENCY = ErrorText(2, "This account is a client of an agency and cannot have clients.")
    INVALID_DOMAIN_NAME = ErrorText(3, "Invalid domain name provided")


class Audit:
    """``Account.AuditLog`` (ours)."""

    INVALID_OPTION = ErrorText(1, "Invalid Option specified: {name}")


class UserLogin:
    MISSING_PARAMETER = ErrorText(400, "A required field was not supplied: {name}.")


class AddApi:
    MISSING_DESCRIPTION = ErrorText(1, "Missing or invalid 'Description' parameter")
    MISSING_DOMAIN_ID = ErrorText(2, "Missing or invalid 'DomainID' parameter")
    DOMAIN_NOT_FOUND = ErrorText(3, "Unable to retrieve sender domain with provided 'DomainID'")


class AddDomain:
    MISSING_DOMAIN_NAME = ErrorText(1, "Missing required parameter: DomainName")
    INVALID_DOMAIN_NAME = ErrorText(2, "Invalid domain name provided")
    LIMIT_REACHED = ErrorText(3, "User has reached the maximum number of sender domains allowed")


class AddSmtp:
    MISSING_DOMAIN_ID = ErrorText(1, "Required field 'DomainID' is missing.")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve the sender domain.")


class ClearDomainQueue:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve sender domain")


class DeleteApi:
    MISSING_KEY_ID = ErrorText(1, "Missing required parameter: ApiKeyId")
    KEY_NOT_FOUND = ErrorText(2, "Invalid API key or API key not found")


class DeleteDomain:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(
        2, "Domain not found or user does not have permission to delete the domain"
    )


class DeleteSmtp:
    MISSING_SMTP_ID = ErrorText(1, "Required field is missing")
    SMTP_NOT_FOUND = ErrorText(2, "SMTP configuration not found or user does not have permission")


class GatewayGetEvents:
    """``EmailGateway.GetEvents`` (002)."""

    MISSING_DOMAIN_ID = ErrorText(1, "Required parameter missing: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Failed to retrieve sender domain")
    MISSING_START_FROM = ErrorText(4, "Required parameter missing: StartFrom")
    MISSING_RETRIEVE_COUNT = ErrorText(5, "Required parameter missing: RetrieveCount")


class AggrEvents:
    MISSING_DOMAIN_ID = ErrorText(1, "Required parameter missing: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Failed to retrieve sender domain")


class DomainStats:
    MISSING_DOMAIN_ID = ErrorText(1, "Required parameter missing: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve domain information")


class GetApis:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve sender domain")


class GetDomain:
    MISSING_DOMAIN_ID = ErrorText(1, "Required parameter missing: DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve domain information")


class GetSmtps:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter 'DomainID'.")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve sender domain details.")


class AddWebhook:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter DomainID")
    MISSING_EVENT = ErrorText(2, "Missing required parameter Event")
    INVALID_EVENT = ErrorText(3, "Invalid event type specified")
    DOMAIN_NOT_FOUND = ErrorText(4, "Domain not found or access denied")
    MISSING_URL = ErrorText(5, "Missing required parameter WebhookURL")


class GetWebhooks:
    MISSING_DOMAIN_ID = ErrorText(1, "Missing required parameter DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Invalid domain or domain does not belong to the user")


class DeleteWebhook:
    MISSING_PARAMETER = ErrorText(1, "Missing required parameter: WebhookID or DomainID")
    DOMAIN_NOT_FOUND = ErrorText(2, "Invalid DomainID or DomainID not found")
    DOMAIN_VALIDATION_FAILED = ErrorText(3, "Domain validation failed")
    WEBHOOK_NOT_FOUND = ErrorText(
        4, "Webhook not found or user does not have permission to access it"
    )


class TestWebhook:
    """``EmailGateway.TestWebhook``: ours (a test call, as Mailgun's and SendGrid's consoles
    send); worded like GetWebhookAttempts' errors."""

    MISSING_WEBHOOK_ID = ErrorText(1, "Missing required parameter: WebhookID")
    WEBHOOK_NOT_FOUND = ErrorText(
        4, "Webhook not found or user does not have permission to access it"
    )


class GetWebhookAttempts:
    """``EmailGateway.GetWebhookAttempts``: ours (the Event API Log of 004); worded like
    DeleteWebhook's errors."""

    MISSING_WEBHOOK_ID = ErrorText(1, "Missing required parameter: WebhookID")
    WEBHOOK_NOT_FOUND = ErrorText(
        4, "Webhook not found or user does not have permission to access it"
    )
    INVALID_STATUS = ErrorText(5, "Invalid Status: use Success or Failure")


class ResetSmtpPassword:
    MISSING_SMTP_ID = ErrorText(1, "Missing required parameter 'smtpid'")
    SMTP_NOT_FOUND = ErrorText(2, "SMTP configuration not found or access denied")


class UpdateDomain:
    MISSING_DOMAIN_ID = ErrorText(1, "Required field 'DomainID' is missing.")
    DOMAIN_NOT_FOUND = ErrorText(5, "Unable to retrieve sender domain information.")


class VerifyDomain:
    MISSING_DOMAIN_ID = ErrorText(1, "Required field 'DomainID' is missing.")
    DOMAIN_NOT_FOUND = ErrorText(2, "Unable to retrieve the sender domain information.")


# Campaign commands (001).


class CampaignApprove:
    MISSING_ID = ErrorText(1, "Missing required parameter: CampaignID")
    NOT_FOUND = ErrorText(2, "Campaign not found")
    # Not in 001, which has no error for approving a campaign that cannot be sent.
    INCOMPLETE = ErrorText(3, "Campaign cannot be approved: {reason}")
    # DuplicateMassEmailException (000).
    DUPLICATE = ErrorText(4, "A campaign with this subject and list was recently sent.")


class CampaignCancel:
    MISSING_ID = ErrorText(1, "Missing required field: CampaignID")
    NOT_FOUND = ErrorText(2, "Campaign does not belong to the user or does not exist")
    # Not in 001: cancelling what has already ended.
    NOT_CANCELLABLE = ErrorText(3, "Campaign is already {status}")


class CampaignCopy:
    INVALID_SOURCE = ErrorText(1, "Invalid source campaign")


class CampaignCreate:
    MISSING_NAME = ErrorText(1, "The campaign name is required.")


class CampaignGet:
    MISSING_ID = ErrorText(1, "Required parameter 'campaignid' is missing.")
    # 001 says numeric; our ids are UUIDs, and an id that names no campaign of the caller's
    # gets the same answer as a malformed one.
    INVALID_ID = ErrorText(2, "The 'campaignid' parameter must be numeric.")


class CampaignPause:
    MISSING_ID = ErrorText(1, "Missing required parameter: CampaignID")
    NOT_FOUND = ErrorText(2, "Campaign does not belong to the user")
    NOT_SENDING = ErrorText(3, "Campaign is not in a 'Sending' state")


class CampaignResume:
    MISSING_ID = ErrorText(1, "Missing required parameter: CampaignID")
    NOT_FOUND = ErrorText(2, "Campaign does not belong to the user")
    NOT_PAUSED = ErrorText(3, "Campaign is not in a 'Paused' state")


class CampaignUpdate:
    MISSING_ID = ErrorText(1, "Campaign ID is required")
    NOT_FOUND = ErrorText(2, "Campaign does not belong to the user")
    INVALID_STATUS = ErrorText(3, "Invalid campaign status")
    EMAIL_NOT_OWNED = ErrorText(4, "Email ID does not belong to the user")


class CampaignsDelete:
    INVALID = ErrorText(1, "The 'campaigns' parameter is missing or invalid.")


class Lists:
    """List, subscriber and email commands: named in the documents' ``Noun.Verb`` style, with
    the texts of 000's named exceptions; each exception keeps one number everywhere."""

    MISSING_PARAMETER = ErrorText(1, "A required field was not supplied: {name}.")
    INVALID_GROUP_ID = ErrorText(2, "Invalid Group ID.")
    NUMBERS = {
        "InvalidGroupFieldsException": 3,
        "InvalidFieldNameException": 4,
        "DuplicateEmailAddressException": 5,
        "InvalidEmailAddressException": 6,
        "DuplicateGroupNameException": 7,
        "InvalidGroupNameException": 8,
        "TooManyRecordsException": 9,
        "InvalidFieldCountException": 10,
        "InvalidFieldValueException": 11,
        "MissingRequiredParameterSubjectException": 12,
        "MissingRequiredParameterFromDisplayNameException": 13,
        "InvalidFromEmailException": 14,
        "NoMessageException": 15,
        "InvalidReplyEmailException": 16,
        "InvalidMassEmailIDException": 17,
        "InvalidOptionException": 18,
        "UnsubscribedEmailAddressException": 19,
        "BouncedEmailAddressException": 20,
        "SystemEmailAddressException": 21,
    }
    DUPLICATE_NAME = ErrorText(7, "List name already exists.")
    INVALID_NAME = ErrorText(8, "List name is invalid.")
    TOO_MANY_RECORDS = ErrorText(
        9, "Too many records: at most {limit} subscribers can be imported in one request."
    )
    MISSING_SUBJECT = ErrorText(12, "The Subject is a required parameter and is missing.")
    MISSING_FROM_NAME = ErrorText(
        13, "The From Display Name is a required parameter and is missing."
    )
    INVALID_FROM = ErrorText(14, "Invalid From email.")
    NO_MESSAGE = ErrorText(15, "MessagePlain and/or MessageHTML must be specified.")
    INVALID_REPLY = ErrorText(16, "Invalid Reply-To email.")
    INVALID_EMAIL_ID = ErrorText(17, "Invalid email ID.")
    INVALID_OPTION = ErrorText(18, "Invalid Option specified: {name}")
    # Ours: a campaign email's subject, sender name or body that is not a valid template.
    INVALID_TEMPLATE = ErrorText(19, "Invalid template: {reason}")

    @classmethod
    def for_exception(cls, exception: str, message: str) -> ErrorText:
        return ErrorText(cls.NUMBERS.get(exception, 400), message)


# Sending addresses and pools (ours; the texts are 000's named exceptions, the code the HTTP
# status they travel with, as for ``Command``).


class IpAddresses:
    MISSING_PARAMETER = ErrorText(400, "A required field was not supplied: {name}.")
    # InvalidIPAddressException: not an address, not one of this machine's, or not the
    # account's.
    INVALID_IP_ADDRESS = ErrorText(
        400, "The specified value does not exist or is not a valid IP Address."
    )
    # DuplicateIPAddressException
    DUPLICATE_IP_ADDRESS = ErrorText(409, "The specified IP Address is already registered.")
    INVALID_OPTION = ErrorText(400, "Invalid Option specified: {name}")
