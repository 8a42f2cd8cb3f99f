"""The `rollspec` command line. Parses arguments, then imports the heavy parts it needs."""

import argparse
import os
import signal
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollspec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the installed version")
    _add_make_models(sub)
    _add_demo(sub)
    _add_train(sub)
    _add_sim(sub)
    _add_report(sub)
    _add_chaos(sub)
    return parser


def _add_make_models(sub) -> None:
    make = sub.add_parser("make-models", help="train and cache the model zoo (policy, draft, EAGLE and MTP heads)",
                          description="Train the policy, draft model, EAGLE head and MTP heads on the built-in tasks "
                                      "and save them as Hugging Face directories with a manifest. Reuses a cached "
                                      "zoo built with the same recipe and seed.")
    make.add_argument("--out", default=None,
                      help="zoo directory (default: $ROLLSPEC_ZOO_DIR, else <repo>/.cache/zoo)")
    make.add_argument("--seed", type=int, default=0, help="seed of every random choice; same seed, same weights")
    make.add_argument("--force", action="store_true", help="rebuild even if a matching zoo is cached")


def _make_models(args: argparse.Namespace) -> int:
    # Before torch loads OpenMP: spinning worker threads collapse throughput (10x measured) when
    # other processes share the cores, and the zoo is built on shared machines.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from rollspec.models.manifest import read_manifest, summarize
    from rollspec.models.zoo import build_zoo  # heavy (torch): imported only once arguments parsed

    paths = build_zoo(args.out, seed=args.seed, progress=True, force=args.force)
    print("\n".join([str(paths.root), *summarize(read_manifest(paths.root))]))
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="generation demo: plain vs speculative decoding on the zoo models",
                          description="Builds the zoo if missing, then generates held-out task completions with "
                                      "plain decoding and with every drafter, printing tokens/s, speedup and "
                                      "acceptance length side by side.")
    demo.add_argument("--batch", type=int, default=4, help="rows decoded together")
    demo.add_argument("--k", type=int, default=4, help="draft depth for the fixed-k runs")
    demo.add_argument("--prompts", type=int, default=16, help="held-out prompts per run")
    demo.add_argument("--threads", type=int, default=2, help="torch intra-op threads")


def _demo(args: argparse.Namespace) -> int:
    from rollspec.launch.demo import run_demo  # heavy (torch): imported only once arguments parsed

    run_demo(batch=args.batch, k=args.k, num_prompts=args.prompts, threads=args.threads)
    return 0


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="GRPO training run: rollout, reward, learner and draft-refresh actors on Ray",
                           description="Runs the actor pipeline described by a config preset plus dotted key=value "
                                       "overrides (e.g. algorithm.steps=5 rollout.drafter=ngram). Starts a local Ray "
                                       "unless ray.address or RAY_ADDRESS names a cluster (as under `ray job submit`).")
    train.add_argument("--config", default=None, help="YAML preset, e.g. configs/tiny.yaml (default: all defaults)")
    train.add_argument("--resume", action="store_true",
                       help="continue <run.root>/<run.name> from its last complete checkpoint")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _train(args: argparse.Namespace) -> int:
    from rollspec.launch.config import ConfigError, load_config  # pydantic only: still cheap

    try:
        config = load_config(args.config, args.overrides)
        from rollspec.launch.train import train  # heavy (torch, ray): imported only once the config is valid

        summary = train(config, resume=args.resume)
    except ConfigError as exc:
        print(f"rollspec train: {exc}", file=sys.stderr)
        return 2
    if summary["reward_by_epoch"]:
        epochs = summary["reward_by_epoch"]
        print(f"training reward by epoch over the same prompts: {' '.join(f'{r:.3f}' for r in epochs)} "
              f"({epochs[-1] - epochs[0]:+.3f} first to last)")
    else:
        print(f"training reward {summary['reward_first_third']:.3f} -> {summary['reward_last_third']:.3f} (first vs "
              f"last third of {summary['steps']} steps; each step has different prompts)")
    if "heldout" in summary:
        before, after = summary["heldout"]["initial"], summary["heldout"]["final"]
        print(f"held-out reward {before['reward_mean']:.3f} -> {after['reward_mean']:.3f} "
              f"({after['reward_mean'] - before['reward_mean']:+.3f}; same {before['num_samples']} prompts x samples "
              f"and seeds, starting vs final weights)")
    print(f"run directory {summary['run_dir']}")
    if "stopped" in summary:  # an interrupted run: the shell convention 128 + signal number
        print(summary["stopped"]["message"])
        return 128 + signal.Signals[summary["stopped"]["signal"]].value
    return 0 if not summary["ledger_problems"] else 1


def _add_sim(sub) -> None:
    sim = sub.add_parser("sim", help="project step time at cluster scale: sync/async x plain/speculative",
                         description="Simulates a scenario (every assumption written out in its YAML file): GRPO "
                                     "step time synchronous and with bounded staleness, plain vs fixed-k vs adaptive "
                                     "speculation; prints a table and writes the frontier, staleness and drain plots.")
    sim.add_argument("scenario", help="shipped scenario name (paper-8b-sync, paper-235b-async, tiny-cpu) or a .yaml path")
    sim.add_argument("--out", default="sim-results", help="directory for the PNG plots and <scenario>.json")


def _sim(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rollspec.sim.report import run_scenario  # numpy, matplotlib: imported only once arguments parsed
    from rollspec.sim.scenario import ScenarioError

    try:
        run_scenario(args.scenario, Path(args.out))
    except ScenarioError as exc:
        print(f"rollspec sim: {exc}", file=sys.stderr)
        return 2
    return 0

def _add_report(sub) -> None:
    report = sub.add_parser("report", help="plot a run: PNGs and a markdown summary in RUN_DIR/report",
                            description="Reads RUN_DIR/metrics.jsonl (and config.yaml, summary.json when present) "
                                        "and writes reward, acceptance, k, throughput, step-time and staleness "
                                        "plots plus report.md to RUN_DIR/report/.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, <run.root>/<run.name>")


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rollspec.launch.report import ReportError, write_report  # matplotlib: imported once arguments parsed

    try:
        print(write_report(Path(args.run_dir).expanduser().resolve()))
    except ReportError as exc:
        print(f"rollspec report: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_chaos(sub) -> None:
    chaos = sub.add_parser("chaos", help="fault-injection scenarios and a randomized soak on a tiny run, judged by "
                                         "the invariant checker",
                           description="Runs a tiny GRPO run (random models, private local Ray) under one scenario's "
                                       "faults, resumes it if a fault ends it, and checks: every prompt trained once "
                                       "or dropped with a reason, staleness bound, monotone versions, progress, and "
                                       "(where the scenario allows) the same final weights as an undisturbed run. "
                                       "See CHAOS.md.")
    chaos.add_argument("scenario", help="a scenario name, 'all' (every scenario) or 'soak' (random fault schedules)")
    chaos.add_argument("--seeds", type=int, default=5, help="soak seeds (with 'soak', or added to 'all' by --soak)")
    chaos.add_argument("--soak", action="store_true", help="with 'all': run the soak seeds too")
    chaos.add_argument("--steps", type=int, default=4, help="learner steps of each run")
    chaos.add_argument("--workdir", default="/tmp/rollspec-chaos", help="models, run directories and driver logs")
    chaos.add_argument("--report", default=None, help="write this JSON (e.g. bench/results/chaos.json) and the "
                                                      "table in CHAOS.md")


def _chaos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rollspec.chaos.scenarios import SCENARIOS  # plain data: cheap

    if args.scenario not in (*SCENARIOS, "all", "soak"):
        print(f"rollspec chaos: unknown scenario {args.scenario!r}; expected one of {[*SCENARIOS, 'all', 'soak']}",
              file=sys.stderr)
        return 2
    names = list(SCENARIOS) if args.scenario == "all" else [] if args.scenario == "soak" else [args.scenario]
    seeds = args.seeds if args.scenario == "soak" or args.soak else 0
    from rollspec.chaos.suite import run_suite  # heavy (torch, ray): imported only once arguments parsed

    results = run_suite(names, soak_seeds=seeds, workdir=Path(args.workdir), steps=args.steps,
                        report_path=Path(args.report) if args.report else None,
                        command="rollspec chaos " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["chaos"] else []))
    return 0 if all(r["passed"] for r in results["scenarios"] + results["soak"]) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        from rollspec import __version__

        print(__version__)
    elif args.command == "make-models":
        return _make_models(args)
    elif args.command == "demo":
        return _demo(args)
    elif args.command == "train":
        return _train(args)
    elif args.command == "sim":
        return _sim(args)
    elif args.command == "chaos":
        return _chaos(args)
    elif args.command == "report":
        return _report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
