"""Campaigns: subscriber lists, campaign emails and the ``Campaign.*`` / ``Campaigns.*``
lifecycle of 001 (``commands``), and the runner that fans a due campaign out into
Messages (``runner``).

Writes the ``SubscriberList``, ``CampaignEmail``, ``Library``, ``SavedSegment``,
``Campaign`` and ``CampaignInstance`` events (``Campaign.Scheduled``,
``CampaignInstance.BatchCreated``, ``Campaign.Finished`` …) and, for each recipient of a
batch, ``Message.Accepted`` and ``Message.Queued``. The runner reads the ``Campaign``
events of the log at start to know which campaigns to watch, and the reporting tables
to pace its fan-out and to see an instance finished.
"""
