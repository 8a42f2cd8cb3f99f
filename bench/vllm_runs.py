"""Contenders of the vLLM benchmark: our engine and vLLM behind the same Generator interface, fed
the same waves of requests, timed with wall clock and with the CPU seconds of every process the
contender runs (vLLM: front end, engine core and worker; ours: the one process)."""

from __future__ import annotations

import dataclasses
import time

import psutil

from rollspec.backends.drafter_spec import DrafterSpec
from rollspec.backends.factory import make_generator
from rollspec.engine.config import EngineConfig
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import task_names
from rollspec.rl.template import encode_prompt
from rollspec.rl.vocab import EOS_ID

MAX_SEQ_LEN = 256
MAX_BATCH = 64


def held_out_prompts(count: int) -> list[tuple[int, ...]]:
    """The same held-out task prompts the engine benchmark uses (the zoo's difficulty)."""
    from bench.engine_runs import ZOO_DIFFICULTY

    mixture = TaskMixture({name: 1.0 for name in task_names()}, seed=1234, split=Split.EVAL, difficulty=ZOO_DIFFICULTY)
    return [tuple(encode_prompt(ex.prompt)) for ex in mixture.take(count)]


def requests_for(prompts: list[tuple[int, ...]], *, temperature: float, max_new_tokens: int, tag: str) -> list[Request]:
    return [Request(request_id=f"{tag}-{i}", prompt_ids=p, group_id=f"{tag}-{i // 4}",
                    params=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens,
                                          stop_token_ids=(EOS_ID,), seed=1000 + i))
            for i, p in enumerate(prompts)]


def drafter_spec(zoo, kind: str, k: int) -> DrafterSpec:
    paths = {"draft_model": zoo.draft, "eagle": zoo.eagle}
    return DrafterSpec(kind=kind, path=str(paths[kind]) if kind in paths else None, k=k, ngram_min=1, ngram_max=4)


@dataclasses.dataclass
class Contender:
    """One started generator (native or vLLM) with its configuration and start-up cost."""

    backend: str
    kind: str
    k: int
    generator: object
    startup_s: float
    processes: list

    @classmethod
    def start(cls, backend: str, zoo, kind: str, k: int, *, eager: bool) -> Contender:
        config = EngineConfig(max_batch_size=MAX_BATCH, max_seq_len=MAX_SEQ_LEN, k_max=max(k, 1))
        begin = time.perf_counter()
        generator = make_generator(backend, policy_path=zoo.policy, config=config, drafter=drafter_spec(zoo, kind, k),
                                   enforce_eager=eager)
        startup_s = time.perf_counter() - begin
        me = psutil.Process()
        processes = [me] + (me.children(recursive=True) if backend == "vllm" else [])
        return cls(backend, kind, k, generator, startup_s, processes)

    @property
    def name(self) -> str:
        return f"{'ours' if self.backend == 'native' else 'vllm'}-{self.kind}"

    def cpu_s(self) -> float:
        total = 0.0
        for process in self.processes:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def run(self, requests: list[Request], batch: int) -> dict:
        """Generate `requests` in waves of `batch` (so at most `batch` sequences run at once)."""
        tokens = verify = accepted = 0
        cpu_before, start = self.cpu_s(), time.perf_counter()
        for first in range(0, len(requests), batch):
            for completion in self.generator.generate(requests[first: first + batch]):
                tokens += len(completion.token_ids)
                verify += completion.stats.num_verify_steps
                accepted += completion.stats.num_accepted
        wall_s = time.perf_counter() - start
        cpu_s = self.cpu_s() - cpu_before
        return {"tokens_per_s": tokens / wall_s, "tokens": tokens, "wall_s": wall_s, "cpu_s": cpu_s,
                "cpu_ms_per_token": 1e3 * cpu_s / tokens,
                "acceptance_length": 1.0 + accepted / verify if verify else None}

    def close(self) -> None:
        close = getattr(self.generator, "close", None)
        if close is not None:
            close()


def time_weight_sync(contender: Contender, zoo) -> dict:
    """Seconds for an in-place policy update and a draft update (the weights of the zoo itself,
    as the next version), measured on an idle generator."""
    from rollspec.engine.loader import read_safetensors

    policy = {n: t for n, t in read_safetensors(zoo.policy).items() if not n.startswith("mtp.")}
    draft = read_safetensors(zoo.draft if contender.kind == "draft_model" else zoo.eagle)
    generator = contender.generator
    start = time.perf_counter()
    generator.update_policy(policy, generator.policy_version + 1)
    policy_s = time.perf_counter() - start
    generator.update_draft(draft, generator.draft_version + 1)
    draft_s = time.perf_counter() - start - policy_s
    return {"policy_s": round(policy_s, 3), "draft_s": round(draft_s, 3), "total_s": round(policy_s + draft_s, 3),
            "num_policy_bytes": sum(t.numel() * t.element_size() for t in policy.values())}
