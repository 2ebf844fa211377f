"""Common Voice from Mozilla Data Collective (MDC), where its releases live since they left the Hub.

"mdc:<dataset id>" downloads the release archive with MDC's official client (`datacollective`:
resumes an interrupted download, API base from MDC_API_URL), checks it against the size and
checksum MDC publishes, and hands it to the Common Voice archive source. "mdc:<id>?sample=true"
takes the dataset's small sample instead, for a quick look.

The API key is read from the environment (MDC_API_KEY) or Colab's secrets, never from a notebook
parameter: an executed notebook would keep it in its saved copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from ..colab import in_colab, secret
from ..errors import SourceError

log = logging.getLogger(__name__)

API_KEY = "MDC_API_KEY"  # the variable the official client reads
DOWNLOAD_PATH = "MDC_DOWNLOAD_PATH"  # the client's own download folder setting
# In Colab the archive goes to the VM's local disk: tens of GB written to Drive would be slow and
# eat the Drive quota the feature store needs.
COLAB_DOWNLOADS = "/content/mdc-datasets"
SHA256 = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})")  # the checksum form this module can check
KEY_HELP = (
    "create a key at https://mozilladatacollective.com (profile -> API keys) and set it as the "
    f"environment variable {API_KEY}, or in Colab add it to the secrets (key icon) as {API_KEY}"
)


def default_download_dir() -> Path:
    """MDC_DOWNLOAD_PATH if set; in Colab, local disk; else ~/.cache/mdc-datasets."""
    if os.environ.get(DOWNLOAD_PATH):
        return Path(os.environ[DOWNLOAD_PATH]).expanduser()
    return Path(COLAB_DOWNLOADS if in_colab() else "~/.cache/mdc-datasets").expanduser()


def ensure_api_key(what: str) -> None:
    """Make MDC_API_KEY visible to the client (from Colab's secrets when the environment has
    none), or stop with a message that says how to get one."""
    if not os.environ.get(API_KEY):
        key = secret(API_KEY)
        if not key:
            raise SourceError(f"{what}: no Mozilla Data Collective API key: {KEY_HELP}")
        os.environ[API_KEY] = key


def download_mdc(dataset_id: str, download_dir: str | Path | None = None, sample: bool = False):
    """Download (or find, or resume) the archive of MDC dataset `dataset_id`; returns its path.

    Errors name the dataset and say what to do: a refused key, a dataset that does not exist or
    whose terms were not accepted, a cut connection (run again: the download resumes), an archive
    that does not match MDC's checksum (removed, so the next run fetches it anew).
    """
    import datacollective
    import requests
    from datacollective.errors import DownloadError

    what = f"mdc:{dataset_id}" + (" (sample)" if sample else "")
    if not dataset_id.strip() or "/" in dataset_id:
        raise SourceError(f"{what}: not a dataset id (the id or slug from the dataset's MDC page)")
    ensure_api_key(what)
    folder = Path(download_dir).expanduser() if download_dir else default_download_dir()
    try:
        if sample:
            return Path(datacollective.download_sample(dataset_id, download_directory=str(folder)))
        details = datacollective.get_dataset_details(dataset_id)
        archive = Path(datacollective.download_dataset(dataset_id, download_directory=str(folder)))
    except datacollective.AuthenticationError:
        raise SourceError(
            f"{what}: the API key was refused (invalid, expired or revoked); {KEY_HELP}"
        ) from None
    except FileNotFoundError:
        raise SourceError(f"{what}: no such dataset on Mozilla Data Collective") from None
    except PermissionError as err:
        raise SourceError(
            f"{what}: access denied ({err}); accept the dataset's terms on its MDC page first"
        ) from None
    except DownloadError as err:
        raise SourceError(
            f"{what}: the download stopped after {err.total_downloaded_bytes} of "
            f"{err.total_archive_bytes} ({err.__cause__!r}); run again to resume it"
        ) from None
    except (requests.RequestException, RuntimeError) as err:
        raise SourceError(
            f"{what}: Mozilla Data Collective cannot be reached or answered oddly: {err}"
        ) from None
    verify_archive(archive, details.get("sizeBytes"), details.get("checksum"), what)
    return archive


def verify_archive(archive: Path, size, checksum: str | None, what: str) -> None:
    """Check the archive's size and (sha256) checksum against MDC's; a mismatching archive is
    removed. A verified archive gets a small marker beside it, so a rerun does not hash tens of
    GB again."""
    marker = archive.with_name(archive.name + ".verified")
    st = archive.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "checksum": checksum}
    if marker.is_file() and json.loads(marker.read_text() or "null") == stamp:
        return
    problem = None
    if size and st.st_size != int(size):
        problem = f"{st.st_size} bytes where MDC says {int(size)}"
    elif checksum and (match := SHA256.fullmatch(checksum.strip())):
        digest = hashlib.sha256()
        with open(archive, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != match.group(1).lower():
            problem = "its sha256 differs from the checksum MDC publishes"
    elif checksum:
        log.warning("%s: checksum %r is not a sha256; only the size was checked", what, checksum)
    if problem:
        archive.unlink()
        raise SourceError(
            f"{what}: the downloaded archive is damaged ({problem}); it was removed, run again"
        )
    marker.write_text(json.dumps(stamp))
