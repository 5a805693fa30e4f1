"""Settings from `.env` (every one documented there), overridden by the environment, as Compose does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmfleet import paths
from llmfleet.errors import FleetError

Port = Annotated[int, Field(ge=1, le=65535)]
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    GATEWAY_PORT: Port = 4000
    LITELLM_PORT: Port = 4001
    PROMETHEUS_PORT: Port = 9090
    GRAFANA_PORT: Port = 3000
    VLLM_PORT_BASE: Port = 8100
    REDIS_PORT: Port = 6379
    POSTGRES_PORT: Port = 5433  # not 5432: a host's own PostgreSQL keeps its port
    ROUTER_PORT: Port = 4002
    ROUTER_METRICS_PORT: Port = 4003
    # Which lane the master key's completions take behind the door: LiteLLM, or the router (SMG) straight to the
    # backends. User keys keep LiteLLM, which limits and meters them (gateway/auth.py).
    GATEWAY_DATA_PLANE: Literal["litellm", "router"] = "router"
    GATEWAY_WORKERS: Annotated[int, Field(ge=1, le=64)] | None = None  # None: as many as the plan's token rate needs
    GATEWAY_MAX_BODY_MB: Annotated[float, Field(gt=0)] = 4
    VLLM_START_TIMEOUT: Annotated[int, Field(ge=10)] = 900
    VLLM_CPU_KVCACHE_SPACE: Annotated[int, Field(ge=1)] = 1
    RUNNER: Literal["auto", "docker", "native"] = "auto"
    LLMFLEET_RUN_DIR: str = ".run"
    LLMFLEET_SECRETS_FILE: str = ".env.secrets"
    VLLM_PYTHON: str = ""
    PROMETHEUS_BIN: str = "prometheus"
    REDIS_BIN: str = "redis-server"
    NGINX_BIN: str = "nginx"
    POSTGRES_BIN_DIR: str = ""  # empty: pg_config's, else Debian's newest /usr/lib/postgresql/N/bin
    POSTGRES_DATA_DIR: str = ""  # empty: /var/lib/llmfleet/postgres for root, else ~/.local/share/llmfleet/postgres
    # Service-level objectives: rendered into monitoring/prometheus/rules/slo.rules.yaml (alerts, dashboards);
    # the load test checks against the same values.
    SLO_TTFT_P95_SECONDS: Annotated[float, Field(gt=0)] = 2.0
    SLO_ITL_P95_SECONDS: Annotated[float, Field(gt=0)] = 0.1
    SLO_ERROR_RATE: Annotated[float, Field(gt=0, lt=1)] = 0.01

    @field_validator("GATEWAY_WORKERS", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def path(self, value: str) -> Path:
        """A path setting, relative to the project root unless absolute."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else paths.project_root() / p

    @property
    def postgres_data_dir(self) -> Path:
        """The key database's files: outside the run dir, so no cleanup of runs can take the keys with it."""
        if self.POSTGRES_DATA_DIR:
            return self.path(self.POSTGRES_DATA_DIR)
        if os.geteuid() == 0:
            return Path("/var/lib/llmfleet/postgres")
        return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "llmfleet" / "postgres"

    @property
    def run_dir(self) -> Path:
        return self.path(self.LLMFLEET_RUN_DIR)

    @property
    def secrets_file(self) -> Path:
        return self.path(self.LLMFLEET_SECRETS_FILE)


def load_settings() -> Settings:
    return load_env_settings(Settings)


def load_env_settings(cls: type[SettingsT]) -> SettingsT:
    """A settings class read from the project's .env and the environment; a bad value names where it came from."""
    env_file = paths.project_root() / ".env"
    try:
        return cls(_env_file=env_file if env_file.is_file() else None)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0])
        source = f"environment variable {name}" if name in os.environ else f"{env_file.name}: {name}"
        raise FleetError(
            f"{name}={err.get('input')!r} is not valid: {err['msg']}.",
            f"set {name} to a valid value (see the comment above it in .env).",
            source,
        ) from None
