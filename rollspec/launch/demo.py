"""`rollspec demo`: held-out task prompts through the engine, plain and with every drafter,
timed side by side in one process."""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table

from rollspec.engine.config import EngineConfig
from rollspec.engine.depth import FixedDepth
from rollspec.engine.drafters.build import build_drafter
from rollspec.engine.engine import Engine
from rollspec.engine.loader import load_model
from rollspec.engine.profiling import profile_step_costs
from rollspec.engine.sampling_params import SamplingParams
from rollspec.engine.sequence import Request
from rollspec.models.recipe import full_recipe
from rollspec.models.zoo import ensure_zoo
from rollspec.rl.mixture import TaskMixture
from rollspec.rl.split import Split
from rollspec.rl.tasks import reward, task_names
from rollspec.rl.template import decode_response, encode_prompt
from rollspec.rl.vocab import EOS_ID
from rollspec.scheduler import DepthConfig, DepthScheduler, profile_points, profiled_costs

MAX_SEQ_LEN = 256


def demo_mixture() -> TaskMixture:
    """Held-out prompts of every task at the difficulty the zoo policy was trained on (the mixture's
    default is harder: there the policy answered nothing right and the drafters, trained to imitate
    it, were measured off their distribution: acceptance 1.7-2.2 instead of 2.5-3.8 at k = 4)."""
    return TaskMixture({name: 1.0 for name in task_names()}, seed=7, split=Split.EVAL,
                       difficulty=full_recipe().difficulty)


def run_demo(*, batch: int, k: int, num_prompts: int, threads: int) -> None:
    console = Console()
    torch.set_num_threads(threads)
    zoo = ensure_zoo()
    policy = load_model(zoo.policy)
    config = EngineConfig(max_batch_size=batch, max_seq_len=MAX_SEQ_LEN, k_max=8)
    examples = demo_mixture().take(num_prompts)
    requests = [Request(request_id=str(i), prompt_ids=tuple(encode_prompt(ex.prompt)), group_id=str(i),
                        params=SamplingParams(temperature=1.0, max_new_tokens=160, stop_token_ids=(EOS_ID,),
                                              seed=i)) for i, ex in enumerate(examples)]
    paths = {"draft_model": zoo.draft, "eagle": zoo.eagle}

    def drafter(kind: str, cfg: EngineConfig = config):
        return build_drafter(kind, policy=policy, config=cfg, draft_path=paths.get(kind))

    def adaptive(kind: str) -> DepthScheduler:
        batch_sizes, qs = profile_points(batch, config.k_max)
        profile = profile_step_costs(policy.model, config, batch_sizes=batch_sizes, qs=qs,
                                     drafter_factory=lambda cfg: drafter(kind, cfg))
        return DepthScheduler(DepthConfig(k_max=config.k_max), *profiled_costs(profile))

    runs = [("plain", None, FixedDepth(0))]
    runs += [(f"{kind} k={k}", drafter(kind), FixedDepth(k)) for kind in ("draft_model", "eagle", "mtp", "ngram")]
    console.print(f"[bold]rollspec demo[/]: {num_prompts} held-out prompts, batch {batch}, temperature 1, "
                  f"{threads} threads; zoo at {zoo.root}; profiling the adaptive depth policy...")
    runs.append(("eagle adaptive k", drafter("eagle"), adaptive("eagle")))
    table = Table(title="plain vs speculative decoding (same prompts, one process)")
    for column in ("run", "tokens/s", "speedup", "acceptance length", "reward"):
        table.add_column(column, justify="right" if column != "run" else "left")
    plain_rate = None
    for name, built, depth in runs:
        engine = Engine(policy.model, config, drafter=built, depth=depth)
        start = time.perf_counter()
        completions = engine.generate(requests)
        rate = sum(len(c.token_ids) for c in completions) / (time.perf_counter() - start)
        plain_rate = plain_rate or rate
        verify = sum(c.stats.num_verify_steps for c in completions)
        acceptance = 1 + sum(c.stats.num_accepted for c in completions) / verify if verify else 1.0
        score = sum(reward(ex.prompt, decode_response(c.token_ids)) for ex, c in zip(examples, completions))
        table.add_row(name, f"{rate:.0f}", f"{rate / plain_rate:.2f}x", f"{acceptance:.2f}",
                      f"{score / len(examples):.2f}")
    console.print(table)
    example, completion = examples[0], completions[0]
    console.print(f"example: [cyan]{example.prompt}[/] -> [green]{decode_response(completion.token_ids)}[/] "
                  f"(reference {example.reference_response})")
