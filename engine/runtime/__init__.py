"""The runtime: one process's engine built from settings (``composition``), its roles, and
the worker processes that ``sendstream serve`` starts beside the API (``processes``).

Records no events of its own: it wires the capabilities' services and worker loops to
the event store, the stream, the reporting store and the mail transport.
"""
