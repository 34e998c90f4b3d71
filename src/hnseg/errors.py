"""Errors that hnseg raises for bad input, so callers can tell a user's data problem from a bug."""


class InputError(ValueError):
    """Input data or configuration that hnseg cannot use.

    The message always names what is wrong (patient, file or key), and how to fix it.
    """


class ConfigError(InputError):
    """A configuration file or patients sheet that does not match its schema."""
