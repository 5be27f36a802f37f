"""Typed, validated settings: ``IZS_*`` environment variables, optionally a TOML file (``IZS_CONFIG``).

Validation happens once, at start, and every problem becomes one line for the operator
(:func:`load_settings` raises :class:`~intake.errors.ConfigError` with the list); nothing else in the code
reads the environment.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import string
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from intake.errors import ConfigError
from routing.vocabulary import EMERGENCY_NUMBERS

# The placeholder the deploy examples show for IZS_SECRET_KEY; any key containing one of these is refused.
SECRET_KEY_PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "your-secret")
SECRET_KEY_MIN_BITS = 256  # 32 bytes of entropy, as `openssl rand -base64 32` gives
SECRET_KEY_HELP = "generate one with: openssl rand -base64 32"


def estimated_entropy_bits(key: str) -> float:
    """Bits of entropy of ``key`` if each character were drawn at random from the character classes it
    uses (hex digits, lower case, upper case, digits, punctuation): an upper bound for a random key, far
    above the truth for a phrase, so it only stops short or obviously low-variety keys."""
    if not key:
        return 0.0
    if key.isdigit():
        pool = 10
    elif all(c in string.hexdigits for c in key) and (key.islower() or key.isupper()):
        pool = 16
    else:
        pool = 0
        for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation):
            if any(c in chars for c in key):
                pool += len(chars)
        pool += 128 if any(ord(c) > 127 for c in key) else 0
    if len(set(key)) < 10:
        return 0.0  # "aaaa...", "abab...": no random key of 32 bytes has so few distinct characters
    return len(key) * math.log2(pool)


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` may not sign tokens (one line), or None."""
    lowered = key.lower()
    if any(p in lowered for p in SECRET_KEY_PLACEHOLDERS):
        return f"the secret key is the documented placeholder: {SECRET_KEY_HELP}"
    if len(key.encode()) < 32 or estimated_entropy_bits(key) < SECRET_KEY_MIN_BITS:
        return f"the secret key is too weak (needs 32 bytes of entropy): {SECRET_KEY_HELP}"
    return None


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    secret_key: str | None = Field(
        None,
        description="Signs API tokens (>= 32 random bytes, `openssl rand -base64 32`); unset = generated "
        "into var/ (one node only)",
    )
    bootstrap_admin_password: str | None = Field(None, description="Creates user 'admin' at first start")
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain) for HTTPS/WSS of the API and consoles; unset = plain HTTP"
    )
    tls_keyfile: Path | None = Field(None, description="PEM private key of tls_certfile")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Largest request body of an authenticated request (bytes)"
    )
    max_anonymous_body_bytes: int = Field(
        16_384, ge=256, description="Largest request body of a request without a valid token (bytes)"
    )
    login_failures_per_user: int = Field(
        5, ge=1, description="Wrong passwords for one user name before logins to it are held back"
    )
    login_failures_per_address: int = Field(
        20, ge=1, description="Wrong passwords from one client address before its logins are held back"
    )
    login_backoff_s: float = Field(
        30.0, gt=0, description="First hold-back after too many failures; doubles per further failure"
    )
    login_backoff_max_s: float = Field(900.0, gt=0, description="Longest login hold-back")
    password_hash_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="Threads (= cores at most) that verify passwords; login floods wait here, not the API",
    )
    webhook_allow_private_targets: bool = Field(
        False,
        description="Allow webhooks to loopback, link-local and private addresses (admin decision)",
    )

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
    recognition: Literal["local", "redis"] = Field(
        "local",
        description="local: recognition inside this node; redis: recognition workers "
        "(python -m transcription.worker) fed over the centre's Redis Streams",
    )

    # --- routing
    overflow_after_s: float = Field(30.0, gt=0, description="Queue wait before overflow to the 112 desk")
    wrap_up_s: float = Field(20.0, ge=0, description="Call-taker wrap-up time after a call")
    duplicate_window_min: float = Field(60.0, gt=0, description="Window for proposing duplicate incidents")
    triage_data_dir: Path | None = Field(None, description="Protocol data files (default: shipped ones)")
    takers: list[TakerConfig] = Field(default_factory=list, description="Call takers known at start")

    # --- voice logging (call recording)
    recording_enabled: bool = Field(True, description="Record every call's caller and call-taker legs")
    recording_codec: Literal["flac", "opus"] = Field(
        "flac",
        description="Stored audio: flac (lossless, ~0.02 % of a core per leg) or opus (~2.5x smaller, ~1 %)",
    )
    recording_retention_days: int = Field(
        90, ge=1, le=3650, description="Days a call recording is kept before the nightly purge deletes it"
    )
    recording_purge_hour: int = Field(
        3, ge=0, le=23, description="Hour of the day (UTC) after which the leader runs the nightly purge"
    )

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

    @field_validator("secret_key")
    @classmethod
    def _secret_key_strong(cls, value: str | None) -> str | None:
        if value is not None:
            problem = secret_key_problem(value)
            if problem:
                raise ValueError(problem)
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
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together: set both or neither")
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

    @property
    def serves_tls(self) -> bool:
        return self.tls_certfile is not None and self.tls_keyfile is not None


def _format_error(err: Any) -> str:
    where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
    env = f"IZS_{where.split('.')[0].upper()}" if where != "settings" else "settings"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    value = err.get("input")
    secret = any(part in where for part in ("secret", "password"))
    shown = (
        f" (got {value!r})"
        if not secret and isinstance(value, str | int | float) and len(repr(value)) < 80
        else ""
    )
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
    for name, path in (
        ("IZS_TLS_CERTFILE", settings.tls_certfile),
        ("IZS_TLS_KEYFILE", settings.tls_keyfile),
    ):
        if path is not None and not path.is_file():
            problems.append(f"{name}: no such file: {path}")
    if settings.serves_tls and not problems:
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(settings.tls_certfile), str(settings.tls_keyfile)
            )
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"IZS_TLS_CERTFILE: certificate and key do not load: {exc}")
    return problems


def security_warnings(settings: Settings) -> list[str]:
    """What works but exposes the centre on a shared network. One line each; `izs check` prints them."""
    warnings: list[str] = []
    if not settings.serves_tls and not is_loopback_host(settings.http_host):
        warnings.append(
            f"IZS_HTTP_HOST: {settings.http_host} is not a loopback address and serves plain HTTP: "
            "passwords and tokens cross the network in clear text (set IZS_TLS_CERTFILE and IZS_TLS_KEYFILE)"
        )
    if settings.redis_url is not None and not settings.redis_url.startswith("unix://"):
        from urllib.parse import urlsplit

        parts = urlsplit(settings.redis_url)
        if not parts.password:
            warnings.append("IZS_REDIS_URL: no password: anyone who reaches Redis can drive the centre")
        if parts.scheme == "redis" and not is_loopback_host(parts.hostname or ""):
            warnings.append("IZS_REDIS_URL: Redis on another machine without TLS: use rediss:// (docs/ha.md)")
    if settings.database_url and settings.database_url.startswith("postgresql"):
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url)
        host = url.host or ""
        remote = bool(host) and not host.startswith("/") and not is_loopback_host(host)
        if remote and url.query.get("sslmode") not in ("require", "verify-ca", "verify-full"):
            warnings.append(
                "IZS_DATABASE_URL: PostgreSQL on another machine without ?sslmode=verify-full "
                "(or require): call records cross the network in clear text"
            )
    return warnings
