"""The composition root: settings, application services, the relay and the worker loops."""
