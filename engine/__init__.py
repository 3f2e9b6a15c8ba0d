"""The engine: one sub-package per capability (accounts, sending, delivery, campaigns,
feedback, webhooks, reporting), each with its application service and its worker loop;
the event log's writer, followers and relay (``eventlog``); and the runtime that composes
them from settings (``runtime``).

Shared by all: the event-sourced application (``application``), the settings
(``settings``), ids (``ids``), the secret and its derived keys (``keys``) and the reading of
``/api.php`` parameters (``params``).
"""
