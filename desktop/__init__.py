"""The tidemesh desktop app (Flet 1.0): the operator's views — overview, tasks, a task's live
stream, submit, dead letters — over the Python client's gRPC channel. `tidemesh desktop` runs it
in Flet's window, or `--web` in a browser. The model (`desktop._model`) holds no Flet."""

from desktop._launch import GET_THE_CLIENT, NoDesktop, desktop_refusal, fallback_note
from desktop._model import FormError, Mark, Submission, parse_submission

__all__ = [
    "GET_THE_CLIENT",
    "FormError",
    "Mark",
    "NoDesktop",
    "Submission",
    "desktop_refusal",
    "fallback_note",
    "parse_submission",
]
