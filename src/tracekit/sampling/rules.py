"""The sampling rule model and the rule files (YAML or JSON) that hold it.

A tracekit rule file is a superset of X-Ray's centralized rule model: the API's own field names,
plus ``Description`` and ``Tags`` (a mapping), with readable defaults (every matcher ``*``,
``ResourceARN: *``, ``Version: 1``). X-Ray SDK local-rules files (version 1 and 2) are recognised
and converted (see :func:`convert_sdk_local`). Errors name ``file:line: field: problem``.
PyYAML is imported only when a YAML file is read or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tracekit._shared import specfile
from tracekit._shared.settings import ConfigError
from tracekit._shared.specfile import KeyPath, Problem, at
from tracekit.sampling import validate
from tracekit.sampling.validate import DEFAULT_PRIORITY, DEFAULT_RULE_NAME

MANAGED_TAG = ("managed-by", "tracekit")
"""Rules carrying this tag were created by tracekit; only they are ever deleted by ``apply``."""
FILE_SUFFIXES = (".yaml", ".yml", ".json")
RULE_KEYS = (*validate.RULE_FIELDS, "Description", "Tags")
TAIL_KEYS = ("Name", "Description", "StatusCodes", "ReservoirSize", "FixedRate")


@dataclass(frozen=True)
class Boost:
    """X-Ray adaptive sampling: a temporary rate of up to ``max_rate`` when anomalies appear."""

    max_rate: float
    cooldown_minutes: int


@dataclass(frozen=True)
class Rule:
    """One centralized sampling rule; ``description`` and ``location`` never reach X-Ray."""

    name: str
    priority: int
    fixed_rate: float
    reservoir_size: int
    service_name: str = "*"
    service_type: str = "*"
    host: str = "*"
    http_method: str = "*"
    url_path: str = "*"
    resource_arn: str = "*"
    version: int = 1
    attributes: Mapping[str, str] = field(default_factory=dict)
    boost: Boost | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = field(default="", compare=False)
    location: str = field(default="", compare=False)
    arn: str = field(default="", compare=False)
    """The RuleARN of a live rule (empty for rules read from files)."""

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_RULE_NAME

    @property
    def usable(self) -> bool:
        """Whether X-Ray clients apply it at all: only rule format 1 on any resource (``*``)."""
        return self.resource_arn == "*" and self.version == 1

    @property
    def sort_key(self) -> tuple[int, int, str]:
        """X-Ray's evaluation order: Priority, then RuleName; Default always last."""
        return (1 if self.is_default else 0, self.priority, self.name)

    def to_api(self) -> dict[str, Any]:
        """The ``SamplingRule`` structure of the X-Ray API."""
        api: dict[str, Any] = {
            "RuleName": self.name,
            "ResourceARN": self.resource_arn,
            "Priority": self.priority,
            "FixedRate": self.fixed_rate,
            "ReservoirSize": self.reservoir_size,
            "ServiceName": self.service_name,
            "ServiceType": self.service_type,
            "Host": self.host,
            "HTTPMethod": self.http_method,
            "URLPath": self.url_path,
            "Version": self.version,
            "Attributes": dict(self.attributes),
        }
        if self.boost is not None:
            api["SamplingRateBoost"] = {
                "MaxRate": self.boost.max_rate,
                "CooldownWindowMinutes": self.boost.cooldown_minutes,
            }
        return api

    @classmethod
    def from_api(
        cls,
        api: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        description: str = "",
        location: str = "",
    ) -> Rule:
        """Build from an API-shaped (already validated) mapping; absent matchers mean ``*``."""
        boost = api.get("SamplingRateBoost")
        name = str(api["RuleName"])
        return cls(
            name=name,
            priority=int(api.get("Priority", DEFAULT_PRIORITY)),
            fixed_rate=float(api["FixedRate"]),
            reservoir_size=int(api["ReservoirSize"]),
            service_name=str(api.get("ServiceName", "*")),
            service_type=str(api.get("ServiceType", "*")),
            host=str(api.get("Host", "*")),
            http_method=str(api.get("HTTPMethod", "*")),
            url_path=str(api.get("URLPath", "*")),
            resource_arn=str(api.get("ResourceARN", "*")),
            version=int(api.get("Version", 1)),
            attributes=dict(api.get("Attributes") or {}),
            boost=Boost(float(boost["MaxRate"]), int(boost["CooldownWindowMinutes"])) if boost else None,
            tags=dict(tags or {}),
            description=description,
            location=location,
            arn=str(api.get("RuleARN", "")),
        )

    def to_file(self) -> dict[str, Any]:
        """The readable file form: fields left at their default are omitted."""
        api = self.to_api()
        out: dict[str, Any] = {"RuleName": self.name}
        if self.description:
            out["Description"] = self.description
        for key, value in api.items():
            if key == "RuleName" or value in ("*", {}) or (key == "Version" and value == 1):
                continue
            if key == "Priority" and self.is_default:
                continue
            out[key] = value
        if self.tags:
            out["Tags"] = dict(sorted(self.tags.items()))
        return out


DEFAULT_RULE = Rule(DEFAULT_RULE_NAME, DEFAULT_PRIORITY, 0.05, 1, description="1 per second + 5%")
"""The built-in default of every X-Ray SDK and of a new account."""


@dataclass(frozen=True)
class TailPolicy:
    """A keep-decision taken after the trace ends (by the sidecar): head rules cannot see status."""

    name: str
    status_low: int
    status_high: int
    reservoir_size: int
    fixed_rate: float
    description: str = ""

    def applies(self, status: int) -> bool:
        return self.status_low <= status <= self.status_high


@dataclass(frozen=True)
class RuleSet:
    """Rules in evaluation order plus the sidecar's tail policies."""

    rules: tuple[Rule, ...] = ()
    tail: tuple[TailPolicy, ...] = ()

    def ordered(self) -> list[Rule]:
        """Rules in X-Ray's order, with the built-in Default added when the files have none."""
        rules = list(self.rules)
        if not any(r.is_default for r in rules):
            rules.append(DEFAULT_RULE)
        return sorted(rules, key=lambda r: r.sort_key)


class RuleFileError(ConfigError):
    """Rule files with problems; ``problems`` lists every one of them, one ``file:line`` line each.

    A ``ConfigError`` like every bad setting (``name``/``value``/``accepted`` describe the first
    problem), so one ``except tracekit.ConfigError`` covers bad rule files too.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        first = problems[0] if problems else Problem("", 0, "", "no problem listed")
        super().__init__(f"{first.file}:{first.line}: {first.field}", first.problem, first.accepted)
        self.args = ("\n".join(str(p) for p in problems),)
        self.problems = list(problems)


def check(
    paths: Iterable[str | Path], sdk_only: bool = False, require_files: bool = False
) -> tuple[RuleSet, list[Problem]]:
    """Read and validate every file; return what could be read and every problem found.

    ``sdk_only``: every file must be an X-Ray SDK local-rules document (``import`` converts only
    those; a tracekit file passing silently would hide a wrong argument). ``require_files``: a
    directory without rule files is a problem (``plan``/``apply`` against a wrong directory would
    otherwise delete every managed rule).
    """
    rules: list[Rule] = []
    tail: list[TailPolicy] = []
    problems: list[Problem] = []
    for item in map(Path, paths):
        files = specfile.files_in(item, FILE_SUFFIXES)
        if require_files and not files:
            problems.append(Problem(str(item), 1, "(directory)", "holds no rule files",
                                    "a directory with .yaml, .yml or .json rule files"))
        for path in files:
            file_rules, file_tail, file_problems = _read_file(path, sdk_only)
            rules += file_rules
            tail += file_tail
            problems += file_problems
    for rule, (fld, problem, accepted) in validate.check_unique(rules):
        file, _, line = rule.location.rpartition(":")
        problems.append(Problem(file, int(line or 0), fld, problem, accepted))
    return RuleSet(tuple(rules), tuple(tail)), problems


def load(paths: Iterable[str | Path]) -> RuleSet:
    """Read rule files; raise :class:`RuleFileError` listing every problem."""
    ruleset, problems = check(paths)
    if problems:
        raise RuleFileError(problems)
    return ruleset


def _read_file(path: Path, sdk_only: bool) -> tuple[list[Rule], list[TailPolicy], list[Problem]]:
    file = str(path)
    try:
        doc, lines, problems = specfile.read(path)
    except specfile.SyntaxProblem as exc:
        return [], [], [exc.problem]
    if _is_sdk_local(doc):
        doc, lines, more = convert_sdk_local(doc, lines, file)
        problems += more
    elif sdk_only:
        return [], [], [*problems, Problem(file, 1, "version", "not an X-Ray SDK local-rules file",
                                           "a JSON object with 'version' (1 or 2) and 'default'")]
    if not isinstance(doc, dict):
        return [], [], [*problems, Problem(file, 1, "(document)", "is not a mapping",
                                           "a mapping with 'rules' and optional 'tail'")]
    problems += [at(file, lines, (k,), k, "unknown top-level key", "rules, tail")
                 for k in doc if k not in ("rules", "tail")]
    rules = _parse_list(doc, "rules", lines, file, problems, _parse_rule)
    tail = _parse_list(doc, "tail", lines, file, problems, _parse_tail)
    return rules, tail, problems


_T = TypeVar("_T")
_ItemParser = Callable[[Any, KeyPath, Mapping[KeyPath, int], str, list[Problem]], _T | None]


def _parse_list(doc: Mapping[str, Any], key: str, lines: Mapping[KeyPath, int], file: str,
                problems: list[Problem], parse: _ItemParser[_T]) -> list[_T]:
    items = doc.get(key) or []
    if not isinstance(items, list):
        problems.append(at(file, lines, (key,), key, "must be a list", "a list of mappings"))
        return []
    parsed = [parse(item, (key, i), lines, file, problems) for i, item in enumerate(items)]
    return [p for p in parsed if p is not None]


def _parse_rule(raw: Any, path: KeyPath, lines: Mapping[KeyPath, int], file: str,
                problems: list[Problem]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(at(file, lines, path, "rules", "item is not a mapping", "a rule mapping"))
        return None
    is_default = raw.get("RuleName") == DEFAULT_RULE_NAME
    api = {k: v for k, v in raw.items() if k not in ("Description", "Tags")}
    api.setdefault("Version", 1)
    api.setdefault("ResourceARN", "*")
    for name in validate.MATCHER_FIELDS:
        api.setdefault(name, "*")
    if is_default:
        api.setdefault("Priority", DEFAULT_PRIORITY)
    issues = validate.check_rule(api)
    if is_default:
        issues += validate.check_default(api)
    tags = raw.get("Tags", {})
    if isinstance(tags, Mapping):
        issues += validate.check_tags([{"Key": k, "Value": v} for k, v in tags.items()])
    else:
        issues.append(("Tags", "must be a mapping", "a mapping of tag keys to values"))
    description = raw.get("Description", "")
    if not isinstance(description, str):
        issues.append(("Description", "must be a string", "text"))
    for fld, problem, accepted in issues:
        accepted = ", ".join(RULE_KEYS) if problem == "unknown field" else accepted
        problems.append(at(file, lines, (*path, *fld.split(".")), fld, problem, accepted))
    if issues:
        return None
    line = lines.get(path, 1)
    return Rule.from_api(api, tags, description, f"{file}:{line}")


def _parse_tail(raw: Any, path: KeyPath, lines: Mapping[KeyPath, int], file: str,
                problems: list[Problem]) -> TailPolicy | None:
    accepted_status = "'LOW-HIGH' with 100 <= LOW <= HIGH <= 599, e.g. '500-599'"
    issues: list[tuple[str, str, str]] = []
    if not isinstance(raw, dict):
        issues.append(("tail", "item is not a mapping", "a mapping with " + ", ".join(TAIL_KEYS)))
        raw = {}
    issues += [(k, "unknown field", ", ".join(TAIL_KEYS)) for k in raw if k not in TAIL_KEYS]
    name = raw.get("Name")
    if not isinstance(name, str) or not name:
        issues.append(("Name", "is required", "a non-empty string"))
    match = re.fullmatch(r"\s*(\d{3})\s*-\s*(\d{3})\s*", str(raw.get("StatusCodes", "")))
    low, high = (int(match[1]), int(match[2])) if match else (0, 0)
    if not 100 <= low <= high <= 599:
        issues.append(("StatusCodes", f"{raw.get('StatusCodes')!r} is not a range", accepted_status))
    issues += validate.check_rule({k: raw[k] for k in ("ReservoirSize", "FixedRate") if k in raw},
                                  partial=True)
    for fld, problem, accepted in issues:
        problems.append(at(file, lines, (*path, fld), fld, problem, accepted))
    if issues:
        return None
    return TailPolicy(str(name), low, high, int(raw.get("ReservoirSize", 0)),
                      float(raw.get("FixedRate", 1.0)), str(raw.get("Description", "")))


def _is_sdk_local(doc: Any) -> bool:
    return isinstance(doc, dict) and "default" in doc and "version" in doc


SDK_FIELD_MAP = {
    "fixed_target": "ReservoirSize",
    "rate": "FixedRate",
    "http_method": "HTTPMethod",
    "url_path": "URLPath",
    "description": "Description",
}
"""X-Ray SDK local-rule keys -> tracekit keys; ``host`` (v2) / ``service_name`` (v1) -> ``Host``."""


def convert_sdk_local(
    doc: Mapping[str, Any], lines: Mapping[KeyPath, int], file: str
) -> tuple[dict[str, Any], dict[KeyPath, int], list[Problem]]:
    """Convert an X-Ray SDK local-rules document (version 1 or 2) to the tracekit form.

    ``default`` becomes ``Default``; rule *i* (file order) gets Priority ``10 * (i + 1)`` so file
    order is kept, RuleName from its description (made unique, at most 32 characters) or
    ``local-<i+1>``, ``fixed_target`` -> ReservoirSize, ``rate`` -> FixedRate, ``host`` (v2) or
    ``service_name`` (v1, which the SDK matches against the *host*) -> Host. ServiceName stays ``*``.
    Note the semantic shift: ``fixed_target`` is per SDK process per second, ReservoirSize is per
    account per second, shared by all clients.
    """
    problems: list[Problem] = []
    version = doc.get("version")
    if version not in (1, 2):
        problems.append(at(file, lines, ("version",), "version", f"{version!r} is not supported",
                            "1 or 2 (X-Ray SDK local rules)"))
    keys = {**SDK_FIELD_MAP, ("service_name" if version == 1 else "host"): "Host"}
    out_lines: dict[KeyPath, int] = {(): lines.get((), 1), ("rules",): lines.get(("rules",), 1)}
    converted: list[dict[str, Any]] = []
    used: set[str] = set()
    for index, (src, raw) in enumerate(_sdk_sources(doc)):
        rule = _convert_sdk_rule(raw, src, index, keys, used, (file, lines, problems))
        if rule is None:
            continue
        path: KeyPath = ("rules", len(converted))
        out_lines[path] = lines.get(src, 1)
        out_lines.update({(*path, api_key): lines[(*src, key)] for key, api_key in keys.items()
                          if (*src, key) in lines})
        converted.append(rule)
    return {"rules": converted}, out_lines, problems


def _sdk_sources(doc: Mapping[str, Any]) -> list[tuple[KeyPath, Any]]:
    """(where, raw rule) for ``default`` then each of ``rules`` in file order."""
    items = doc.get("rules") or []
    listed = enumerate(items if isinstance(items, list) else [])
    return [(("default",), doc.get("default")), *((("rules", i), raw) for i, raw in listed)]


def _convert_sdk_rule(raw: Any, src: KeyPath, index: int, keys: Mapping[str, str], used: set[str],
                      where: tuple[str, Mapping[KeyPath, int], list[Problem]]) -> dict[str, Any] | None:
    """One SDK rule (``index`` 0 is ``default``) in API form; problems go to ``where``."""
    file, lines, problems = where
    if not isinstance(raw, dict):
        problems.append(at(file, lines, src, str(src[0]), "is not a mapping", "a rule mapping"))
        return None
    problems += [at(file, lines, (*src, k), k, "unknown key", ", ".join(keys))
                 for k in raw if k not in keys]
    rule = {keys[k]: v for k, v in raw.items() if k in keys}
    is_default = index == 0
    for key in ("Host", "HTTPMethod", "URLPath"):
        if is_default and key in rule:
            problems.append(at(file, lines, src, key, "set on the default rule", "no matchers"))
        elif not is_default and key not in rule:
            problems.append(at(file, lines, src, key, "is required", "a glob pattern"))
    if is_default:
        rule["RuleName"] = DEFAULT_RULE_NAME
    else:
        rule["RuleName"], rule["Priority"] = _unique_name(raw, index, used), 10 * index
    return rule


def _unique_name(raw: Mapping[str, Any], index: int, used: set[str]) -> str:
    base = re.sub(r"\s+", " ", str(raw.get("description") or "")).strip()[:32] or f"local-{index}"
    name, n = base, 2
    while name in used or name == DEFAULT_RULE_NAME:
        suffix = f"-{n}"
        name, n = base[: 32 - len(suffix)] + suffix, n + 1
    used.add(name)
    return name


def dump(ruleset: RuleSet, json_format: bool = False) -> str:
    """Render rules (and tail policies) as a tracekit rule file that :func:`load` reads back."""
    doc: dict[str, Any] = {"rules": [r.to_file() for r in ruleset.ordered()]}
    if ruleset.tail:
        doc["tail"] = [_tail_to_file(t) for t in ruleset.tail]
    if json_format:
        return json.dumps(doc, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _tail_to_file(policy: TailPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": policy.name}
    if policy.description:
        out["Description"] = policy.description
    out.update(StatusCodes=f"{policy.status_low}-{policy.status_high}",
               ReservoirSize=policy.reservoir_size, FixedRate=policy.fixed_rate)
    return out
