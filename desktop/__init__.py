"""The tidemesh desktop app (Flet 1.0): the operator's views — overview, tasks, a task's live
stream, submit (a form generated from the kind's input message), dead letters — over the Python
client's gRPC channel, each at a route (`tidemesh desktop --open tasks/ID`). `tidemesh desktop`
runs it in Flet's window, or `--web` in a browser. The model (`desktop._model`, `desktop._form`)
holds no Flet."""

from desktop._form import FieldSpec, FormErrors, InputForm, form_for, read_form
from desktop._launch import GET_THE_CLIENT, NoDesktop, desktop_refusal, fallback_note
from desktop._model import Mark, parse_route, route_for

__all__ = [
    "GET_THE_CLIENT",
    "FieldSpec",
    "FormErrors",
    "InputForm",
    "Mark",
    "NoDesktop",
    "desktop_refusal",
    "fallback_note",
    "form_for",
    "parse_route",
    "read_form",
    "route_for",
]
