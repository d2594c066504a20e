"""Plain-text progress for a training run: a bar redrawn in place (``\\r``) while an epoch runs,
when the stream is a terminal, and one log line per epoch (mean loss, lr of every group) always,
so that a log file or a CI transcript holds one line per epoch and no partial bars.

    epoch  3/12 [##########----------]  12/25  loss 1.02381
    epoch  3/12  loss 1.054420  lr base 0.0199  head 0.0398
"""

BAR = 20


def step_line(epoch: int, epochs: int, inner: int, epoch_len: int, loss: float) -> str:
    """The progress bar after iteration ``inner`` (0-based) of ``epoch`` (0-based)."""
    done = inner + 1
    filled = BAR * done // epoch_len
    width = len(str(epochs))
    return (
        f"epoch {epoch + 1:>{width}}/{epochs} [{'#' * filled}{'-' * (BAR - filled)}] "
        f"{done:>{len(str(epoch_len))}}/{epoch_len}  loss {loss:.5f}"
    )


def epoch_line(epoch: int, epochs: int, loss: float, lrs: dict) -> str:
    """The log line of a finished epoch: its mean loss and ``lrs`` ``{group: lr}``."""
    width = len(str(epochs))
    groups = "  ".join(f"{group} {lr:.4g}" for group, lr in lrs.items())
    return f"epoch {epoch + 1:>{width}}/{epochs}  loss {loss:.6f}  lr {groups}"


def step(stream, epoch: int, epochs: int, inner: int, epoch_len: int, loss: float) -> None:
    """Redraws the bar on a terminal; writes nothing to other streams."""
    if stream.isatty():
        stream.write("\r" + step_line(epoch, epochs, inner, epoch_len, loss))
        stream.flush()


def epoch(stream, epoch: int, epochs: int, loss: float, lrs: dict) -> None:
    """Writes the epoch's log line, over the bar on a terminal."""
    clear = "\r\033[K" if stream.isatty() else ""
    stream.write(clear + epoch_line(epoch, epochs, loss, lrs) + "\n")
    stream.flush()
