"""Progress of a training or a search: a tqdm bar per epoch (batch, loss, running accuracy, images/s) on stderr
when stderr is a terminal, one line per finished epoch and per search event on stdout always. A log file or a batch
job's output thus gets the lines alone, not thousands of carriage-return frames."""

from __future__ import annotations

import sys

POSTFIX_SECONDS = 0.5  # how often the bar's loss / accuracy / images/s are read from the device


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal; False for a closed stream or one without ``isatty`` (some wrappers)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _write(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


class Progress:
    """Callbacks for :func:`snnlth.train`, :func:`snnlth.search` and :func:`snnlth.find_ticket`. A bar is drawn only
    when ``sys.stderr`` is a terminal at the moment an epoch's bar would be created; with ``enabled=False`` never.
    The epoch lines and events are written in every case."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.bar, self.epoch = enabled, None, None
        self.shown = 0.0  # BatchInfo.seconds when the postfix was last refreshed

    def on_batch(self, info, label: str = "") -> None:
        if not self.enabled:
            return
        if self.epoch != (label, info.epoch):
            self._open(info, label)
        if self.bar is None:  # stderr is not a terminal: the epoch line will say it all
            return
        self.bar.update(info.batch - self.bar.n)
        # loss and accuracy live on the device: reading them waits for the GPU, so at most every POSTFIX_SECONDS
        if info.batch == info.batches or info.seconds - self.shown >= POSTFIX_SECONDS:
            self.shown = info.seconds
            self.bar.set_postfix(loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.1f}%",
                                 img_s=f"{info.images_per_second:.0f}", refresh=False)

    def _open(self, info, label: str) -> None:
        self.close()
        self.epoch = (label, info.epoch)
        self.shown = 0.0
        if not is_terminal(sys.stderr):
            return
        from tqdm import tqdm

        desc = f"{label + ' ' if label else ''}epoch {info.epoch + 1}/{info.epochs}"
        self.bar = tqdm(total=info.batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch(self, row: dict) -> None:
        self.close()
        self.epoch = None
        where = f"{row['phase']:<14}" if "phase" in row else ""
        test = "     –  " if row["test_accuracy"] is None else f"{row['test_accuracy']:6.2f}%"
        _write(f"{where}epoch {row['epoch']:>3}  T={row['timesteps']}  lr {row['lr']:.4f}  "
               f"train loss {row['train_loss']:.4f}  train acc {row['train_accuracy']:6.2f}%  test acc {test}  "
               f"{row['images_per_second']:.0f} img/s  {row['train_seconds']:.1f}s")

    def on_event(self, message: str) -> None:
        _write(f"-- {message}")
