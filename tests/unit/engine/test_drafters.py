"""Each drafter's incremental, cached proposals equal proposals recomputed from scratch on the
same context (so cache catch-up, rollback and row moves are right), and the n-gram lookup
finds what it should."""

import pytest
import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.base import DraftContext
from rollspec.engine.drafters.draft_model import DraftModelDrafter
from rollspec.engine.drafters.eagle import EagleDrafter
from rollspec.engine.drafters.mtp import MTPDrafter
from rollspec.engine.drafters.ngram import NgramDrafter
from rollspec.engine.engine import Engine
from rollspec.engine.sampler import SamplingTensors
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.random_models import random_decoder, random_eagle_head, random_mtp_heads, tiny_config

CFG = tiny_config(vocab_size=20)
K = 4


class Recorder:
    """Wraps a drafter and keeps (context tokens, proposed tokens) of every proposal."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def propose(self, ctx, k):
        proposal = self.inner.propose(ctx, k)
        contexts = [list(tokens[:n]) for tokens, n in zip(ctx.token_lists, ctx.context_lens)]
        self.calls.append((contexts, proposal.tokens_BK.tolist()))
        return proposal


def reference_draft_model(draft, context, k):
    tokens = list(context)
    for _ in range(k):
        tokens.append(int(draft.logits(draft(torch.tensor([tokens])))[0, -1].argmax()))
    return tokens[len(context):]


def reference_eagle(head, policy, context, k):
    features = list(policy(torch.tensor([context[:-1]]))[0])  # f_i for every committed token
    tokens = list(context[1:])  # x_{i+1} paired with f_i
    out = []
    for _ in range(k):
        predicted = head(policy.embed_tokens(torch.tensor([tokens])), torch.stack(features)[None])[0, -1]
        out.append(int(policy.logits(predicted).argmax()))
        features.append(predicted)
        tokens.append(out[-1])
    return out


def reference_mtp(heads, policy, context, k):
    state = policy(torch.tensor([context[:-1]]))[0, -1][None, None]
    token, out = context[-1], []
    for j in range(k):
        state, normed = heads.head(j)(state, policy.embed_tokens(torch.tensor([[token]])))
        token = int(policy.logits(normed)[0, 0].argmax())
        out.append(token)
    return out


@pytest.mark.parametrize("kind", ["draft_model", "eagle", "mtp"])
def test_cached_proposals_equal_recomputed_ones(kind):
    policy = random_decoder(CFG, seed=0, std=0.3).double()
    config = EngineConfig(max_batch_size=3, max_seq_len=64, dtype="float64")
    if kind == "draft_model":
        draft = random_decoder(tiny_config(vocab_size=20, num_layers=1), seed=1, std=0.3).double()
        inner = DraftModelDrafter(draft, num_slots=3, max_len=config.cache_len)

        def reference(context):
            return reference_draft_model(draft, context, K)
    elif kind == "eagle":
        head = random_eagle_head(CFG, seed=2, std=0.3).double()
        inner = EagleDrafter(head, policy, num_slots=3, max_len=config.cache_len)

        def reference(context):
            return reference_eagle(head, policy, context, K)
    else:
        heads = random_mtp_heads(CFG, num_layers=2, seed=3, std=0.3).double()
        inner = MTPDrafter(heads, policy)

        def reference(context):
            return reference_mtp(heads, policy, context, K)
    recorder = Recorder(inner)
    engine = Engine(policy, config, drafter=recorder, depth=FixedDepth(K))
    # Five requests through three rows: rows get reused and moved as sequences finish.
    requests = [Request(request_id=str(i), prompt_ids=tuple(range(1, 3 + 2 * i)),
                        params=SamplingParams(temperature=0.0, max_new_tokens=6 + 5 * i)) for i in range(5)]
    engine.generate(requests)
    assert len(recorder.calls) > 5
    with torch.no_grad():
        for contexts, proposed in recorder.calls:
            for context, tokens in zip(contexts, proposed):
                assert tokens == reference(context), f"context {context}"


def _ctx(token_lists, group_ids):
    n = max(len(t) for t in token_lists)
    tokens = torch.tensor([t + [0] * (n - len(t)) for t in token_lists])
    sampling = SamplingTensors.from_params([SamplingParams()] * len(token_lists), torch.device("cpu"))
    return DraftContext(tokens_BM=tokens, context_lens=[len(t) for t in token_lists], token_lists=token_lists,
                        group_ids=group_ids, hidden_SMD=None, hidden_slots_B=None, sampling=sampling, draw_uniforms=None)


def test_ngram_prefers_the_longest_match_and_its_most_recent_occurrence():
    drafter = NgramDrafter(num_slots=2, min_n=1, max_n=3)
    own = [7, 1, 2, 3, 9, 9, 1, 2, 3, 8, 4, 1, 2, 3]
    # "1 2 3" occurs twice before the suffix; the later occurrence is followed by 8 4 1.
    assert drafter.propose(_ctx([own], [None]), 3).tokens_BK.tolist() == [[8, 4, 1]]


def test_ngram_pads_short_continuations_and_repeats_when_nothing_matches():
    drafter = NgramDrafter(num_slots=2, min_n=2, max_n=3)
    assert drafter.propose(_ctx([[5, 6, 1, 5, 6]], [None]), 4).tokens_BK.tolist() == [[1, 5, 6, 6]]
    drafter = NgramDrafter(num_slots=2, min_n=2, max_n=3)
    assert drafter.propose(_ctx([[1, 2, 3, 4]], [None]), 3).tokens_BK.tolist() == [[4, 4, 4]]


def test_ngram_reads_running_and_finished_siblings_of_the_group():
    drafter = NgramDrafter(num_slots=3, min_n=2, max_n=4)
    prompt = [1, 2, 3]
    sibling = prompt + [10, 11, 12, 13, 14]
    drafter.reset_row(0)
    drafter.propose(_ctx([sibling], ["g"]), 2)
    drafter.finish_row(0, "g", sibling)
    # A new row of the same group that has produced "10 11" continues like its finished sibling.
    assert drafter.propose(_ctx([prompt + [10, 11]], ["g"]), 3).tokens_BK.tolist() == [[12, 13, 14]]
    # A different group does not see it.
    assert drafter.propose(_ctx([prompt + [10, 11]], ["h"]), 3).tokens_BK.tolist() == [[11, 11, 11]]
    drafter = NgramDrafter(num_slots=3, min_n=2, max_n=4)
    running = [prompt + [20, 21, 22, 23], prompt + [20, 21]]
    assert drafter.propose(_ctx(running, ["h", "h"]), 2).tokens_BK.tolist()[1] == [22, 23]
