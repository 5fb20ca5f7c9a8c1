"""The console's HTTP side: ``/console`` on the admin port, server-rendered HTML for htmx.

Pages are Jinja2 templates; htmx (shipped built in ``static/``, no build step) swaps the
fragments in and polls them for live counts, so the server stays the synchronous handler the
admin listener already is. Everything the console changes goes through POST with the page's
token (a page from another origin cannot forge one), and nothing changes at all when the
console is read-only (the default off loopback).
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2

from ..admin.http import HttpRequest, HttpResponse
from ..core.broker import Broker
from ..core.clock import EmulatorClock
from ..faults import EFFECTS, OPERATIONS, FaultInjector, FaultRule, FaultRuleError
from . import actions, views
from .panels import Panel, PanelTable
from .views import ViewError

HTML = "text/html; charset=utf-8"
TOKEN_HEADER = "x-console-token"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
_PANEL_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_ADVANCE_SECONDS = 366 * 86400


def parse_amount(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1h 30m``, ``2d``: seconds to move the clock by."""
    if not text.strip():
        raise ViewError(400, "amount: missing (for example 30s, 5m, 1h 30m)")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _AMOUNT.match(text, pos)
        if match is None or match.end() == pos:
            raise ViewError(400, f"amount: {text!r} is not a duration such as 30s, 5m, 1h 30m")
        total += float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
        pos = match.end()
    if not math.isfinite(total) or total > MAX_ADVANCE_SECONDS:
        raise ViewError(400, "amount: at most 366 days at a time")
    return total


def _pretty_body(body: Mapping[str, Any]) -> str:
    """The body as a person wants to read it: JSON indented, text as is, else its value."""
    kind = body.get("kind")
    if kind == "data":
        text = body.get("text")
        if text is None:
            return f"(binary, base64) {body.get('base64', '')}"
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            return str(text)
    if kind in ("value", "sequence"):
        return json.dumps(body.get("value"), indent=2, ensure_ascii=False, default=str)
    return f"({kind})"


def _short_time(value: object) -> str:
    """``2026-12-07T15:04:05.123456Z`` → ``15:04:05``; the date shows in the title."""
    if not isinstance(value, str) or "T" not in value:
        return "" if value is None else str(value)
    return value.split("T", 1)[1][:8]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("emulator.servicebus.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty_body"] = _pretty_body
    env.filters["short_time"] = _short_time
    env.filters["pretty_json"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v})
    return env


class Console:
    """Renders the console for one emulator; ``handle`` answers ``/console/...`` requests."""

    def __init__(
        self,
        broker: Broker,
        clock: EmulatorClock,
        faults: FaultInjector,
        *,
        writable: bool,
        read_only_reason: str = "",
        namespace: str = "",
    ) -> None:
        self.namespace = namespace
        """Shown in the header: the namespace's name and tier."""
        self.broker = broker
        self.clock = clock
        self.faults = faults
        self.writable = writable
        self.read_only_reason = read_only_reason
        self.token = secrets.token_urlsafe(24)
        self.panels: dict[str, Panel] = {}
        self._env = _environment()
        self._routes: dict[tuple[str, str], Callable[[HttpRequest], HttpResponse]] = {
            ("GET", ""): self._page,
            ("GET", "entities"): self._entities,
            ("GET", "clock"): self._clock,
            ("POST", "clock/advance"): self._advance,
            ("GET", "messages"): self._messages,
            ("GET", "message"): self._message,
            ("POST", "resubmit"): self._resubmit,
            ("POST", "purge"): self._purge,
            ("POST", "cancel"): self._cancel,
            ("GET", "faults"): self._faults,
            ("POST", "faults"): self._add_fault,
            ("POST", "faults/clear"): self._clear_faults,
            ("POST", "faults/remove"): self._remove_fault,
        }

    def add_panel(self, name: str, source: Callable[[], PanelTable]) -> None:
        """Show ``source()``'s table on the page, refreshed like the counts."""
        if not _PANEL_NAME.fullmatch(name):
            raise ValueError(f"panel name {name!r}: use lower-case letters, digits and '-'")
        self.panels[name] = Panel(name, source)

    def remove_panel(self, name: str) -> None:
        self.panels.pop(name, None)

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        parts = request.segments[1:]
        try:
            if parts[:1] == ["static"] and len(parts) == 2 and request.method == "GET":
                return self._static(parts[1])
            if parts[:1] == ["panels"] and len(parts) == 2 and request.method == "GET":
                return self._panel(parts[1])
            key = (request.method, "/".join(parts))
            handler = self._routes.get(key)
            if handler is None:
                known = {path for _, path in self._routes}
                status = 405 if key[1] in known else 404
                raise ViewError(status, f"{request.method} /console/{key[1]}: no such page")
            if request.method == "POST":
                self._check_write(request)
            return handler(request)
        except ViewError as exc:
            return self._notice(exc.message, tone="bad", status=exc.status)

    def _check_write(self, request: HttpRequest) -> None:
        if not self.writable:
            raise ViewError(403, f"read-only console: {self.read_only_reason}")
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            raise ViewError(403, "missing or stale page token: reload the console page")

    # -- rendering -----------------------------------------------------------------------------

    def _render(
        self, template: str, status: int = 200, trigger: str | None = None, **context: Any
    ) -> HttpResponse:
        body = self._env.get_template(template).render(console=self, **context)
        headers = {"Cache-Control": "no-store"}
        if trigger:
            headers["HX-Trigger"] = trigger
        return HttpResponse(status, body.encode("utf-8"), HTML, headers)

    def _notice(
        self, message: str, *, tone: str = "ok", status: int = 200, changed: bool = False
    ) -> HttpResponse:
        return self._render(
            "_notice.html",
            status=status,
            trigger="console-changed" if changed else None,
            message=message,
            tone=tone,
        )

    def _static(self, name: str) -> HttpResponse:
        suffix = name[name.rfind(".") :] if "." in name else ""
        content_type = _STATIC_TYPES.get(suffix)
        resource = resources.files("emulator.servicebus.console").joinpath("static", name)
        if content_type is None or "/" in name or not resource.is_file():
            raise ViewError(404, f"no static file {name!r}")
        return HttpResponse(
            200,
            resource.read_bytes(),
            content_type,
            {"Cache-Control": "public, max-age=3600"},
        )

    # -- pages and fragments -------------------------------------------------------------------

    def _page(self, request: HttpRequest) -> HttpResponse:
        return self._render(
            "index.html",
            rows=views.namespace_rows(self.broker),
            clock=views.clock_view(self.clock.now(), self.clock.offset),
            faults=self.faults.rules,
            operations=OPERATIONS,
            effects=EFFECTS,
            panels=list(self.panels.values()),
            selected=request.query.get("path", ""),
        )

    def _entities(self, request: HttpRequest) -> HttpResponse:
        return self._render(
            "_entities.html",
            rows=views.namespace_rows(self.broker),
            selected=request.query.get("path", ""),
        )

    def _clock(self, request: HttpRequest) -> HttpResponse:
        clock = views.clock_view(self.clock.now(), self.clock.offset)
        return self._render("_clock.html", clock=clock)

    def _advance(self, request: HttpRequest) -> HttpResponse:
        seconds = parse_amount(_form(request).get("amount", [""])[0])
        self.clock.advance(seconds)
        return self._render(
            "_clock.html",
            trigger="console-changed",
            clock=views.clock_view(self.clock.now(), self.clock.offset),
            moved=views.describe_seconds(seconds),
        )

    def _page_params(self, values: Mapping[str, str]) -> dict[str, Any]:
        view = values.get("view") or "active"
        if view not in views.VIEWS:
            raise ViewError(400, f"view: {view!r} is not one of {', '.join(views.VIEWS)}")
        return {
            "path": values.get("path", ""),
            "view": view,
            "from_sequence": _int(values.get("from"), "from", 0),
            "page_size": _int(values.get("size"), "size", views.PAGE_SIZE),
            "reason": values.get("reason") or None,
        }

    def _messages(self, request: HttpRequest) -> HttpResponse:
        params = self._page_params(request.query)
        if not params["path"]:
            raise ViewError(400, "path: missing (choose an entity on the left)")
        page = views.message_page(
            self.broker,
            params.pop("path"),
            params.pop("view"),
            **params,
        )
        return self._render("_messages.html", page=page)

    def _message(self, request: HttpRequest) -> HttpResponse:
        address = request.query.get("address", "")
        seq = _int(request.query.get("seq"), "seq", -1)
        if not address or seq < 0:
            raise ViewError(400, "address and seq: both needed")
        detail = views.message_detail(self.broker, address, seq)
        return self._render("_message.html", message=detail, address=address)

    def _resubmit(self, request: HttpRequest) -> HttpResponse:
        form = _form(request)
        address = form.get("address", [""])[0]
        chosen = _numbers(form)
        results = actions.resubmit(self.broker, address, chosen)
        done = sum(r.outcome == "resubmitted" for r in results)
        lines = [f"#{r.sequence_number}: {r.outcome} ({r.detail})" for r in results]
        return self._render(
            "_notice.html",
            trigger="console-changed",
            message=f"{done} of {len(results)} resubmitted",
            lines=lines,
            tone="ok" if done == len(results) else "warn",
        )

    def _purge(self, request: HttpRequest) -> HttpResponse:
        form = _form(request)
        path = form.get("path", [""])[0]
        view = form.get("view", ["active"])[0]
        if view not in views.VIEWS:
            raise ViewError(400, f"view: {view!r} is not one of {', '.join(views.VIEWS)}")
        removed = actions.purge(self.broker, path, view)  # type: ignore[arg-type]
        return self._notice(f"purged {removed} message(s) from {path} ({view})", changed=True)

    def _cancel(self, request: HttpRequest) -> HttpResponse:
        form = _form(request)
        path = form.get("path", [""])[0]
        cancelled = actions.cancel_scheduled(self.broker, path, _numbers(form))
        return self._notice(f"cancelled {cancelled} scheduled message(s) on {path}", changed=True)

    def _faults(self, request: HttpRequest) -> HttpResponse:
        return self._render_faults()

    def _add_fault(self, request: HttpRequest) -> HttpResponse:
        form = {k: v[0] for k, v in _form(request).items() if v and v[0].strip()}
        rule: dict[str, Any] = {k: form[k] for k in ("operation", "effect", "entity") if k in form}
        for name, kind in (("probability", float), ("next_n", int), ("latency_ms", float)):
            if name in form:
                try:
                    rule[name] = kind(form[name])
                except ValueError:
                    raise ViewError(400, f"{name}: {form[name]!r} is not a number") from None
        try:
            added = self.faults.add(rule)
        except FaultRuleError as exc:
            return self._render_faults(error=str(exc), status=400)
        return self._render_faults(message=f"added fault {added.id}")

    def _clear_faults(self, request: HttpRequest) -> HttpResponse:
        count = len(self.faults.rules)
        self.faults.clear()
        return self._render_faults(message=f"cleared {count} fault rule(s)")

    def _remove_fault(self, request: HttpRequest) -> HttpResponse:
        rule_id = _form(request).get("id", [""])[0]
        if not self.faults.remove(rule_id):
            return self._render_faults(error=f"no fault rule {rule_id!r}", status=404)
        return self._render_faults(message=f"removed fault {rule_id}")

    def _render_faults(
        self, *, message: str = "", error: str = "", status: int = 200
    ) -> HttpResponse:
        rules: list[FaultRule] = self.faults.rules
        return self._render(
            "_faults.html",
            status=status,
            faults=rules,
            operations=OPERATIONS,
            effects=EFFECTS,
            message=message,
            error=error,
        )

    def _panel(self, name: str) -> HttpResponse:
        panel = self.panels.get(name)
        if panel is None:
            raise ViewError(404, f"no panel {name!r}")
        try:
            table = panel.source()
        except Exception as exc:  # a broken panel must not break the page
            table = PanelTable(panel.name, (), (), note=f"this panel failed: {exc!r}")
        return self._render("_panel.html", panel=panel, table=table)


def _form(request: HttpRequest) -> dict[str, list[str]]:
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ViewError(400, "the form is not UTF-8") from None
    return parse_qs(text, keep_blank_values=True)


def _int(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ViewError(400, f"{name}: {text!r} is not a whole number") from None


def _numbers(form: Mapping[str, list[str]]) -> list[int]:
    chosen = [_int(v, "seq", -1) for v in form.get("seq", [])]
    if not chosen:
        raise ViewError(400, "nothing selected: tick the messages first")
    return chosen
