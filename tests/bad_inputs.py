"""The check behind the bad-input tables: a call that must be refused before anything is traced,
with an exception of the stated type whose message names the argument or key and the value."""

import pytest


def assert_rejects(call, exception, *needles):
    """``call()`` raises ``exception``, and its message contains every one of ``needles``."""
    with pytest.raises(exception) as raised:
        call()
    message = str(raised.value)
    missing = [needle for needle in needles if needle not in message]
    assert not missing, f"message {message!r} does not name {missing}"
