"""bench.transport hands the channel the item pool's items in order, PUT_CHUNK at a time, wrapping the pool."""

import pytest

from bench.transport import PUT_CHUNK, _put_all


class _Recorder:
    def __init__(self) -> None:
        self.chunks: list[list] = []

    def put_many(self, chunk: list, timeout_s: float) -> None:
        self.chunks.append(chunk)


@pytest.mark.parametrize(("pool_size", "total"), [(4096, 10_000), (100, 1_000), (50, 50), (7, 300)])
def test_every_item_goes_once_in_pool_order_in_chunks(pool_size, total):
    pool, sender = list(range(pool_size)), _Recorder()
    _put_all(sender, pool, total)
    assert [item for chunk in sender.chunks for item in chunk] == [pool[i % pool_size] for i in range(total)]
    assert all(len(chunk) == PUT_CHUNK for chunk in sender.chunks[:-1])
