"""The link box: fetch the media behind a URL a stranger pasted, without being their tool.

The app may run on a public gradio.live link, so a link is treated as hostile:

- only http(s), and only hosts whose every address is public: loopback in any spelling
  (127.1, 2130706433, 0x7f000001, [::1], [::ffff:127.0.0.1], 0.0.0.0), private, link-local (cloud
  metadata at 169.254.169.254), multicast and reserved addresses are refused, for the link and
  for every redirect, checked on the address actually connected to (no DNS rebinding between
  the check and the connection); `allow_private_links` lifts this for local use;
- an overall deadline and a byte cap, whatever the server says or does not say (a trickle of
  bytes or an endless stream without Content-Length is cut);
- one message for every way a fetch can fail, so the box cannot be used to scan ports.

Sites yt-dlp knows (YouTube, ...) go through yt-dlp (generic extraction off), with the same
deadline and cap; any other link is downloaded directly.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import InputError

ALLOWED_URL_SCHEMES = ("http", "https")
CHUNK = 64 * 1024  # bytes read at a time while downloading
MAX_REDIRECTS = 5


def check_url(url: str | None) -> str:
    """The URL stripped, or InputError unless it is an http(s) link with a host.

    file://, ftp://, data:, javascript:, bare or absolute local paths and anything else are
    refused before anything is fetched.
    """
    url = (url or "").strip()
    if not url:
        raise InputError("Paste a link first (YouTube or a direct http(s) link to a media file).")
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if scheme not in ALLOWED_URL_SCHEMES:
        what = f"'{scheme}://' links" if scheme else "local paths or links without http(s)://"
        raise InputError(f"Only http:// and https:// links are accepted, not {what}: {url[:200]}")
    if not parsed.hostname:
        raise InputError(f"The link has no host name: {url[:200]}")
    return url


def fetch_failed(url: str) -> InputError:
    """The one message for a link that could not be fetched, whatever the reason."""
    return InputError(
        f"Could not fetch {url[:200]}: it cannot be reached from here, is not allowed, is too "
        "big or too slow, or is not a media file"
    )


def is_public(address: str) -> bool:
    """True for an address on the public internet (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> list[tuple]:
    """getaddrinfo results for host:port, refused (OSError) unless every address is public."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"{host}: no address")
    if not allow_private and not all(is_public(info[4][0]) for info in infos):
        raise OSError(f"{host}: not a public address")
    return infos


def _connect(host: str, port: int, timeout: float, allow_private: bool) -> socket.socket:
    last: Exception = OSError(f"{host}: cannot connect")
    for family, kind, proto, _, address in resolve(host, port, allow_private):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)  # the checked address itself: no second lookup to rebind
            return sock
        except OSError as err:
            sock.close()
            last = err
    raise last


def _opener(timeout: float, allow_private: bool) -> urllib.request.OpenerDirector:
    """An opener whose every connection (redirects included) goes to a checked address."""

    class Http(http.client.HTTPConnection):
        def connect(self):
            self.sock = _connect(self.host, self.port, timeout, allow_private)

    class Https(http.client.HTTPSConnection):
        def connect(self):
            sock = _connect(self.host, self.port, timeout, allow_private)
            self.sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(Https, req)

    class Redirects(urllib.request.HTTPRedirectHandler):
        max_redirections = MAX_REDIRECTS

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            check_url(newurl)  # a redirect to file://, ftp://... is refused here
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(HttpHandler, HttpsHandler, Redirects)


def download_direct(
    url: str, dest: Path, max_bytes: int, deadline: float, timeout: float, allow_private: bool
) -> Path:
    """Stream `url` into `dest`, stopping past `max_bytes` or `deadline` seconds; OSError-like
    failures (and InputError for refusals) propagate for the caller to turn into one message."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "whisper-finetune-pipeline"})
    with _opener(timeout, allow_private).open(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise OSError("larger than the cap")
        written = 0
        with open(dest, "wb") as out:
            # read1: whatever has arrived (read() would wait for a whole chunk from a trickle)
            while chunk := response.read1(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise OSError("larger than the cap")
                if time.monotonic() - started > deadline:
                    raise OSError("past the deadline")
                out.write(chunk)
    if written == 0:
        raise OSError("empty")
    return dest


def _site_extractor(url: str) -> bool:
    """True when yt-dlp has a dedicated extractor for the URL (a video site, not a bare file)."""
    from yt_dlp.extractor import gen_extractor_classes

    return any(ie.suitable(url) and ie.ie_key() != "Generic" for ie in gen_extractor_classes())


def _yt_dlp(
    url: str,
    workdir: Path,
    max_bytes: int,
    deadline: float,
    timeout: float,
    max_duration: float | None,
) -> Path:
    import yt_dlp

    started = time.monotonic()

    def guard(progress: dict) -> None:
        if progress.get("downloaded_bytes", 0) > max_bytes or time.monotonic() - started > deadline:
            raise yt_dlp.utils.DownloadError("cap or deadline")

    params = {
        "format": "bestaudio/best",
        "outtmpl": {"default": "media.%(ext)s"},
        "paths": {"home": str(workdir), "temp": str(workdir)},
        "noplaylist": True,
        "playlist_items": "1",
        "max_filesize": max_bytes,
        "socket_timeout": timeout,
        "retries": 0,
        "fragment_retries": 0,
        "extractor_retries": 0,
        "cachedir": False,  # yt-dlp's cache would outlive the request
        "enable_file_urls": False,
        "allowed_extractors": ["default", "-generic"],  # never a bare URL: those come here
        "progress_hooks": [guard],
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
    }
    with yt_dlp.YoutubeDL(params) as ydl:
        info = ydl.extract_info(url, download=False)
        duration = info.get("duration")
        if max_duration is not None and duration and duration > max_duration:
            raise OSError("longer than the limit")
        ydl.process_ie_result(info, download=True)
    files = [p for p in workdir.iterdir() if p.name.startswith("media.") and p.is_file()]
    if not files:
        raise OSError("nothing downloaded")
    return files[0]


class _QuietLogger:
    """yt-dlp logger that keeps the server log clean; errors reach us as exceptions."""

    def debug(self, msg):
        pass

    info = warning = error = debug


def download_media(url: str, workdir: Path, options, max_duration: float | None) -> Path:
    """Download the media behind a checked link into workdir, or InputError (one message)."""
    url = check_url(url)
    parsed = urllib.parse.urlsplit(url)
    try:
        resolve(parsed.hostname, parsed.port or 443, options.allow_private_links)
        if _site_extractor(url):
            return _yt_dlp(
                url,
                workdir,
                options.max_download_bytes,
                options.download_deadline,
                options.url_timeout,
                max_duration,
            )
        return download_direct(
            url, workdir / ("media" + _suffix(parsed.path)), options.max_download_bytes,
            options.download_deadline, options.url_timeout, options.allow_private_links,
        )  # fmt: skip
    except InputError:
        raise fetch_failed(url) from None
    except Exception as err:  # noqa: BLE001 - any failure reads the same from outside
        raise fetch_failed(url) from err


def _suffix(path: str) -> str:
    suffix = Path(urllib.parse.unquote(path)).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".bin"


def url_name(url: str) -> str:
    """A file-name-like label for a link: its last path part, else its host."""
    parsed = urllib.parse.urlsplit(url)
    tail = Path(urllib.parse.unquote(parsed.path)).name
    return re.sub(r"[^\w.\-]+", "_", tail or parsed.hostname or "link")[:80]
