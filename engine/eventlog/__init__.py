"""The event log as the engine's processes share it: into it, out of it, onto Kafka.

``writer`` saves many callers' aggregates in one event-store transaction (group
commit); ``followers`` hand every consumer the same ``EventEnvelope``, from the
notification log (embedded mode) or from Kafka, with its position kept beside its
effect; ``relay`` publishes every recorded event, in log order, to Kafka.

Reads and writes events of every kind without looking into them.
"""
