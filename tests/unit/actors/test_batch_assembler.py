"""Batch assembly: whole groups, oldest version first, stale groups dropped, per-sample reasons kept."""

from rollspec.actors.batch_assembler import BatchAssembler
from rollspec.scheduler import AdmissionConfig, AdmissionController

VOCAB = 64


def assembler(prompts_per_step=2, group_size=2, max_staleness=0, **kwargs) -> BatchAssembler:
    config = AdmissionConfig(max_staleness=max_staleness, prompts_per_step=prompts_per_step, group_size=group_size)
    return BatchAssembler(AdmissionController(config), vocab_size=VOCAB, **kwargs)


def add_group(asm, make_record, deliver, index, version=0, group_size=2, **kwargs):
    for j in range(group_size):
        assert asm.add(deliver(make_record(index, j, group_size=group_size, version=version, **kwargs))) is None


def test_a_batch_needs_full_groups_and_takes_them_whole(make_record, deliver):
    asm = assembler()
    add_group(asm, make_record, deliver, 0)
    asm.add(deliver(make_record(1, 0)))  # half a group
    out = asm.take(step=0)
    assert out.samples is None and out.resolutions == []
    asm.add(deliver(make_record(1, 1)))
    out = asm.take(step=0)
    assert len(out.samples) == 4
    assert {r.prompt_id for r in out.resolutions} == {"p0", "p1"}
    assert all(r.trained for r in out.resolutions)
    assert len(out.to_ack_after_step) == 4 and out.to_ack_now == []


def test_stale_groups_are_dropped_with_the_reason_and_acked_at_once(make_record, deliver):
    asm = assembler(max_staleness=1)
    add_group(asm, make_record, deliver, 0, version=0)
    add_group(asm, make_record, deliver, 1, version=2)
    add_group(asm, make_record, deliver, 2, version=2)
    out = asm.take(step=2)  # version 0 may train until step 1
    dropped = [r for r in out.resolutions if not r.trained]
    assert [(r.prompt_id, r.reason) for r in dropped] == [("p0", "stale")]
    assert dropped[0].sample_reasons == ("stale", "stale")
    assert len(out.to_ack_now) == 2
    assert sorted(r.prompt_id for r in out.resolutions if r.trained) == ["p1", "p2"]


def test_oldest_version_first_and_every_trained_group_within_the_bound(make_record, deliver):
    asm = assembler(prompts_per_step=1, max_staleness=2)
    add_group(asm, make_record, deliver, 0, version=3)
    add_group(asm, make_record, deliver, 1, version=1)
    out = asm.take(step=3)
    assert [r.prompt_id for r in out.resolutions] == ["p1"]
    assert all(3 - r.policy_version <= 2 for r in out.resolutions)


def test_per_sample_drops_keep_the_group_but_not_the_sample(make_record, deliver):
    asm = assembler(prompts_per_step=1, drop_truncated=True)
    asm.add(deliver(make_record(0, 0, drop_reason="reward_error", error="boom")))
    asm.add(deliver(make_record(0, 1, finish_reason="length")))
    out = asm.take(step=0)
    (resolution,) = out.resolutions
    assert resolution.trained and resolution.sample_reasons == ("reward_error", "length")
    assert resolution.first_error == "boom"
    assert out.samples == []


def test_tokens_outside_the_vocabulary_are_refused_not_trained(make_record, deliver):
    asm = assembler(prompts_per_step=1)
    asm.add(deliver(make_record(0, 0, token_ids=(5, VOCAB + 3))))
    asm.add(deliver(make_record(0, 1)))
    out = asm.take(step=0)
    assert out.resolutions[0].sample_reasons == ("bad_tokens", "")
    assert len(out.samples) == 1


def test_a_redelivered_record_replaces_the_older_lease_and_a_late_one_is_acked(make_record, deliver):
    asm = assembler(prompts_per_step=1)
    first = deliver(make_record(0, 0))
    asm.add(first)
    assert asm.add(deliver(make_record(0, 0), attempt=2)) is first
    asm.add(deliver(make_record(0, 1)))
    out = asm.take(step=0)
    assert len(out.samples) == 2 and asm.num_duplicates == 1
    late = deliver(make_record(0, 1), attempt=3)
    assert asm.add(late) is late and asm.num_late == 1
    assert asm.take(step=1).resolutions == []


def test_forgotten_groups_release_their_records_and_never_resolve(make_record, deliver):
    asm = assembler(prompts_per_step=1)
    record = deliver(make_record(0, 0))
    asm.add(record)
    assert asm.forget(["p0"]) == [record]
    asm.add(deliver(make_record(0, 1)))
    assert asm.take(step=0).resolutions == [] and asm.num_buffered_groups == 0
