"""Accounts: logins, sender domains with their DNS and DKIM, sender API keys, SMTP
credentials (``EmailGateway.*`` and ``User.Login`` of 002 and 000), and the sending
addresses and pools of direct delivery (``ip_pools``).

Writes the ``Account``, ``UsernameClaim``, ``SenderDomain``, ``SenderApiKey``,
``SmtpCredential``, ``SendingAddresses`` and ``AddressClaim`` events (``Account.Opened``,
``SenderDomain.Verified``, ``SenderDomain.DnsChecked``, ``SmtpCredential.Issued`` …);
clearing a domain's queue records ``Message.Failed`` for each message still waiting.
Reads no stream: every command loads the aggregates it answers about.
"""
