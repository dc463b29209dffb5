"""The one exception type users see.

Every problem caused by input (files, columns, labels, config values, model folders) is raised as a
`TextDistillError` whose message names the problem and the fix in one line. The CLI prints it without a
traceback; Python callers can catch it.
"""


class TextDistillError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""


def preview(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, built only as far as that: a YAML alias bomb is a few hundred
    bytes whose full repr is gigabytes, and a message must stay one short line whatever it quotes."""
    size, parts = 0, []
    for part in _repr_parts(value, limit):
        parts.append(part)
        size += len(part)
        if size > limit:
            return "".join(parts)[:limit] + "..."
    return "".join(parts)


def _repr_parts(value: object, limit: int):
    """repr(value) piece by piece, containers opened lazily (a shared or self-containing one is never expanded
    further than what is read)."""
    if isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _repr_parts(key, limit)
            yield ": "
            yield from _repr_parts(item, limit)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _repr_parts(item, limit)
        yield "]"
    elif isinstance(value, (str, bytes)):
        yield repr(value[: limit + 1])
    else:
        yield repr(value)[: limit + 1]
