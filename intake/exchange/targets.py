"""Where webhooks may be sent: not into the centre's own network unless an admin allows it.

A webhook URL is chosen by whoever holds an admin token; without this rule it could make the intake node
send requests to ``http://169.254.169.254/`` (cloud metadata), ``http://localhost:6379/`` (the centre's own
Redis) or any machine on the operations LAN. Loopback, link-local, private (RFC 1918, unique-local IPv6),
shared (CGNAT), multicast, reserved and unspecified addresses are refused unless
``settings.webhook_allow_private_targets`` is set. The rule is checked when a webhook is registered
(:func:`check_webhook_url`) and again before every delivery after resolving the host name
(:func:`resolve_webhook_target`), so a name that later resolves to an internal address is refused too.
The delivery then connects to the address that was checked (:func:`pinned_target`), never resolving the
name a second time: a name that changes its answer between the check and the connection (DNS rebinding)
cannot steer the request inside. Redirects are never followed by the delivery client.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from intake.errors import PermissionDenied

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(PermissionDenied):
    """The webhook URL is not allowed (scheme, internal address, unresolvable host): a policy refusal
    (403), since the request itself is well-formed."""

    error_id = "webhook_target_refused"


def address_is_internal(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        not address.is_global
        or address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_unspecified
    )


def _parts(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}", url=url) from exc
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("webhook URLs must be http:// or https://", url=url)
    if not parts.hostname:
        raise TargetRefused("webhook URL without a host", url=url)
    if parts.username or parts.password:
        raise TargetRefused("webhook URL must not carry credentials (use the signing secret)", url=url)
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _refuse_internal(url: str, host: str, addresses: list[IpAddress]) -> None:
    internal = sorted({str(a) for a in addresses if address_is_internal(a)})
    if internal:
        raise TargetRefused(
            f"webhook target {host} is an internal address ({', '.join(internal)}): refused unless "
            "IZS_WEBHOOK_ALLOW_PRIVATE_TARGETS=true",
            url=url,
            addresses=internal,
        )


def _literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_webhook_target(url: str, allow_private: bool) -> list[IpAddress]:
    """The addresses ``url``'s host resolves to, all of them allowed; :class:`TargetRefused` otherwise."""
    host, port = _parts(url)
    literal = _literal(host)
    if literal is not None:
        addresses: list[IpAddress] = [literal]
    else:
        if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                raise TargetRefused(f"webhook host {host} does not resolve: {exc}", url=url) from exc
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not allow_private:
        _refuse_internal(url, host, addresses)
    return addresses


async def check_webhook_url(url: str, allow_private: bool) -> None:
    """At registration: the URL's form, and its host resolved now (:class:`TargetRefused`)."""
    await resolve_webhook_target(url, allow_private)


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    """A request to ``url``'s host sent to one checked address: the URL with the address in place of the
    name, the ``Host`` header the server expects, and for https the name TLS must present and verify
    (httpcore's ``sni_hostname`` extension: the certificate is checked against the name, not the address)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


def pinned_target(url: str, address: IpAddress) -> PinnedTarget:
    host, _port = _parts(url)
    if _literal(host) is not None:
        return PinnedTarget(url)
    parts = urlsplit(url)
    literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return PinnedTarget(
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
        {"Host": host_header},
        extensions,
    )
