"""The lake's content-addressed object store (lake/objects.py), on real files: no mocks of the disk."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from medlake.lake import objects
from medlake.lake.objects import ObjectStoreError, StoreMethod


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_identical_bytes_are_stored_once_under_their_sha256(tmp_path):
    lake = tmp_path / "lake"
    sha = _write(tmp_path / "a" / "x.dcm", b"DICOM bytes")
    _write(tmp_path / "b" / "renamed.dcm", b"DICOM bytes")
    first = objects.store_file(lake, tmp_path / "a" / "x.dcm", sha, size_bytes=11)
    second = objects.store_file(lake, tmp_path / "b" / "renamed.dcm", sha)
    assert first.relative_path == f"objects/{sha[:2]}/{sha}"
    assert first.method is StoreMethod.LINKED and first.is_new
    assert second.method is StoreMethod.EXISTING and not second.is_new
    assert [p for p in (lake / "objects").rglob("*") if p.is_file()] == [lake / first.relative_path]


def test_object_survives_deleting_the_delivered_file(tmp_path):
    lake = tmp_path / "lake"
    source = tmp_path / "delivery" / "image.pdf"
    sha = _write(source, b"%PDF-1.4 report")
    stored = objects.store_file(lake, source, sha)
    source.unlink()
    assert (lake / stored.relative_path).read_bytes() == b"%PDF-1.4 report"
    assert objects.verify_object(lake, sha)


def test_copy_when_links_are_impossible_checks_the_digest(tmp_path, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    lake = tmp_path / "lake"
    source = tmp_path / "d" / "f.dcm"
    sha = _write(source, b"abc")
    stored = objects.store_file(lake, source, sha)
    assert stored.method is StoreMethod.COPIED
    assert os.stat(lake / stored.relative_path).st_ino != os.stat(source).st_ino
    # bytes changed between hashing and storing: refused, and no half object left behind
    other = tmp_path / "d" / "g.dcm"
    stale_sha = _write(other, b"old")
    other.write_bytes(b"new bytes")
    with pytest.raises(ObjectStoreError, match="changed while it was landed"):
        objects.store_file(lake, other, stale_sha)
    assert not objects.has_object(lake, stale_sha)
    assert not [p for p in (lake / "objects").rglob(".tmp-*")]


def test_a_symlinked_delivery_file_is_stored_as_the_file_it_points_to(tmp_path):
    lake = tmp_path / "lake"
    target = tmp_path / "delivery" / "real.dcm"
    sha = _write(target, b"real bytes")
    link = tmp_path / "delivery" / "alias.dcm"
    link.symlink_to(target)
    stored = objects.store_file(lake, link, sha)
    assert not (lake / stored.relative_path).is_symlink()
    target.unlink()
    assert (lake / stored.relative_path).read_bytes() == b"real bytes"


def test_bad_digest_is_a_clear_error(tmp_path):
    with pytest.raises(ObjectStoreError, match="not a lower-case hex SHA-256"):
        objects.object_relative_path("../../etc/passwd")


def test_link_or_copy_hands_an_object_out_and_replaces_the_destination(tmp_path):
    lake = tmp_path / "lake"
    stored = objects.store_bytes(lake, b"pixels")
    destination = tmp_path / "export" / "images" / "a.dcm"
    destination.parent.mkdir(parents=True)
    destination.write_bytes(b"old export")
    assert objects.link_or_copy(lake / stored.relative_path, destination) is StoreMethod.LINKED
    assert destination.read_bytes() == b"pixels"
    assert objects.store_bytes(lake, b"pixels").method is StoreMethod.EXISTING


def test_storing_through_the_open_descriptor_refuses_a_swapped_path(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    checked = tmp_path / "delivery" / "checked.dcm"
    sha = _write(checked, b"checked bytes")
    with open(checked, "rb") as handle:
        stored = objects.store_file(lake, checked, sha, fd=handle.fileno())
    assert stored.method is StoreMethod.LINKED
    # the path now names another file than the one landing opened and hashed
    swapped = tmp_path / "delivery" / "swapped.dcm"
    sha2 = _write(swapped, b"other bytes!!")
    with open(swapped, "rb") as handle:
        os.replace(checked, swapped)
        with pytest.raises(ObjectStoreError, match="replaced while it was landed"):
            objects.store_file(lake, swapped, sha2, fd=handle.fileno())
        # without links, the copy reads the descriptor: the bytes that were hashed
        monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))
        copied = objects.store_file(lake, swapped, sha2, fd=handle.fileno())
    assert copied.method is StoreMethod.COPIED
    assert (lake / copied.relative_path).read_bytes() == b"other bytes!!"
