"""``load_config``: read one TOML file, apply environment overrides, validate, resolve paths.

Every failure is a :class:`~cookiematch.errors.ConfigError` naming the file and the key
(``exchange.buyers[0].redirect_url``), and the environment variable when one set the value.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect

from cookiematch.config.convert import convert, describe, union_members
from cookiematch.config.schema import SECTIONS_WITHOUT_ROLE, Config
from cookiematch.errors import ConfigError

ENV_PREFIX = "COOKIEMATCH_"


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """The validated configuration of the file at ``path``.

    ``environ`` (default ``os.environ``) supplies ``COOKIEMATCH_<SECTION>__<KEY>`` overrides.
    """
    file = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8", file=file) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    sources = apply_env(doc, os.environ if environ is None else environ, file)
    try:
        config = convert(doc, Config)
    except msgspec.ValidationError as exc:
        key, message = describe(exc, Config)
        raise ConfigError(message + _source(key, sources), file=file, key=key or None) from None
    problems = config.problems()
    if problems:
        key, message = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ConfigError(message + _source(key, sources) + more, file=file, key=key)
    return _resolve_paths(config, Path(path).resolve().parent)


def apply_env(doc: dict[str, Any], environ: Mapping[str, str], file: str) -> dict[str, str]:
    """Set ``doc[section][key]`` from each ``COOKIEMATCH_<SECTION>__<KEY>`` variable.

    Returns ``{"section.key": variable name}`` so that errors can name the variable.
    A value is parsed as a TOML value when it parses (``true``, ``42``, ``["10.0.0.0/8"]``),
    else taken as a string; keys whose type is a string always get a string.
    """
    sources: dict[str, str] = {}
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        section, sep, key = var[len(ENV_PREFIX) :].lower().partition("__")
        if not sep:
            continue  # not an override (e.g. COOKIEMATCH_CONFIG)
        where = f"{section}.{key}"
        if not section or not key or "__" in key:
            raise ConfigError(f"{var}: expected COOKIEMATCH_<SECTION>__<KEY>", file=file)
        struct = _sections().get(section)
        if struct is None:
            raise ConfigError(f"unknown section (set by {var})", file=file, key=section)
        table = doc.get(section)
        if table is None:
            if section not in SECTIONS_WITHOUT_ROLE:
                raise ConfigError(
                    f"{var} is set but the file has no [{section}] table; "
                    "roles are enabled in the file only",
                    file=file,
                    key=where,
                )
            table = doc[section] = {}
        if isinstance(table, dict):  # otherwise validation reports the section's type
            table[key] = _env_value(environ[var], _field_type(struct, key))
            sources[where] = var
    return sources


@functools.cache
def _sections() -> dict[str, inspect.StructType]:
    """Top-level table name -> its Struct's type info."""
    info = inspect.type_info(Config)
    assert isinstance(info, inspect.StructType)
    return {
        field.encode_name: member
        for field in info.fields
        for member in union_members(field.type)
        if isinstance(member, inspect.StructType)
    }


def _field_type(struct: inspect.StructType, key: str) -> inspect.Type | None:
    return next((f.type for f in struct.fields if f.encode_name == key), None)


def _is_text(tp: inspect.Type | None) -> bool:
    """Whether the key's value is written as a string (str, secret, URL, enum...)."""
    if tp is None:
        return False
    for member in union_members(tp):
        if isinstance(member, inspect.StrType | inspect.CustomType | inspect.EnumType):
            return True
        if isinstance(member, inspect.LiteralType) and all(
            isinstance(v, str) for v in member.values
        ):
            return True
    return False


def _env_value(raw: str, tp: inspect.Type | None) -> object:
    value: object = raw
    if "\n" not in raw and "\r" not in raw:
        try:
            value = tomllib.loads(f"v = {raw}").get("v", raw)
        except tomllib.TOMLDecodeError:
            value = raw
    if _is_text(tp) and not isinstance(value, str):
        return raw  # e.g. an all-digit token stays a string
    return value


def _source(key: str, sources: Mapping[str, str]) -> str:
    for where, var in sources.items():
        if key == where or key.startswith((where + ".", where + "[")):
            return f" (set by environment variable {var})"
    return ""


def _resolve_paths(config: Config, base: Path) -> Config:
    """Make a relative ``sqlite://`` store path, and the DMP analytics engine's paths, relative
    to the configuration's directory."""
    if config.dmp is not None:
        analytics = config.dmp.analytics
        resolved = msgspec.structs.replace(
            analytics,
            path=_relative_to(base, analytics.path),
            temp_directory=None
            if analytics.temp_directory is None
            else _relative_to(base, analytics.temp_directory),
        )
        dmp = msgspec.structs.replace(config.dmp, analytics=resolved)
        config = msgspec.structs.replace(config, dmp=dmp)
    url = config.store.url
    scheme, _, location = url.partition("://")
    if scheme != "sqlite" or location.startswith("/") or location.startswith(":memory:"):
        return config
    store = msgspec.structs.replace(config.store, url=f"sqlite://{base / location}")
    return msgspec.structs.replace(config, store=store)


def _relative_to(base: Path, path: str) -> str:
    return path if path == ":memory:" or Path(path).is_absolute() else str(base / path)
