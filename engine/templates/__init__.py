"""Stored templates (``Template.*`` of ``/api.php``): named subjects and bodies with
versions, checked by the template engine when stored (adapters/templating.py).

Writes ``Template.Created``, ``VersionAdded``, ``VersionActivated``, ``Renamed``,
``Deleted`` and the account's ``TemplateIndex``; reads nothing from the stream.
"""
