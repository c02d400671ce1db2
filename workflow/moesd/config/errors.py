"""The one error of a config that cannot be used."""


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""
