"""A lab helper used as a context manager: started on entry, stopped on exit, and
stopped as well when starting fails half-way, so nothing it made is left behind."""

from __future__ import annotations

from typing import Any, Self


class Resource:
    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
