"""The check behind the bad-input tables: a call that must be refused before anything is traced,
with an exception of the stated type whose message names the argument or key and the value."""

import os
import traceback

import pytest


def assert_rejects(call, exception, *needles):
    """``call()`` raises ``exception``, and its message contains every one of ``needles``."""
    with pytest.raises(exception) as raised:
        call()
    message = str(raised.value)
    missing = [needle for needle in needles if needle not in message]
    assert not missing, f"message {message!r} does not name {missing}"


def raised_by_purelr(error: BaseException) -> bool:
    """The innermost frame of ``error``'s traceback lies in purelr (not jax, numpy or Python)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}purelr{os.sep}" in frames[-1].filename


def assert_purelr_rejects(call, exception, *needles):
    """``assert_rejects``, and the exception is raised by purelr's own check (``raised_by_purelr``)."""
    raised = []

    def recorded():
        try:
            call()
        except BaseException as error:
            raised.append(error)
            raise

    assert_rejects(recorded, exception, *needles)
    assert raised_by_purelr(raised[0]), "".join(traceback.format_tb(raised[0].__traceback__)[-3:])
