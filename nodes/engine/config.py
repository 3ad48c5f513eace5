"""Keys and endpoints come from the environment or a config file outside any workflow. Never from a widget."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

try:
    import tomllib  # novermin (3.11+; the fallback below covers 3.10)
except ModuleNotFoundError:      # Python 3.10: the same parser as the `tomli` package, a dependency there
    import tomli as tomllib

CONFIG_ENV = "HAPPYHORSE_CONFIG"


class Secret:
    """Holds an API key; its repr and str never show the value, so it cannot leak into logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def config_paths(extra: list[Path] | None = None) -> list[Path]:
    """Where the config file is looked for, first match wins."""
    paths: list[Path] = []
    if os.environ.get(CONFIG_ENV):
        paths.append(Path(os.environ[CONFIG_ENV]).expanduser())
    paths.extend(extra or [])
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths.append(Path(xdg) / "happyhorse" / "config.toml")
    return paths


@dataclass
class Settings:
    """Merged settings: environment variables win over the config file."""

    file_data: dict
    file_path: Path | None

    @classmethod
    def load(cls, extra_paths: list[Path] | None = None) -> "Settings":
        named = os.environ.get(CONFIG_ENV)
        if named and not Path(named).expanduser().is_file():
            what = "is a folder" if Path(named).expanduser().is_dir() else "does not exist"
            raise ConfigError(f"{CONFIG_ENV}={named}: that config file {what}. Point {CONFIG_ENV} at your "
                              f"config.toml, or unset it to use {config_paths()[-1]}.")
        for path in config_paths(extra_paths):
            if path.is_file():
                try:
                    with open(path, "rb") as fh:
                        return cls(tomllib.load(fh), path)
                except tomllib.TOMLDecodeError as exc:
                    raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
        return cls({}, None)

    def api_key(self, provider: str, env_name: str) -> Secret:
        value = os.environ.get(env_name) or str(self.file_data.get("keys", {}).get(provider, "") or "")
        if not value.strip():
            where = f" or set [keys] {provider} = \"...\" in {self.file_path or config_paths()[-1]}"
            raise ConfigError(f"No API key for {provider}: set the environment variable {env_name}{where}. "
                              f"Keys never go into a node widget or a workflow file.")
        return Secret(value.strip())

    def base_url(self, provider: str, default: str) -> str:
        env = f"HAPPYHORSE_{provider.upper()}_BASE_URL"
        value = os.environ.get(env) or self.file_data.get("base_urls", {}).get(provider) or default
        value = str(value).rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"Base URL for {provider} ({env}) must start with http:// or https://, got {value!r}")
        return value

    def provider_option(self, provider: str, option: str) -> tuple[str | None, str]:
        """A provider's own setting: HAPPYHORSE_{PROVIDER}_{OPTION} or `option` under [provider] in the config file.
        Returns (value or None, where it came from, for error messages)."""
        env = f"HAPPYHORSE_{provider.upper()}_{option.upper()}"
        if os.environ.get(env, "").strip():
            return os.environ[env].strip(), env
        value = self.file_data.get(provider, {}).get(option)
        if value is not None and str(value).strip():
            return str(value).strip(), f"[{provider}] {option} in {self.file_path}"
        return None, ""

    def has_base_url(self, provider: str) -> bool:
        return bool(os.environ.get(f"HAPPYHORSE_{provider.upper()}_BASE_URL")
                    or self.file_data.get("base_urls", {}).get(provider))

    def section(self, name: str) -> dict:
        return dict(self.file_data.get(name, {}))
