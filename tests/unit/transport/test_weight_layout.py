"""Weight layout (pack / unpack / chunk checksums) and the in-process broadcast contract."""

import zlib

import pytest
import torch

from rollspec.transport.broadcast import InProcBroadcast
from rollspec.transport.errors import SchemaError, VersionError
from rollspec.transport.schemas import WeightManifest
from rollspec.transport.weight_layout import ALIGN, chunk_range, pack_weights, unpack_weights


def _weights() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "embed": torch.randn(100, 33, generator=gen),
        "norm": torch.randn(33, generator=gen).bfloat16(),
        "half": torch.randn(7, 3, generator=gen).half(),
        "ids": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.arange(9, dtype=torch.uint8),
        "i32": torch.arange(4, dtype=torch.int32).reshape(2, 2),
        "empty": torch.zeros(0, 8),
        "scalar": torch.tensor(2.5),
        "strided": torch.randn(6, 6, generator=gen)[:, ::2],
    }


def test_pack_unpack_round_trip_is_exact_and_aligned():
    weights = _weights()
    manifest, flat = pack_weights(3, weights, chunk_bytes=256)
    assert all(offset % ALIGN == 0 for offset in manifest.offsets)
    out = unpack_weights(manifest, flat)
    assert list(out) == list(weights)
    for name, tensor in weights.items():
        assert out[name].dtype == tensor.dtype and torch.equal(out[name], tensor), name


def test_chunk_checksums_cover_the_whole_buffer():
    manifest, flat = pack_weights(1, _weights(), chunk_bytes=256)
    assert len(manifest.chunk_crcs) == -(-manifest.total_bytes // 256)
    data = bytes(flat.numpy())
    for index, crc in enumerate(manifest.chunk_crcs):
        start, stop = chunk_range(manifest, index)
        assert zlib.crc32(data[start:stop]) == crc


def test_publish_snapshots_so_later_in_place_updates_do_not_leak():
    weights = {"w": torch.zeros(4)}
    manifest, flat = pack_weights(1, weights, chunk_bytes=64)
    weights["w"] += 1
    assert torch.equal(unpack_weights(manifest, flat)["w"], torch.zeros(4))


@pytest.mark.parametrize("bad", [
    dict(chunk_crcs=[1]),                       # wrong number of chunks
    dict(offsets=[3]),                          # unaligned
    dict(offsets=[128]),                        # tensor runs past the end
    dict(dtypes=["complex64"]),                 # unknown dtype
    dict(names=["a", "b"]),                     # lists of different lengths
])
def test_manifest_validation_rejects_inconsistent_layouts(bad):
    good = dict(version=1, total_bytes=128, chunk_bytes=64, chunk_crcs=[0, 0], names=["a"], dtypes=["float32"],
                shapes=[[4, 4]], offsets=[0])
    WeightManifest(**good)
    with pytest.raises(SchemaError):
        WeightManifest(**(good | bad))


def test_in_process_broadcast_is_monotone_and_snapshots():
    source = InProcBroadcast()
    sink = source.sink()
    assert sink.latest() is None and sink.wait_for(1, timeout_s=0.01) is None
    weights = {"w": torch.ones(3)}
    source.publish(1, weights)
    weights["w"] += 1
    version, got = sink.wait_for(1, timeout_s=1.0)
    assert version == 1 and torch.equal(got["w"], torch.ones(3))
    with pytest.raises(VersionError):
        source.publish(1, weights)
    source.publish(5, weights)
    assert sink.latest()[0] == 5
