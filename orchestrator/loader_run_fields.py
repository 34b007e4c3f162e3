"""Validation of what a workflow gives its runs: ``params``, ``pass_env`` and ``notify`` (a part of the
loader's validator, kept apart so each module stays one concern), and the small helpers both use."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.notify_rules import EVENTS, NotifyRule
from orchestrator.params import (
    MAX_CHOICES,
    MAX_PARAMS,
    PARAM_FIELDS,
    PARAM_NAME_RE,
    PARAM_TYPES,
    ParamError,
    ParamSpec,
    coerce,
)
from orchestrator.parsing import bad_string, summary
from orchestrator.workflow import Schedule
from workers.secrets import is_secret_name, secret_patterns


class RunFieldsValidator:
    """Mixed into the loader's ``_Validator``: uses its ``err`` (record a problem) and ``text`` (check a
    string the system can take)."""

    def params(self, raw: Any, schedule: Schedule | None) -> dict[str, ParamSpec]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.err(f"must be a mapping of names to declarations, got {_type(raw)}", field="params")
            return {}
        if len(raw) > MAX_PARAMS:
            self.err(f"declares more than {MAX_PARAMS} parameters", field="params")
            return {}
        tz = ZoneInfo(schedule.timezone) if schedule else UTC
        out: dict[str, ParamSpec] = {}
        env_names: dict[str, str] = {}
        for name, decl in raw.items():
            where = f"params.{_field(name)}"
            if not isinstance(name, str) or not PARAM_NAME_RE.fullmatch(name):
                self.err("a parameter name must match [A-Za-z][A-Za-z0-9_]{0,63}", field=where)
                continue
            other = env_names.get(name.upper())
            if other is not None:
                self.err(f"EXECUTIONER_PARAM_{name.upper()} would be {other!r} and {name!r}", field=where)
                continue
            env_names[name.upper()] = name
            spec = self.param(name, decl, where, tz)
            if spec is not None:
                out[name] = spec
        return out

    def param(self, name: str, decl: Any, where: str, tz: Any) -> ParamSpec | None:
        if decl is None:
            decl = {}
        if not isinstance(decl, dict):
            self.err(f"must be a mapping ({', '.join(PARAM_FIELDS)}), got {_type(decl)}", field=where)
            return None
        before = len(self.problems)
        for key in decl:
            if key not in PARAM_FIELDS:
                self.err(f"unknown key {_field(key)!r} (allowed: {', '.join(PARAM_FIELDS)})", field=where)
        kind = decl.get("type", "string")
        if kind not in PARAM_TYPES:
            self.err(f"type must be one of {', '.join(PARAM_TYPES)}, got {summary(kind)}", field=where)
            return None
        required = decl.get("required", False)
        if not isinstance(required, bool):
            self.err(f"required must be true or false, got {summary(required)}", field=where)
        description = decl.get("description", "")
        if not isinstance(description, str):
            self.err(f"description must be a string, got {summary(description)}", field=where)
            description = ""
        self.text(description, None, where)
        choices = decl.get("choices")
        bare = ParamSpec(name, kind)
        if choices is not None:
            if not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES:
                self.err(f"choices must be a list of 1 to {MAX_CHOICES} values", field=where)
                choices = None
            else:
                try:
                    choices = tuple(coerce(bare, c, tz) for c in choices)
                except ParamError as exc:
                    self.err(f"a choice {exc}", field=where)
                    choices = None
        default = decl.get("default")
        if default is not None:
            try:
                default = coerce(ParamSpec(name, kind, choices=choices), default, tz)
            except ParamError as exc:
                self.err(f"default {exc}", field=where)
            if required is True:
                self.err("a required parameter has no default (drop one of them)", field=where)
        if len(self.problems) > before:
            return None
        return ParamSpec(name, kind, default, bool(required), choices, description)

    def pass_env(self, raw: Any) -> tuple[str, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(_variable_name(n) for n in raw):
            self.err(f"must be a list of environment variable names, got {summary(raw)}", field="pass_env")
            return ()
        if len(raw) > MAX_PARAMS:
            self.err(f"lists more than {MAX_PARAMS} names", field="pass_env")
            return ()
        patterns = secret_patterns()
        for name in raw:
            if is_secret_name(name, patterns):
                self.err(
                    f"{name} looks like a secret: pass_env values are stored with the run; read it "
                    f"where the job runs instead: env: {{{name}: {{from_env: {name}}}}}",
                    field="pass_env",
                )
            elif name.startswith("EXECUTIONER_"):
                self.err(f"{name}: EXECUTIONER_* variables are set by Executioner itself", field="pass_env")
        return tuple(dict.fromkeys(raw))

    def notify(self, raw: Any) -> tuple[NotifyRule, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list) or len(raw) > 50:
            self.err(f"must be a list of at most 50 rules, got {summary(raw)}", field="notify")
            return ()
        rules = []
        for index, item in enumerate(raw):
            where = f"notify[{index}]"
            if not isinstance(item, dict):
                self.err(f"must be a mapping with on and urls or command, got {_type(item)}", field=where)
                continue
            for key in item:
                if key not in ("on", "urls", "command"):
                    self.err(f"unknown key {_field(key)!r} (allowed: on, urls, command)", field=where)
            on = item.get("on")
            if not isinstance(on, list) or not on or not all(isinstance(e, str) and e in EVENTS for e in on):
                self.err(f"on must be a list drawn from {', '.join(EVENTS)}, got {summary(on)}", field=where)
                continue
            urls = item.get("urls") or []
            if (
                not isinstance(urls, list)
                or len(urls) > 20
                or not all(isinstance(u, str) and u for u in urls)
            ):
                self.err(f"urls must be a list of at most 20 URLs, got {summary(urls)}", field=where)
                continue
            if not all(self.text(u, None, where) for u in urls):
                continue
            command = item.get("command")
            if command is not None and not (
                (isinstance(command, str) and command.strip())
                or (isinstance(command, list) and command and all(isinstance(a, str) for a in command))
            ):
                self.err(
                    f"command must be a string or a list of strings, got {summary(command)}", field=where
                )
                continue
            if not urls and command is None:
                self.err("needs urls or a command", field=where)
                continue
            rules.append(
                NotifyRule(
                    tuple(dict.fromkeys(on)),
                    tuple(urls),
                    tuple(command) if isinstance(command, list) else command,
                )
            )
        return tuple(rules)


def _type(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _variable_name(name: Any) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 256 and "=" not in name and bad_string(name) is None


def _field(key: Any) -> str:
    """An unknown key as a field name in a message: bounded, and printable whatever it holds."""
    text = key if isinstance(key, str) and bad_string(key) is None else summary(key)
    return text if len(text) <= 80 else text[:77] + "..."
