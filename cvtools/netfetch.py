"""Reading images by local path or URL under one policy (public_dirs, SSRF guards, caps, sniffing)."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from . import imaging
from .errors import BadInput, Forbidden, NotAnImage, NotFound, TooLarge

CONNECT_TIMEOUT = 5.0  # seconds
READ_TIMEOUT = 10.0  # seconds between bytes
TOTAL_TIMEOUT = 30.0  # seconds for the whole download
MAX_REDIRECTS = 5
USER_AGENT = "CVTools/1 (+image classifier)"


@dataclass(frozen=True)
class UrlPolicy:
    allow_private: bool = False
    max_bytes: int = 50 * 1024 * 1024
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT


def is_public_address(ip: str) -> bool:
    """Only globally routable unicast addresses; private, loopback, link-local (cloud metadata) are not."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return bool(addr.is_global and not addr.is_multicast and not addr.is_reserved)


def resolve_local(raw: str, public_dirs: list[Path], base: Path) -> Path:
    """A local path inside public_dirs (symlinks resolved), else Forbidden / NotFound / BadInput."""
    if "\x00" in raw:
        raise BadInput("the path contains a NUL character")
    path = Path(raw)
    if not path.is_absolute():
        path = base / path
    try:
        real = Path(os.path.realpath(path))
        allowed = [Path(os.path.realpath(d)) for d in public_dirs]
        if not any(real == d or real.is_relative_to(d) for d in allowed):
            raise Forbidden("that path is outside the folders CV Tools may read (public_dirs)")
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise NotFound("no image file at that path")
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise BadInput("the path or one of its names is too long") from None
        raise NotFound("no image file at that path") from None
    return real


def read_local(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise TooLarge(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    data = path.read_bytes()
    if imaging.sniff(data[:32]) is None:
        raise NotAnImage("the file is not an image (JPEG, PNG, WebP, GIF or BMP expected)")
    return data


def _check_url(url: str, policy: UrlPolicy) -> tuple[str, str, int, str]:
    """Scheme, host, port and one resolved address that the policy allows."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Forbidden(f"only http and https URLs are allowed, not {parts.scheme or 'a bare name'!r}")
    host = parts.hostname
    if not host:
        raise BadInput("the URL has no host")
    if parts.username or parts.password:
        raise BadInput("URLs with a user name or password are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadInput("the URL's port is not a number between 0 and 65535") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise NotFound(f"the host {host!r} cannot be resolved") from None
    addresses = [i[4][0] for i in infos]
    if not policy.allow_private:
        bad = [a for a in addresses if not is_public_address(a)]
        if bad:
            raise Forbidden(f"the host {host!r} is a private, loopback or link-local address; refused")
    return parts.scheme, host, port, addresses[0]


def fetch_url(url: str, policy: UrlPolicy) -> tuple[bytes, str]:
    """Download an image; every redirect re-checked. Returns (bytes, final URL)."""
    deadline = time.monotonic() + policy.total_timeout
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, ip = _check_url(url, policy)
        parts = urlsplit(url)
        # Connect to the address we checked (no second DNS answer can swap in a private one).
        ip_host = f"[{ip}]" if ":" in ip else ip
        target = f"{scheme}://{ip_host}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": USER_AGENT, "Accept": "image/*"}
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
                req = client.build_request("GET", target, headers=headers, extensions={"sni_hostname": host})
                resp = client.send(req, stream=True)
                try:
                    if resp.is_redirect:
                        location = resp.headers.get("location", "")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code >= 400:
                        raise NotFound(f"the URL answered {resp.status_code}")
                    length = resp.headers.get("content-length")
                    if length and length.isdigit() and int(length) > policy.max_bytes:
                        raise TooLarge(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
                    chunks, total = [], 0
                    for chunk in resp.iter_bytes():  # as it arrives: a slow drip meets the deadline
                        total += len(chunk)
                        if total > policy.max_bytes:
                            raise TooLarge(f"the image is larger than {policy.max_bytes // (1024 * 1024)} MB")
                        if time.monotonic() > deadline:
                            raise BadInput(f"the download took longer than {policy.total_timeout:g} s")
                        chunks.append(chunk)
                finally:
                    resp.close()
        except httpx.TimeoutException:
            raise BadInput("the image host did not answer in time") from None
        except httpx.HTTPError as exc:
            raise BadInput(f"the image could not be downloaded ({type(exc).__name__})") from None
        data = b"".join(chunks)
        if imaging.sniff(data[:32]) is None:
            raise NotAnImage("the URL did not return an image (JPEG, PNG, WebP, GIF or BMP expected)")
        return data, url
    raise BadInput(f"more than {MAX_REDIRECTS} redirects")


@dataclass(frozen=True)
class ImageSource:
    """A local path or URL already judged by the policy; reading it is the only step left."""

    target: str
    path: Path | None  # a local file inside public_dirs; None for a URL

    def read(self, policy: UrlPolicy) -> bytes:
        if self.path is not None:
            return read_local(self.path, policy.max_bytes)
        return fetch_url(self.target, policy)[0]


def locate(target: str, *, public_dirs: list[Path], base: Path, policy: UrlPolicy) -> ImageSource:
    """Judge a path or URL before anything is read: 403 for a forbidden place, 400 for a malformed one,
    404 for a missing file. A URL's address is checked again at every redirect when it is read."""
    lowered = target.lower()
    if lowered.startswith(("http://", "https://")):
        _check_url(target, policy)
        return ImageSource(target, None)
    if "://" in target[:12] or lowered.startswith(("file:", "data:", "ftp:")):
        raise Forbidden("only local paths and http(s) URLs are allowed")
    return ImageSource(target, resolve_local(target, public_dirs, base))


def read_image_source(target: str, *, public_dirs: list[Path], base: Path, policy: UrlPolicy) -> bytes:
    """The bytes of a local path or an http(s) URL, under the one policy."""
    return locate(target, public_dirs=public_dirs, base=base, policy=policy).read(policy)
