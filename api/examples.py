"""The API documents' own sample requests (001, 002), as examples of the OpenAPI document.

Each is the document's sample with two changes: the credentials (``SessionID``,
``APIKey``, ``SenderAPIKey``) travel by the security schemes instead, and the documents'
numeric ids (``"123"``) are shown as this engine's ids, which are UUIDs.
tests/api/test_command_contract.py holds each to its operation's schema.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMMAND_EXAMPLES", "REST_EXAMPLES"]

AN_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"

COMMAND_EXAMPLES: dict[str, dict[str, Any]] = {
    "Campaign.Approve": {"CampaignID": AN_ID},
    "Campaign.Cancel": {"CampaignID": AN_ID},
    "Campaign.Copy": {"CampaignID": AN_ID},
    "Campaign.Create": {"CampaignName": "Summer Sale Campaign"},
    # The document writes these three in lower case, which is read too.
    "Campaign.Get": {"CampaignID": AN_ID, "RetrieveStatistics": "true", "RetrieveTags": "true"},
    "Campaign.Pause": {"CampaignID": AN_ID},
    "Campaign.Resume": {"CampaignID": AN_ID},
    "Campaign.Update": {
        "CampaignID": AN_ID, "CampaignStatus": "Ready", "CampaignName": "New Campaign Name",
    },
    "Campaigns.Delete": {"Campaigns": AN_ID},
    "Campaigns.Get": {
        "RecordsPerRequest": "10", "RecordsFrom": "0", "CampaignStatus": "Scheduled",
        "SearchKeyword": "Summer", "OrderField": "CampaignName", "OrderType": "ASC",
        "RetrieveTags": "true", "Tags": "1,2,3", "RetrieveStatistics": "true",
    },
    "EmailGateway.AddAPI": {"Description": "My new API key", "DomainID": AN_ID},
    "EmailGateway.AddDomain": {"DomainName": "example.com"},
    "EmailGateway.AddSMTP": {"DomainID": AN_ID},
    "EmailGateway.AddWebhook": {
        "DomainID": AN_ID, "Event": "bounce", "WebhookURL": "https://yourdomain.com/webhook",
    },
    "EmailGateway.AggrEvents": {
        "DomainID": AN_ID, "StartDate": "2023-01-01", "EndDate": "2023-01-31",
        "AggregatedField": "eventType", "AggregateSize": 10,
    },
    "EmailGateway.ClearDomainQueue": {"DomainID": AN_ID},
    "EmailGateway.DeleteAPI": {"ApiKeyId": AN_ID},
    "EmailGateway.DeleteDomain": {"DomainID": AN_ID},
    "EmailGateway.DeleteSMTP": {"smtpid": AN_ID},
    "EmailGateway.DeleteWebhook": {"WebhookID": AN_ID, "DomainID": AN_ID},
    "EmailGateway.DomainStats": {
        "DomainID": AN_ID, "StartDate": "2023-01-01", "EndDate": "2023-01-31",
    },
    "EmailGateway.GetAPIs": {"DomainID": AN_ID},
    "EmailGateway.GetDomain": {"DomainID": AN_ID},
    "EmailGateway.GetDomains": {},
    "EmailGateway.GetEvents": {
        "DomainID": AN_ID, "StartFrom": 0, "RetrieveCount": 50, "StartDate": "2023-01-01",
        "EndDate": "2023-01-31", "Event": "open", "Query": "subject:welcome",
    },
    "EmailGateway.GetSMTPs": {"DomainID": AN_ID},
    "EmailGateway.GetWebhooks": {"DomainID": AN_ID},
    "EmailGateway.ResetSMTPPassword": {"smtpid": AN_ID},
    "EmailGateway.UpdateDomain": {
        "DomainID": AN_ID, "LinkTracking": "1", "OpenTracking": "1", "UnsubscribeLink": "1",
        "HostingProvider": "YourHostingProvider", "Subdomain": "mail",
    },
    "EmailGateway.VerifyDomain": {"DomainID": AN_ID},
}  # fmt: skip

# By (method, path): the request body's sample, or the query string's.
REST_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/v1/email"): {
        "Subject": "Hello World",
        "ContentType": "html",
        "HtmlContent": "<p>Hello, World!</p>",
        "From": {"email": "sender@example.com", "name": "John Doe"},
        "To": [{"email": "recipient@example.com", "name": "Jane Doe"}],
    },
    ("post", "/api/v1/email/batch"): {
        "Subject": "Your order {{ order }}",
        "ContentType": "html",
        "HtmlContent": "<p>Hello {{ name }}, order {{ order }} is on its way.</p>",
        "From": {"email": "sender@example.com", "name": "John Doe"},
        "Recipients": [
            {"email": "jane@example.com", "name": "Jane Doe",
             "TemplateData": {"name": "Jane", "order": "A-1001"}},
            {"email": "sam@example.com", "name": "Sam Roe",
             "TemplateData": {"name": "Sam", "order": "A-1002"}},
        ],
    },
    ("post", "/api/v1/webhooks"): {
        "Event": "delivered", "WebhookURL": "https://yourdomain.com/webhook",
    },
    ("delete", "/api/v1/webhooks"): {"WebhookID": AN_ID},
}  # fmt: skip
