"""The one exception type users see.

Every problem caused by input (files, columns, labels, config values, model folders) is raised as a
`TextDistillError` whose message names the problem and the fix in one line. The CLI prints it without a
traceback; Python callers can catch it.
"""


class TextDistillError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""
