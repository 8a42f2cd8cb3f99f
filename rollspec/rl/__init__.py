"""RL algorithm pieces without I/O: losses, advantages, built-in tasks and rewards.

Modules: `tasks` (verifiable tasks, rewards, registry), `vocab` / `tokenizer` / `template`
(fixed character vocabulary, HF-format tokenizer, the one prompt format), `mixture` and
`split` (prompt dataset with a held-out split), `advantages`, `policy_loss` and `kl` (GRPO
pieces), `config` (frozen configs of these cores). Nothing is imported here so that using
the tasks does not pay for importing torch.
"""
