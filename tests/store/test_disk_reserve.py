"""The database on a full disk: the reserve the daemon keeps lets it go on writing, and
without one a write fails with one clear error and changes nothing (a real tmpfs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dployr.store import Cipher, DiskFull, DiskReserve, Store
from tests.faults.disks import fill, small_disk
from tests.store.conftest import make_settings

ROWS = 64
"""Services written after the disk is full: far more than a page or two of the database."""


def write_services(store: Store) -> None:
    for n in range(ROWS):
        store.create_service(f"svc-{n}", make_settings(description=f"{n} " + "d" * 900))


def test_with_a_reserve_the_database_writes_on_after_the_disk_is_full(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "8m") as disk:
        reserve = DiskReserve(disk)  # the default: room for the write-ahead log to grow
        assert reserve.make()
        with Store.open(disk / "dployr.db", cipher=Cipher.generate(), reserve=reserve) as store:
            store.create_service("first", make_settings())
            fill(disk)
            write_services(store)  # the reserve is released before the write needs it
            assert reserve.full
            assert len(store.list_services()) == ROWS + 1


def test_without_a_reserve_a_write_fails_with_one_line_and_changes_nothing(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    with small_disk(disk, "2m"), Store.open(disk / "dployr.db", cipher=Cipher.generate()) as store:
        store.create_service("first", make_settings())
        filler = fill(disk)
        with pytest.raises(DiskFull) as failed:
            write_services(store)
        assert str(failed.value) == (
            f"the database {disk / 'dployr.db'} could not be written: the disk is full"
        )
        written = len(store.list_services())
        filler.unlink()
        store.create_service("after", make_settings())
        assert len(store.list_services()) == written + 1


def test_a_reserve_left_by_the_last_daemon_is_kept_on_a_disk_without_room_for_another(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", "6m") as disk:
        assert DiskReserve(disk).make()
        fill(disk)
        again = DiskReserve(disk)  # the next daemon: no room for a second reserve
        assert again.make()
        assert not again.full
        again.full_seen()
        assert again.free_bytes() >= again.size
