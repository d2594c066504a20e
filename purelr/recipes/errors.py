"""The error of a config that cannot be read, merged or built."""


class ConfigError(ValueError):
    """A config file that cannot be read or merged; the message names the file and the key."""
