"""Moving a store: pack it into one .tar, fetch one with gdown, copy one to local disk.

A packed store may come from anyone (a Drive link in a forum post), so fetching is defensive: the
download runs in a gdown subprocess with an overall deadline and a byte cap, a page instead of an
archive (what Drive serves when a file is over quota or private) is named as such, the archive is
unpacked with utils.archives (files and folders only) and verified before it replaces anything,
and whatever fails leaves no partial file behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from ..archives import safe_extract
from ..errors import StoreError
from .layout import MANIFEST, SETTINGS, read_json, tmp_path
from .reader import FeatureStore
from .writer import shard_problem, write_manifest

log = logging.getLogger(__name__)

# A packed store is a few GB at most (a whole Common Voice locale's features are ~1-3 GB).
MAX_FETCH_BYTES = 20 << 30
# A download that has not finished after this long is stopped (a server trickling bytes would
# otherwise hold a notebook forever); 2 h moves 20 GB at under 3 MB/s.
FETCH_DEADLINE_SECONDS = 2 * 3600.0
POLL_SECONDS = 0.2  # how often the running download's size and age are checked


def _store_members(store: FeatureStore) -> list[str]:
    # Shards with their done records: an unpacked or copied store can be resumed like the original.
    members = []
    for shard in store.manifest["shards"]:
        members += [shard["file"], shard["file"].removesuffix(".parquet") + ".json"]
    if (store.path / SETTINGS).is_file():
        members.append(SETTINGS)
    return [*members, MANIFEST]  # manifest last, like on disk


def pack_store(store: str | Path, archive: str | Path) -> Path:
    """Verify a store and pack it into one uncompressed .tar (the parquet shards are compressed
    already), for uploading to Drive and fetching with `fetch_store`."""
    feature_store = FeatureStore(store)
    feature_store.verify()
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(archive)
    with tarfile.open(tmp, "w") as tar:
        for member in _store_members(feature_store):
            tar.add(feature_store.path / member, arcname=member)
    os.replace(tmp, archive)
    return archive


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def download(
    id_or_url: str,
    folder: Path,
    max_bytes: int = MAX_FETCH_BYTES,
    deadline: float = FETCH_DEADLINE_SECONDS,
) -> Path:
    """Download a Drive file id, a Drive share link or any http(s) URL into the empty `folder`
    with gdown (a subprocess, so it can be stopped), stopping it once it has written more than
    `max_bytes` or run longer than `deadline` seconds. Returns the downloaded file."""
    output = folder / "download"
    cmd = [sys.executable, "-m", "gdown", id_or_url, "-O", str(output), "--quiet", "--no-cookies"]
    started = time.monotonic()
    with open(folder / "gdown.log", "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(POLL_SECONDS)
                if _folder_bytes(folder) > max_bytes:
                    raise StoreError(
                        f"store archive {id_or_url!r}: larger than {max_bytes / 1e6:,.1f} MB; "
                        "stopped (pass max_bytes=... if it really is that big)"
                    )
                if time.monotonic() - started > deadline:
                    raise StoreError(
                        f"store archive {id_or_url!r}: not downloaded after {deadline:.0f} s; stopped"
                    )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = (folder / "gdown.log").read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not output.is_file():
        reason = said[-1] if said else f"gdown exited with {proc.returncode}"
        raise StoreError(f"cannot download the store archive {id_or_url!r}: {reason}")
    return output


def _check_is_tar(archive: Path, origin: str) -> None:
    with open(archive, "rb") as f:
        head = f.read(512).lstrip()
    if head[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise StoreError(
            f"{origin}: the server sent a web page, not a store archive (Drive does this when a "
            "file is private, over its download quota, or the link is not a file's)"
        )
    if not tarfile.is_tarfile(archive):
        raise StoreError(f"{origin}: not a tar archive (a packed store is made by pack_store)")


def unpack_store(archive: str | Path, dest: str | Path, origin: str | None = None) -> FeatureStore:
    """Extract a packed store into `dest` (replacing it only once the new one is verified)."""
    archive, dest = Path(archive), Path(dest)
    origin = origin or str(archive)
    _check_is_tar(archive, origin)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        safe_extract(archive, partial, StoreError, max_bytes=MAX_FETCH_BYTES)
        FeatureStore(partial).verify()
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(partial, dest)
    except StoreError as err:
        raise StoreError(f"store archive {origin}: {err}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return FeatureStore(dest)


def fetch_store(
    id_or_url: str, dest: str | Path, force: bool = False, max_bytes: int = MAX_FETCH_BYTES
) -> FeatureStore:
    """Fetch a packed store with gdown (a Drive file id, a Drive share link or any http(s) URL; a
    local .tar path also works), unpack it into `dest` and verify it.

    A `dest` that already holds a complete, intact store is kept as is (no download) unless `force`.
    """
    dest = Path(dest)
    if not force and (dest / MANIFEST).is_file():
        try:
            existing = FeatureStore(dest)
            existing.verify()
            log.info("%s: already holds a verified store; not downloading again", dest)
            return existing
        except StoreError as err:
            log.info("%s: existing store is not usable (%s); fetching again", dest, err)
    if not _is_url(id_or_url) and Path(id_or_url).is_file():
        return unpack_store(id_or_url, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent))
    try:
        archive = download(id_or_url, folder, max_bytes=max_bytes)
        return unpack_store(archive, dest, origin=repr(id_or_url))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_to_local(store: str | Path, dest: str | Path | None = None) -> FeatureStore:
    """Copy a store (e.g. on Drive, slow for random reads) to local disk and verify the copy.

    Shards already present at `dest` with the right checksum are not copied again; the manifest is
    written last, so an interrupted copy is finished by calling this again. `dest` defaults to a
    folder under the system temp dir named after the store.
    """
    source = FeatureStore(store)
    dest = (
        Path(dest)
        if dest is not None
        else Path(tempfile.gettempdir()) / "feature-stores" / source.path.name
    )
    if source.path.resolve() == dest.resolve():
        return source
    if read_json(dest / MANIFEST) == source.manifest:
        copied = FeatureStore(dest)
        try:
            copied.verify()
            return copied
        except StoreError:
            pass
    (dest / MANIFEST).unlink(missing_ok=True)
    for member in _store_members(source)[:-1]:
        target = dest / member
        shard = next((s for s in source.manifest["shards"] if s["file"] == member), None)
        if shard is not None and shard_problem(dest, shard) is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path(target)
        shutil.copyfile(source.path / member, tmp)
        os.replace(tmp, target)
    write_manifest(dest, source.manifest)
    copied = FeatureStore(dest)
    copied.verify()
    return copied
