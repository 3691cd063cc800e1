"""The one exception type that means "the user gave us something we cannot use".

The CLI turns a :class:`GeosynthError` into a one-line message and exit code 2; anything else is a
bug in geosynth and exits with code 1.
"""


class GeosynthError(Exception):
    """Bad input: a path, argument or file content the user can fix.

    The message must name the offending file or argument and say what was expected.
    """
