"""The generation engine: continuous batching over a preallocated KV cache, with speculative
decoding through any Drafter and the lossless verifier.

Shape legend: B live rows, Q = K + 1 verified positions, K drafted tokens, V vocab, D hidden,
S cache rows (slots), M positions per row.
"""

from __future__ import annotations

import random
import time
from collections import deque

import torch

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import DepthPolicy, FixedDepth, PlainLease
from rollspec.engine.drafters.base import DraftContext, Drafter
from rollspec.engine.errors import PromptTooLongError, WeightUpdateError
from rollspec.engine.generator import run_to_completion
from rollspec.engine.hidden_store import HiddenStore
from rollspec.engine.kv_cache import AttentionBatch
from rollspec.engine.model import Decoder
from rollspec.engine.request_checks import check_request
from rollspec.engine.sampler import SamplingTensors, processed_probs, sample_from, token_logprobs
from rollspec.engine.sequence import Completion, Request, Sequence
from rollspec.engine.shared_prompts import prefill_plan
from rollspec.engine.step_record import StepRecord
from rollspec.engine.verify import Verifier, verify
from rollspec.engine.verify_step import fused_tail
from rollspec.engine.weights import hf_to_native, load_native

UNIFORM_STEP = 2.0 ** -24


class _NoLease:
    steps, min_batch_size = 0, 0


_NO_LEASE = _NoLease()


class Engine:
    """Generates completions for requests with the policy, speculating with `drafter` at the depth
    `depth` chooses each step. Output is distributed exactly as plain sampling from the policy."""

    def __init__(self, policy: Decoder, config: EngineConfig, *, drafter: Drafter | None = None,
                 depth: DepthPolicy | None = None, verifier: Verifier = verify, policy_version: int = 0) -> None:
        self.policy = policy
        self.config = config
        self.drafter = drafter
        self.depth = depth or FixedDepth(0)
        self._lease_of = getattr(self.depth, "plain_lease", None)  # optional part of DepthPolicy
        self._lease: PlainLease = _NO_LEASE
        self.verifier = verifier
        self.policy_version = policy_version
        device, slots, length = config.torch_device, config.max_batch_size, config.cache_len
        if length > policy.config.max_position_embeddings:
            raise PromptTooLongError(
                f"max_seq_len {config.max_seq_len} + k_max {config.k_max} + 1 exceeds the policy's "
                f"max_position_embeddings {policy.config.max_position_embeddings}")
        self.cache = policy.new_cache(num_slots=slots, max_len=length)
        self.tokens_SM = torch.zeros(slots, length, dtype=torch.long, device=device)
        hidden_size = policy.config.hidden_size
        self.hidden = HiddenStore(num_slots=slots, max_len=length, hidden_size=hidden_size, dtype=config.torch_dtype,
                                  device=device) if drafter is not None and drafter.uses_policy_hidden else None
        self.cache.hidden = self.hidden  # the policy's cached forwards write their hidden states into it
        self._record = StepRecord(self.tokens_SM)
        # Each row's final hidden state at its prompt's last position: a row admitted later with the same
        # prompt draws its first token from it without a prefill (shared_prompts).
        self.last_hidden_SD = torch.zeros(slots, hidden_size, dtype=config.torch_dtype, device=device)
        self.rows: list[Sequence] = []
        self.waiting: deque[Request] = deque()
        self._seeds = torch.Generator().manual_seed(config.seed)
        self._sampling: SamplingTensors | None = None
        self._active_ids: set[str] = set()

    # ----------------------------------------------------------------------------- requests
    def add_request(self, request: Request) -> None:
        """Queue a request; it joins the running batch at the next step with a free row."""
        check_request(request, vocab_size=self.policy.config.vocab_size, max_seq_len=self.config.max_seq_len,
                      in_flight=self._active_ids)
        self._active_ids.add(request.request_id)
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.rows or self.waiting)

    def num_unfinished(self) -> int:
        return len(self.rows) + len(self.waiting)

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    def generate(self, requests: list[Request]) -> list[Completion]:
        """Run requests to completion; results in the order given."""
        return run_to_completion(self, requests)

    # ----------------------------------------------------------------------------- the step
    @torch.inference_mode()
    def step(self) -> list[Completion]:
        """Admit waiting requests, then one decode (k = 0) or draft+verify (k > 0) step over
        every live row; returns the sequences that finished."""
        finished = self._admit()
        if not self.rows:
            return finished
        num_rows, k = len(self.rows), 0
        if self.drafter:
            k = self._choose_depth(num_rows)
        clock = self._clock()
        if k == 0:
            start = clock()
            num_accepted = self._decode()
            draft_time_s, target_time_s = 0.0, clock() - start
        else:
            start = clock()
            proposal = self.drafter.propose(self._draft_context(), k)
            drafted = clock()
            num_accepted = self._verify(proposal.tokens_BK, proposal.q_probs_BKV)
            draft_time_s, target_time_s = drafted - start, clock() - drafted
        self.depth.observe(num_rows, k, num_accepted, draft_time_s, target_time_s)
        return finished + self._retire()

    def _clock(self):
        """What the depth policy is told a step cost: on a CPU running the step on this thread alone (one
        torch thread; the C kernels are single-threaded) its thread CPU time, which other processes'
        preemption does not inflate. On a shared 2-core machine 3.5-6% of wall-timed verify steps took
        ~10x their CPU (4.6 ms) and priced speculation out for whole runs. Else wall time."""
        if self.config.step_clock == "thread" or (self.config.step_clock == "auto" and torch.get_num_threads() == 1
                                                  and self.tokens_SM.device.type == "cpu"):
            return time.thread_time
        return time.perf_counter

    def _choose_depth(self, num_rows: int) -> int:
        """The depth policy's k for this step; while a plain choice of its stands (its lease), 0 without asking
        it or the drafter: at B = 1-4 the two calls cost ~2-3% of a plain step."""
        lease = self._lease
        if lease.steps > 0 and num_rows >= lease.min_batch_size:
            lease.steps -= 1
            return 0
        catch_up = self.drafter.catch_up_tokens([s.cache_len + 1 for s in self.rows])
        k = min(self.depth.choose_depth(num_rows, catch_up), self.config.k_max)
        self._lease = self._lease_of() if k == 0 and self._lease_of is not None else _NO_LEASE
        return k

    def _decode(self) -> list[int]:
        lens = [s.cache_len for s in self.rows]
        batch = self._batch(lens, num_tokens=1)
        # Each row's pending token sits at its cache length: exactly where this step writes.
        hidden_B1D = self.policy(self.tokens_SM[batch.rows_BT, batch.positions_BT], cache=self.cache, batch=batch)
        uniforms_B1 = self._uniforms(self.rows, 1)
        tokens_B1, logprobs_B1 = self._sample_next(hidden_B1D, self.sampling, uniforms_B1)
        self._store(batch, tokens_B1)
        tokens, logprobs = tokens_B1.tolist(), logprobs_B1.tolist()  # the step's one host sync
        for seq, token_1, logprob_1 in zip(self.rows, tokens, logprobs):
            seq.cache_len += 1
            seq.num_decode_steps += 1
            seq.append(token_1, logprob_1)
        return [0] * len(lens)

    def _verify(self, draft_BK: torch.Tensor, q_probs_BKV: torch.Tensor | None) -> list[int]:
        B, K = draft_BK.shape
        lens = [s.cache_len for s in self.rows]
        batch = self._batch(lens, num_tokens=K + 1)
        pending_B1 = self.tokens_SM[batch.rows_BT[:, :1], batch.positions_BT[:, :1]]
        hidden_BQD = self.policy(torch.cat([pending_B1, draft_BK], dim=1), cache=self.cache, batch=batch)
        uniforms_BQ = self._uniforms(self.rows, K + 1)
        tail = fused_tail(hidden_BQD, self.policy.lm_head, self.sampling, draft_BK, q_probs_BKV,
                          uniforms_BQ) if self.verifier is verify else None
        if tail is not None:
            num_accepted_B, emitted_BQ, logprobs_BQ = tail
        else:
            logits_BQV = self.policy.cached_logits(hidden_BQD)
            p_probs_BQV = processed_probs(logits_BQV, self.sampling)
            num_accepted_B, next_B = self.verifier(p_probs_BQV, q_probs_BKV, draft_BK, uniforms_BQ)
            # Row b emits draft[:n] then next: column j holds the token drawn from p at position j.
            emitted_BQ = torch.cat([draft_BK, draft_BK[:, :1]], dim=1).scatter_(1, num_accepted_B[:, None],
                                                                               next_B[:, None])
            logprobs_BQ = token_logprobs(logits_BQV, p_probs_BQV, emitted_BQ, self.sampling)
        self._store(batch, emitted_BQ)
        accepted, emitted, logprobs = num_accepted_B.tolist(), emitted_BQ.tolist(), logprobs_BQ.tolist()  # sync
        for seq, n, tokens, lps in zip(self.rows, accepted, emitted, logprobs):
            seq.cache_len += 1 + n
            seq.record_verify(K, n)
            seq.append(tokens[: n + 1], lps[: n + 1])
        self.drafter.commit([s.cache_len for s in self.rows])
        return accepted

    # ----------------------------------------------------------------------------- helpers
    def _sample_next(self, hidden_B1D: torch.Tensor, sampling: SamplingTensors,
                     uniforms_B1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's next token and its logprob from the policy's final hidden state (decode, admission)."""
        tail = fused_tail(hidden_B1D, self.policy.lm_head, sampling, None, None, uniforms_B1)
        if tail is not None:
            return tail[1], tail[2]
        logits_B1V = self.policy.cached_logits(hidden_B1D)
        probs_B1V = processed_probs(logits_B1V, sampling)
        tokens_B1 = sample_from(probs_B1V, uniforms_B1)
        return tokens_B1, token_logprobs(logits_B1V, probs_B1V, tokens_B1, sampling)

    def _batch(self, lens: list[int], *, num_tokens: int, row_start: int = 0) -> AttentionBatch:
        return AttentionBatch.build(row_start=row_start, cache_lens=lens, num_tokens=num_tokens,
                                    max_len=self.cache.max_len, device=self.tokens_SM.device,
                                    dtype=self.cache.kv_NSCME.dtype)

    def _store(self, batch: AttentionBatch, next_tokens_BT: torch.Tensor) -> None:
        """Record the tokens that follow each processed position (the forward stored its hidden states, for
        drafters that read them). Padded positions past a row's length get overwritten before anything reads them."""
        if not self._record.write(batch, next_tokens_BT):
            self.tokens_SM[batch.rows_BT, batch.positions_BT + 1] = next_tokens_BT

    @property
    def sampling(self) -> SamplingTensors:
        if self._sampling is None:
            self._sampling = SamplingTensors.from_params([s.request.params for s in self.rows],
                                                         self.tokens_SM.device)
        return self._sampling

    def _uniforms(self, seqs: list[Sequence], n: int) -> torch.Tensor:
        # 24 random bits per draw: uniform on [0, 1) like torch.rand's float32, exact in float32, and
        # one tensor per step instead of one torch.rand call per row.
        draws = [[s.generator.getrandbits(24) * UNIFORM_STEP for _ in range(n)] for s in seqs]
        return torch.tensor(draws, dtype=torch.float32, device=self.tokens_SM.device)

    def _draft_context(self) -> DraftContext:
        num_rows, hidden = len(self.rows), self.hidden
        return DraftContext(
            tokens_BM=self.tokens_SM[:num_rows], context_lens=[s.cache_len + 1 for s in self.rows],
            token_lists=[s.token_ids for s in self.rows], group_ids=[s.request.group_id for s in self.rows],
            hidden_SMD=None if hidden is None else hidden.hidden_SMD,
            hidden_slots_B=None if hidden is None else hidden.slots_B(num_rows),
            sampling=self.sampling, draw_uniforms=lambda n: self._uniforms(self.rows, n))

    def _admit(self) -> list[Completion]:
        """Prefill as many waiting requests as there are free rows and sample their first token. A prompt
        already held by a row admitted now or live under the same weights (a GRPO group) is not prefilled
        again: its cache rows are copied (shared_prompts)."""
        count = min(len(self.waiting), self.config.max_batch_size - len(self.rows))
        if count == 0:
            return []
        start = len(self.rows)
        draft_version = self.drafter.version if self.drafter else 0
        live = {tuple(s.request.prompt_ids): row for row, s in enumerate(self.rows)
                if s.policy_version == self.policy_version} if self.config.share_prompt_prefill else None
        requests, num_prefilled, source_rows = prefill_plan([self.waiting.popleft() for _ in range(count)], start, live)
        seqs = []
        for row, request in enumerate(requests, start):
            seed = request.params.seed
            seed = seed if seed is not None else int(torch.randint(0, 2**62, (1,), generator=self._seeds))
            seqs.append(Sequence(request, random.Random(seed), k_max=self.config.k_max,
                                 policy_version=self.policy_version, draft_version=draft_version))
            prompt = request.prompt_ids
            self.tokens_SM[row, : len(prompt)] = torch.tensor(prompt)
            if self.drafter:
                self.drafter.reset_row(row)
        prompt_lens = [len(s.request.prompt_ids) for s in seqs]
        last_B = torch.tensor(prompt_lens, device=self.tokens_SM.device) - 1
        if num_prefilled:
            width = max(prompt_lens[:num_prefilled])
            batch = self._batch([0] * num_prefilled, num_tokens=width, row_start=start)
            hidden_BTD = self.policy(self.tokens_SM[start: start + num_prefilled, :width], cache=self.cache,
                                     batch=batch)
            self.last_hidden_SD[start: start + num_prefilled] = hidden_BTD[torch.arange(num_prefilled),
                                                                           last_B[:num_prefilled]]
        for row, src in enumerate(source_rows[num_prefilled:], start + num_prefilled):  # copies of held prompts
            length = len(self.rows[src].request.prompt_ids) if src < start else prompt_lens[src - start]
            self.cache.move_row(src, row, length)
            self.last_hidden_SD[row] = self.last_hidden_SD[src]
            if self.hidden is not None:
                self.hidden.copy_prefix(src, row, length)
        hidden_B1D = self.last_hidden_SD[start: start + count, None]
        sampling = SamplingTensors.from_params([s.request.params for s in seqs], self.tokens_SM.device)
        uniforms_B1 = self._uniforms(seqs, 1)
        tokens_B1, logprobs_B1 = self._sample_next(hidden_B1D, sampling, uniforms_B1)
        self.tokens_SM[torch.arange(start, start + count, device=last_B.device), last_B + 1] = tokens_B1[:, 0]
        for seq, n, token_1, logprob_1 in zip(seqs, prompt_lens, tokens_B1.tolist(), logprobs_B1.tolist()):
            seq.cache_len = n
            seq.append(token_1, logprob_1)
        self.rows.extend(seqs)
        self._sampling = None
        return self._retire()

    def _retire(self) -> list[Completion]:
        """Remove finished rows, filling each hole with the last live row so rows stay [0, B)."""
        done = []
        for row in reversed(range(len(self.rows))):
            seq = self.rows[row]
            if seq.finish_reason is None:
                continue
            done.append(seq.to_completion())
            self._active_ids.discard(seq.request.request_id)
            if self.drafter:
                self.drafter.finish_row(row, seq.request.group_id, seq.token_ids)
            last = len(self.rows) - 1
            if row != last:
                self._move_row(last, row)
            self.rows[row] = self.rows[last]
            self.rows.pop()
            self._sampling = None
        return done

    def _move_row(self, src: int, dst: int) -> None:
        seq = self.rows[src]
        self.cache.move_row(src, dst, seq.cache_len)
        self.tokens_SM[dst, : seq.cache_len + 1] = self.tokens_SM[src, : seq.cache_len + 1]
        self.last_hidden_SD[dst] = self.last_hidden_SD[src]
        if self.hidden is not None:
            self.hidden.move_row(src, dst)
        if self.drafter:
            self.drafter.move_row(src, dst)

    # ----------------------------------------------------------------------------- weights
    def update_policy(self, weights_hf: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Swap in new policy weights (Hugging Face names) between steps. Versions only go up
        unless `restore` says this is an explicit checkpoint restore. A bad update raises
        WeightUpdateError and leaves the current weights serving."""
        if version <= self.policy_version and not restore:
            raise WeightUpdateError(f"policy version {version} is not newer than {self.policy_version}")
        load_native(self.policy, hf_to_native(weights_hf, self.policy.config))
        self.policy_version = version

    @property
    def draft_version(self) -> int:
        return self.drafter.version if self.drafter else 0

    def update_draft(self, weights: dict[str, torch.Tensor], version: int, *, restore: bool = False) -> None:
        """Swap in new drafter weights (the names its directory uses) between steps; same version
        and error rules as `update_policy`. Weightless drafters (n-gram) only take the version."""
        if self.drafter is None:
            raise WeightUpdateError(f"draft version {version} arrived but this engine has no drafter")
        if version <= self.drafter.version and not restore:
            raise WeightUpdateError(f"draft version {version} is not newer than {self.drafter.version}")
        self.drafter.update(weights, version)
