"""Outbound requests to URLs that outsiders choose (partner webhooks): which URLs and addresses are allowed.

A URL is checked twice. When it is registered (:meth:`EgressPolicy.check_url`, then
:meth:`EgressPolicy.check_resolves`): https only, no user-info, a host name or a canonical public IP
literal, never one of the platform's own services. When a request is sent (:class:`PinnedTransport`):
the name is resolved again, every address it resolves to must be public, and the connection goes to
the address that was checked (no second lookup a rebinding name server could answer differently).
Redirects are never followed by the sender.

``allow_private`` (``ALEX_WEBHOOK_ALLOW_PRIVATE_URLS``, development only, refused in production) lets
http and loopback/private addresses through so local receivers can be used; the platform's own
services stay refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host name -> the addresses it resolves to (tests give their own)
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_SECONDS = 5.0
# Networks never reached even when ``is_global`` says otherwise (embedded IPv4 forms are checked separately).
_ALWAYS_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "255.255.255.255/32", "::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    "100::/64", "2001:db8::/32",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedUrl(ValueError):
    """A URL or address the policy refuses; ``reason`` is a stable word, ``message`` says why in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BlockedAddress(httpcore.ConnectError):
    """Raised while connecting: the host resolved to an address the policy refuses."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, multicast, unique-local, reserved."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        if address.scope_id:
            return False
    if any(address in network for network in _ALWAYS_BLOCKED if network.version == address.version):
        return False
    return bool(address.is_global) and not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified)


def literal_address(host: str) -> IPAddress | None:
    """The IP address a host name stands for without any lookup, or None for a real name.

    Raises :class:`RefusedUrl` for the numeric forms a resolver also accepts ("127.1", "2130706433",
    "0x7f.0.0.1", "0177.0.0.1"): only canonical dotted-decimal IPv4 is taken as an address.
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        packed = socket.inet_aton(text)
    except OSError:
        return None
    raise RefusedUrl("numeric_host", f"Write the webhook URL's address as four decimal numbers "
                                     f"({ipaddress.IPv4Address(packed)}), or use a host name.")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (A and AAAA)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                   RESOLVE_TIMEOUT_SECONDS)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _host_port(url: str, default_port: int) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


@dataclass(frozen=True)
class EgressPolicy:
    """What outbound URLs may point at. ``own`` holds the platform's (host, port) pairs; port 0 means any."""

    allow_private: bool = False
    own: frozenset[tuple[str, int]] = frozenset()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def for_webhooks(cls, settings: typing.Any, resolver: Resolver | None = None) -> "EgressPolicy":
        return cls(allow_private=settings.webhooks.allow_private_urls, own=platform_endpoints(settings),
                   resolver=resolver or system_resolver)

    # --- the URL itself ---------------------------------------------------------------------------

    def check_url(self, url: str) -> str:
        """The URL, normalised, if its form is acceptable; raises :class:`RefusedUrl` otherwise."""
        if len(url) > MAX_URL_LENGTH or any(ord(c) < 33 or c == "\\" for c in url):
            raise RefusedUrl("invalid_url", "The webhook URL must be an absolute http(s) URL without spaces.")
        try:
            parts = urlsplit(url)
            port = parts.port
            parsed = httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as error:
            raise RefusedUrl("invalid_url", "The webhook URL must be an absolute http(s) URL.") from error
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RefusedUrl("invalid_url", "The webhook URL must be an absolute http(s) URL.")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise RefusedUrl("userinfo", "The webhook URL must not carry a user name or password.")
        if parsed.host.lower() != parts.hostname.lower().strip("[]"):  # two parsers must agree on the host
            raise RefusedUrl("invalid_url", "The webhook URL's host is ambiguous.")
        if parts.scheme != "https" and not self.allow_private:
            raise RefusedUrl("https_required", "The webhook URL must use https.")
        host = parts.hostname.lower().rstrip(".")
        self._check_not_own(host, port or (443 if parts.scheme == "https" else 80))
        address = literal_address(host)
        if address is not None:
            self.check_address(address)
        elif not self.allow_private and (host == "localhost" or host.endswith((".localhost", ".local",
                                                                                 ".internal"))
                                         or "." not in host):
            raise RefusedUrl("private_address", "The webhook URL must point to a public host.")
        return str(parsed)

    def _check_not_own(self, host: str, port: int) -> None:
        if (host, port) in self.own or (host, 0) in self.own:
            raise RefusedUrl("platform_address", "The webhook URL must not point at this platform.")

    def check_address(self, address: IPAddress, port: int | None = None) -> None:
        if port is not None:
            self._check_not_own(str(address), port)
        if not self.allow_private and not is_public(address):
            raise RefusedUrl("private_address", "The webhook URL must point to a public address.")
        if self.allow_private and (address.is_multicast or address.is_unspecified):
            raise RefusedUrl("private_address", "The webhook URL must point to a unicast address.")

    # --- the addresses a name resolves to ---------------------------------------------------------

    async def allowed_addresses(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` if every one is allowed; raises :class:`RefusedUrl` if any is not."""
        self._check_not_own(host.lower().rstrip("."), port)
        literal = literal_address(host)
        found = [str(literal)] if literal is not None else await self.resolver(host, port)
        if not found:
            raise RefusedUrl("unresolvable", "The webhook host has no address.")
        for text in found:
            self.check_address(ipaddress.ip_address(text.split("%", 1)[0]), port)
        return found

    async def check_resolves(self, url: str) -> None:
        """At registration: a name that resolves now must resolve only to allowed addresses.

        A name that does not resolve yet is accepted (its DNS may not be published); every delivery
        resolves and checks it again.
        """
        parsed = httpx.URL(url)
        try:
            await self.allowed_addresses(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
        except (OSError, TimeoutError):
            return


def platform_endpoints(settings: typing.Any) -> frozenset[tuple[str, int]]:
    """(host, port) of every service of the platform: the APIs, their databases, broker, cache, mail."""
    pairs: set[tuple[str, int]] = set()
    for url, port in ((settings.net.shop_url, 80), (settings.net.crm_url, 80), (settings.net.mes_url, 80),
                      (settings.db.dsn, 5432), (settings.db.replica_dsn or "", 5432),
                      (settings.redis.url, 6379), (settings.obs.otlp_endpoint, 4318)):
        found = _host_port(url, port) if url else None
        if found and found[0]:
            pairs.add(found)
    for part in settings.broker.url.split(","):
        found = _host_port(part.strip(), 5672)
        if found and found[0]:
            pairs.add(found)
    for sentinel in (settings.redis.sentinels or "").split(","):
        found = _host_port(sentinel.strip(), 26379) if sentinel.strip() else None
        if found and found[0]:
            pairs.add(found)
    pairs.add((settings.mail.smtp_host.lower(), settings.mail.smtp_port))
    for port in (settings.net.shop_port, settings.net.crm_port, settings.net.mes_port,
                 settings.net.worker_metrics_port, settings.ops.lb_stats_port):
        pairs.add((settings.net.host.lower(), port))
        pairs.add(("127.0.0.1", port))
    loopback = ("127.0.0.1", "localhost", "::1")
    pairs |= {(host, port) for known, port in pairs if known in loopback for host in loopback}
    return frozenset(pairs)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked address (the name is not looked up again)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.allowed_addresses(host, port)
        except RefusedUrl as refused:
            raise BlockedAddress(refused.reason) from refused
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host}") from error
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are never reached")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connections go only to addresses the policy allows (checked at connect time)."""

    def __init__(self, policy: EgressPolicy, *, limits: httpx.Limits = httpx.Limits()) -> None:
        super().__init__(trust_env=False, limits=limits)  # no proxy from the environment
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections, max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_PinnedBackend(policy))


def blocked(error: BaseException) -> bool:
    """True when an httpx error was the policy refusing the address (not the network failing)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (BlockedAddress, RefusedUrl)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
