"""The one exception type every layer raises for a user's mistake.

It lives below everything (imports nothing) so that the command line can catch it
without importing the config machinery: a stage job run with ``--spec`` never
imports ``soften.config`` (see soften.codedeps).
"""


class ConfigError(ValueError):
    """A configuration problem, reported with the offending key or file (exit status 2, no traceback)."""
