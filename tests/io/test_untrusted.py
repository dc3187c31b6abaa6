"""prediff.io.untrusted: only regular files are read, never beyond a stated size."""
import os

import pytest

from prediff.errors import InputError
from prediff.io.untrusted import check_regular_file, open_regular, read_bounded


def test_regular_file_and_symlink_to_it_are_read(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    link = tmp_path / "link"
    link.symlink_to(f)
    assert check_regular_file(f) == 3
    assert read_bounded(link, 10) == b"abc"
    with open_regular(link) as fh:
        assert fh.read() == b"abc"


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "/proc/self/mem", "/proc/self/status"])
def test_devices_and_pseudo_files_refused_by_name(tmp_path, target):
    link = tmp_path / "meta.json"
    link.symlink_to(target)
    with pytest.raises(InputError, match="meta.json"):
        read_bounded(link, 1 << 16, "cache metadata")
    with pytest.raises(InputError, match="expected a regular file"):
        check_regular_file(target)


def test_fifo_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        open_regular(fifo, "input file")


def test_missing_directory_oversized_and_short_files(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        check_regular_file(tmp_path / "nope", "input file")
    with pytest.raises(InputError, match="a directory"):
        check_regular_file(tmp_path)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="at most 10"):
        read_bounded(big, 10)
    with pytest.raises(InputError, match="truncated"):
        read_bounded(big, 1000, expected=200)
