"""The one exception type the CLI turns into a single line for the user."""


class InputError(Exception):
    """Bad input or an impossible request: the message names the file and the fix.

    The command-line entry point prints ``error: <message>`` and exits with code 2,
    never a traceback.
    """
