"""``sendstream``, the command line: the entry point above the engine and the API it serves."""
