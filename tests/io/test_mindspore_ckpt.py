"""prediff.io.mindspore_ckpt: MindSpore `.ckpt` files from outside are read with every declared size checked.

The crafted files are built here with a few lines of protobuf wire format (field number << 3 | wire type, varint
lengths), independently of the reader.
"""
import time

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from prediff.errors import InputError
from prediff.io import mindspore_ckpt
from prediff.io.checkpoint import load_checkpoint
from prediff.io.mindspore_ckpt import read_mindspore_ckpt


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def tensor(dims, type_name, content):
    return b"".join(varint(1 << 3) + varint(d) for d in dims) + field(2, type_name.encode()) + field(3, content)


def entry(tag, body):
    return field(1, field(1, tag.encode()) + field(2, body))


def write(path, data):
    path.write_bytes(data)
    return path


def refused(path, *needles):
    with pytest.raises(InputError) as info:
        read_mindspore_ckpt(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and all(n in message for n in needles), message
    return message


def test_reads_what_mindspore_writes(tmp_path):
    path = tmp_path / "a.ckpt"
    ms.save_checkpoint([{"name": "w", "data": Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))},
                        {"name": "idx", "data": Tensor(np.arange(4, dtype=np.int64).reshape(2, 2))},
                        {"name": "h", "data": Tensor(np.ones(3, np.float16))}], str(path),
                       append_dict={"note": "héllo", "step": 7}, crc_check=True)
    ours, theirs = read_mindspore_ckpt(path), ms.load_checkpoint(str(path))
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        if isinstance(value, str):
            assert value == theirs[key] == "héllo"
        else:
            expected = theirs[key].asnumpy()
            assert value.dtype == expected.dtype and value.shape == expected.shape
            np.testing.assert_array_equal(value, expected)
    assert ours["w"].flags.writeable


def test_packed_dims_and_slices_of_one_tensor(tmp_path):
    content = np.arange(6, dtype=np.float32).tobytes()
    packed = field(1, varint(2) + varint(3)) + field(2, b"Float32")
    data = entry("x", packed + field(3, content[:12])) + entry("x", packed + field(3, content[12:]))
    value = read_mindspore_ckpt(write(tmp_path / "s.ckpt", data))["x"]
    np.testing.assert_array_equal(value, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_a_truncated_file_is_one_line(tmp_path):
    good = tmp_path / "good.ckpt"
    ms.save_checkpoint([{"name": f"p{i}", "data": Tensor(np.ones((64, 64), np.float32))} for i in range(4)], str(good))
    data = good.read_bytes()
    for cut in (len(data) // 2 + 5, len(data) - 1, 3):
        refused(write(tmp_path / f"cut{cut}.ckpt", data[:cut]), "not a readable MindSpore checkpoint")
    # cut exactly between two entries it is a shorter checkpoint (the format has no end marker): the network's key
    # check then names the missing tensors
    assert list(read_mindspore_ckpt(write(tmp_path / "half.ckpt", data[:len(data) // 2]))) == ["p0", "p1"]


@pytest.mark.parametrize("data, needle", [
    # a name, then tensor content declared far beyond the file: refused before anything is allocated
    (field(1, field(1, b"w") + varint(2 << 3 | 2) + varint(1 << 40) + b"\0" * 16), "declares 1,099,511,627,776 bytes"),
    (varint(1 << 3 | 2) + varint(1 << 60) + b"\0" * 8, "remain"),
    (entry("w", tensor([1 << 62, 1 << 62, 16], "Float32", b"\0" * 16)), "declares shape"),
    (entry("w", tensor([(1 << 64) - 1], "Float32", b"\0" * 4)), "negative dimension"),
    (entry("w", tensor([1] * 40, "Float32", b"\0" * 4)), "more than 16 dimensions"),
    (entry("w", tensor([2], "Float32", b"\0" * 4)), "declares shape [2] of Float32 (8 bytes) but holds 4 bytes"),
    (entry("w", tensor([2], "BFloat16", b"\0" * 4)), "bfloat16"),
    (entry("w", tensor([1], "Complex64", b"\0" * 8)), "unknown type"),
    (field(1, field(1, b"w") + field(3, field(1, tensor([1], "Float32", b"\0" * 4)))), "map tensor"),
    (b"\x0a" + b"\xff" * 11, "not a valid varint"),
    (varint(5 << 3 | 2) + varint(1) + b"\0", "unexpected top-level field 5"),
    (entry("w", tensor([1], "Float32", b"\0" * 4)) + entry("v", tensor([1], "Float32", b"\0" * 4))
     + entry("w", tensor([1], "Float32", b"\0" * 4)), "two tensors named 'w'"),
    (field(1, field(1, b"\xff\xfe") + field(2, tensor([1], "Float32", b"\0" * 4))), "not UTF-8"),
    (entry("s", tensor([0], "str", b"\0" * 6)), "not whole UTF-32 characters"),
    (b"PK\x03\x04" + b"\0" * 40, "not a readable MindSpore checkpoint"),
])
def test_a_lying_file_is_one_line_and_quick(tmp_path, data, needle):
    start = time.monotonic()
    refused(write(tmp_path / "bad.ckpt", data), needle)
    assert time.monotonic() - start < 5


def test_entry_count_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(mindspore_ckpt, "MAX_ENTRIES", 5)
    data = b"".join(entry(f"p{i}", tensor([1], "Float32", b"\0" * 4)) for i in range(6))
    refused(write(tmp_path / "many.ckpt", data), "more than 5 tensors")
    assert len(read_mindspore_ckpt(write(tmp_path / "five.ckpt", data[:len(data) * 5 // 6]))) == 5


def test_crc_is_checked(tmp_path):
    path = tmp_path / "crc.ckpt"
    ms.save_checkpoint([{"name": "w", "data": Tensor(np.ones((8, 8), np.float32))}], str(path), crc_check=True)
    data = bytearray(path.read_bytes())
    data[-40] ^= 1  # a bit of the tensor content
    refused(write(tmp_path / "flipped.ckpt", bytes(data)), "CRC-32 does not match")


def test_not_a_regular_file(tmp_path):
    link = tmp_path / "zero.ckpt"
    link.symlink_to("/dev/zero")
    refused(link, "expected a regular file")
    refused(tmp_path, "is a directory")
    refused(write(tmp_path / "empty.ckpt", b""), "is empty")
    with pytest.raises(InputError, match="not found"):
        read_mindspore_ckpt(tmp_path / "nope.ckpt")


def test_random_damage_never_escapes_as_another_error(tmp_path):
    good = tmp_path / "good.ckpt"
    ms.save_checkpoint([{"name": "a.weight", "data": Tensor(np.ones((4, 3), np.float32))},
                        {"name": "b", "data": Tensor(np.arange(5, dtype=np.int64))}], str(good),
                       append_dict={"meta": "{}"})
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    for i in range(300):
        damaged = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        path = write(tmp_path / "d.ckpt", bytes(damaged[:rng.integers(1, len(damaged) + 1)]))
        try:
            read_mindspore_ckpt(path)
        except InputError:
            pass


def test_prediff_checkpoints_are_read_the_same_way(tmp_path, repo_root):
    demo = repo_root / "prediff_cli" / "assets" / "demo" / "unet.ckpt"
    ckpt = load_checkpoint(demo, component="unet")
    assert ckpt.model and ckpt.config["unet"] == ckpt.model_kwargs
    data = demo.read_bytes()
    with pytest.raises(InputError, match="not a readable MindSpore checkpoint"):
        load_checkpoint(write(tmp_path / "cut.ckpt", data[:len(data) // 3]))
    meta = entry("prediff_meta", tensor([0], "str", "{not json".encode("utf-32-le")))
    with pytest.raises(InputError, match="prediff_meta entry is damaged"):
        load_checkpoint(write(tmp_path / "meta.ckpt", meta))
