"""Typed, validated settings: ``IZS_*`` environment variables, optionally a TOML file (``IZS_CONFIG``).

Validation happens once, at start, and every problem becomes one line for the operator
(:func:`load_settings` raises :class:`~intake.errors.ConfigError` with the list); nothing else in the code
reads the environment.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from intake.errors import ConfigError

EMERGENCY_NUMBERS = ("112", "150", "155", "158", "156")


class TakerConfig(BaseModel):
    """A call taker known at start (a site without a user directory lists them in the TOML file)."""

    id: str
    name: str
    desks: list[Literal["HZS", "ZZS", "PCR", "112"]]
    languages: list[str] = Field(default_factory=lambda: ["cs"])
    sip_uri: str | None = None  # standalone mode: the endpoint rings this phone
    interface: str | None = None  # PBX mode: Asterisk interface, e.g. SIP/taker1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IZS_", env_nested_delimiter="__", extra="forbid")

    # --- where things live
    var_dir: Path = Field(
        Path("var"), description="Working directory for the embedded database, Redis, caches"
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; unset = SQLite file var/izs.db (e.g. postgresql+psycopg://u:p@h/db)",
    )
    redis_url: str | None = Field(None, description="Redis URL; unset = the app starts its own redis-server")
    region: str = Field("KVK", description="Region code in readable incident ids (KVK-2026-000123)")
    node_id: str = Field(default_factory=socket.gethostname, description="This intake node's name")

    # --- API and consoles
    http_host: str = Field("127.0.0.1", description="Address the API and consoles listen on")
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the API and consoles")
    secret_key: str | None = Field(None, description="Signs API tokens; unset = generated into var/")
    bootstrap_admin_password: str | None = Field(None, description="Creates user 'admin' at first start")

    # --- SIP endpoint (standalone or behind Asterisk / Kamailio)
    sip_enabled: bool = Field(True, description="Run the SIP intake endpoint")
    sip_host: str = Field("0.0.0.0", description="Address the SIP endpoint binds")
    sip_port: int = Field(5060, ge=0, le=65535, description="UDP port of the SIP endpoint")
    sip_public_host: str | None = Field(None, description="Address put in SDP/Contact (default: sip_host)")
    rtp_port_min: int = Field(20000, ge=1024, le=65535, description="Lowest RTP port")
    rtp_port_max: int = Field(20999, ge=1024, le=65535, description="Highest RTP port")
    accepted_numbers: list[str] = Field(default_factory=lambda: list(EMERGENCY_NUMBERS))

    # --- Asterisk AMI bridge (PBX mode)
    ami_enabled: bool = Field(False, description="Follow an Asterisk PBX over AMI")
    ami_host: str = Field("127.0.0.1", description="Asterisk AMI host")
    ami_port: int = Field(5038, ge=1, le=65535, description="Asterisk AMI port")
    ami_username: str = Field("izs", description="AMI user")
    ami_secret: str = Field("", description="AMI secret")
    ami_channel_driver: Literal["sip", "pjsip"] = Field(
        "sip", description="Asterisk channel driver of the intake peer and phones: sip (chan_sip) or pjsip"
    )
    ami_fork_endpoint: str | None = Field(
        None, description="Asterisk endpoint of intake's SIP endpoint (default SIP/intake or PJSIP/intake)"
    )

    # --- transcription
    transcription_enabled: bool = Field(True, description="Transcribe calls live")
    model_dir: Path | None = Field(None, description="Where Vosk models are installed (default var/models)")
    engine_by_language: dict[str, str] = Field(
        default_factory=lambda: {"default": "whisper"}, description="Recognition engine per language"
    )
    transcription_workers: int = Field(2, ge=1, le=64, description="Decoding worker threads")

    # --- routing
    overflow_after_s: float = Field(30.0, gt=0, description="Queue wait before overflow to the 112 desk")
    wrap_up_s: float = Field(20.0, ge=0, description="Call-taker wrap-up time after a call")
    duplicate_window_min: float = Field(60.0, gt=0, description="Window for proposing duplicate incidents")
    triage_data_dir: Path | None = Field(None, description="Protocol data files (default: shipped ones)")
    takers: list[TakerConfig] = Field(default_factory=list, description="Call takers known at start")

    # --- logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    log_json: bool = Field(True, description="Structured JSON logs")

    @field_validator("database_url")
    @classmethod
    def _database_url_is_sqlalchemy_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {url.get_backend_name()!r} (use sqlite or postgresql)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"not a Redis URL: {value!r} (redis://host:port/db)")
        return value

    @field_validator("accepted_numbers")
    @classmethod
    def _only_emergency_numbers(cls, value: list[str]) -> list[str]:
        unknown = [n for n in value if n not in EMERGENCY_NUMBERS]
        if unknown:
            raise ValueError(f"not an emergency number: {', '.join(unknown)}")
        return value

    @field_validator("region")
    @classmethod
    def _region_code(cls, value: str) -> str:
        if not value.isalpha() or not value.isupper() or not 2 <= len(value) <= 5:
            raise ValueError("region must be 2-5 capital letters, e.g. KVK")
        return value

    @model_validator(mode="after")
    def _rtp_range(self) -> Settings:
        if self.rtp_port_min >= self.rtp_port_max:
            raise ValueError("rtp_port_min must be below rtp_port_max")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    # --- derived
    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'izs.db').resolve()}"

    @property
    def effective_model_dir(self) -> Path:
        return self.model_dir or self.var_dir / "models"

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None


def _format_error(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
    env = f"IZS_{where.split('.')[0].upper()}" if where != "settings" else "settings"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    value = err.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) and len(repr(value)) < 80 else ""
    return f"{env}: {msg}{shown}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file (``IZS_CONFIG`` or ``config_file``), the environment and overrides.

    Environment variables beat the file; explicit overrides beat both.
    """
    path = config_file or (Path(os.environ["IZS_CONFIG"]) if os.environ.get("IZS_CONFIG") else None)
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError([f"IZS_CONFIG: file not found: {path}"]) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"IZS_CONFIG: {path} is not valid TOML: {exc}"]) from exc
    env_keys = {k[4:].lower().split("__")[0] for k in os.environ if k.startswith("IZS_")}
    merged = {k: v for k, v in file_values.items() if k not in env_keys} | overrides
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError([_format_error(e) for e in exc.errors()]) from exc


def check_runtime(settings: Settings) -> list[str]:
    """Checks that need the machine: ports free, directories writable, models present. One line each."""
    problems: list[str] = []
    for name, host, port, kind in (
        ("IZS_HTTP_PORT", settings.http_host, settings.http_port, socket.SOCK_STREAM),
        ("IZS_SIP_PORT", settings.sip_host, settings.sip_port, socket.SOCK_DGRAM),
    ):
        if name == "IZS_SIP_PORT" and not settings.sip_enabled:
            continue
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                problems.append(f"{name}: cannot listen on {host}:{port}: {exc.strerror or exc}")
    try:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.var_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        problems.append(f"IZS_VAR_DIR: {settings.var_dir} is not writable: {exc.strerror or exc}")
    if settings.model_dir is not None and not settings.model_dir.is_dir():
        problems.append(f"IZS_MODEL_DIR: no such directory: {settings.model_dir}")
    if settings.triage_data_dir is not None and not settings.triage_data_dir.is_dir():
        problems.append(f"IZS_TRIAGE_DATA_DIR: no such directory: {settings.triage_data_dir}")
    return problems
