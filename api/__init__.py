"""The HTTP surface: request parsing, authentication, response shapes and error mapping."""
