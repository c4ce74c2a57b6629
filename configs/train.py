"""Turn-level GRPO on pivots (PivotRL), and its baselines.

    pivotrl train --config=configs/train.py --config.model_dir=runs/base \
        --config.pivots=runs/pivots --output runs/train
    pivotrl train --config=configs/train.py:tiny ...          # a few steps on a laptop CPU
    pivotrl train --config=configs/train.py:kl ...            # + k3 KL to the frozen pi_0
    pivotrl train --config=configs/train.py:swe ...           # clip-higher 0.28
    pivotrl train --config=configs/train.py:naive --config.pivots=runs/candidates ...
        # the paper's "naive local RL": random candidates, exact-match reward
    pivotrl sft --config=configs/train.py:sft --config.trajectories=runs/candidates ...
    pivotrl train --config=configs/train.py:envs,episodes --config.model_dir=runs/base ...
        # end-to-end multi-turn RL: whole episodes, outcome reward (no pivots)

Variants combine with commas (`tiny,kl`). Defaults are the public recipe (REFERENCE §1): G=16,
64 pivots x 16 samples = one optimizer step per rollout batch, lr 1e-6 constant, Adam
(0.9, 0.999), weight decay 0, grad clip 1.0, PPO clip 0.2/0.2, token-mean, truncated IS 5.0
against the rollout logprobs, beta = 0, MoE router frozen, load-balancing loss 0.
"""

from ml_collections import config_dict

from pivotrl_jax.envs.domains import verifier_config
from pivotrl_jax.rollout.factory import engine_config

VARIANTS = ("tiny", "kl", "swe", "naive", "sft", "envs", "episodes")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    variants = [v for v in (arg or "").split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown train variant {v!r}; known: {', '.join(VARIANTS)}")

    c = config_dict.ConfigDict()
    c.model_dir = config_dict.placeholder(str)  # pi_0 (HF layout + tokenizer): policy init
    c.pivots = config_dict.placeholder(str)  # folder written by `pivotrl select`
    c.pivots_prefix = "pivots-train"  # record shard prefix ("candidates" for raw candidates)
    c.trajectories = config_dict.placeholder(str)  # SFT: a candidates folder (pivotrl sft)
    c.seed = 0
    c.mesh_shape = (1, -1, 1, 1)  # (data, fsdp, tensor, expert); one -1 takes the rest
    c.model_overrides = config_dict.ConfigDict(
        dict(dtype="", remat="none", moe_dispatch="", moe_chunk=0, attention_chunk=0)
    )

    c.train = config_dict.ConfigDict(
        dict(
            steps=100,  # rollout batches (iterations)
            pivots_per_step=64,  # P prompts per rollout batch
            updates_per_batch=1,  # optimizer steps on one rollout batch (1: fully on-policy)
            micro_batches=1,  # M gradient-accumulation chunks per update
            max_prompt_len=2048,  # longer pivots are an error at load
            length_buckets=(),  # T buckets; empty: powers of two up to prompt + response
            pack=False,  # pack several sequences per row instead of one per row
            # A group's prompt computed once: its G responses after one copy of it in a row
            # (each sees the prompt and itself only), groups packed into as many rows as needed.
            share_prefix=True,
            # Rows rounded up to micro_batches x data devices x {1, 2, 3, 4, 6, 8, ...} (buckets
            # per octave; 1: powers of two; 0: to that multiple only): a bounded number of step
            # compilations when zero-signal groups are dropped. Extra rows are padding, no loss.
            row_buckets_per_octave=2,
            # Row counts whose update programs are compiled before the first step (with one
            # length in length_buckets): a CPU process then does not grow by a compiled step
            # (50-100 MiB at the demo's size) when it first meets one of them late in a run.
            compile_rows=(),
            # pi_old: "auto" (the step's own detached log-probs with one update per batch, no
            # extra forward; else "recompute"), "current", "recompute" (a forward pass with the
            # pre-update weights) or "engine" (the sampler's log-probs)
            old_logprobs="auto",
            reference_dtype="float32",  # frozen pi_0 storage dtype ("bfloat16" halves it)
            kl_metric=True,  # measure KL to pi_0 even at beta = 0 (one reference forward)
            entropy_metric=True,  # from the log-probs' own logits pass
            logits_chunk_mb=32,  # float32 logits computed at once (a chunk of tokens x V)
            router_aux_coef=0.0,  # MoE load-balancing loss weight (0 in the RL recipe)
            max_nonfinite=3,  # stop after this many skipped non-finite updates
            drop_zero_variance=True,  # drop groups whose G rewards are all equal (counted)
            peak_tflops=0.0,  # per-device peak for MFU; 0 leaves MFU out
        )
    )
    c.rollout = config_dict.ConfigDict(
        dict(group_size=16, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=256)
    )
    c.advantage = config_dict.ConfigDict(dict(name="grpo", eps=1e-6, ddof=1))
    c.loss = config_dict.ConfigDict(
        dict(
            policy_loss="ppo",
            clip_low=0.2,
            clip_high=0.2,
            clip_c=config_dict.placeholder(float),
            aggregation="token-mean",
            horizon=config_dict.placeholder(int),
            tis_cap=5.0,
            beta=0.0,
            kl_estimator="k3",
            entropy_coef=0.0,
        )
    )
    c.optim = config_dict.ConfigDict(
        dict(
            learning_rate=1e-6,
            schedule="constant",
            warmup_steps=0,
            decay_steps=0,
            min_lr_ratio=0.0,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            weight_decay=0.0,
            grad_clip=1.0,
            master_dtype="float32",
            freeze_router=True,  # MoE routers: no gradient, no update, no optimizer state
        )
    )
    c.engine = engine_config()  # name: jax (in-process) | sglang; see rollout/factory.py
    c.verifiers = config_dict.ConfigDict()  # per domain: {"name": ..., "params": {...}}
    c.verifier_params = config_dict.ConfigDict({"tool_call": {"threshold": 0.1}})
    c.verifier_for_all = ""  # one verifier name for every record (the naive baseline: exact)
    c.verifier_time_limit_s = 10.0
    # A completion cut at max_new_tokens is a turn that never ended: reward 0 unless True.
    c.score_truncated = False
    c.checkpoint = config_dict.ConfigDict(dict(every=10, keep=3))
    c.log = config_dict.ConfigDict(dict(tensorboard=True, progress=True))
    # Re-profile the pivots when the batch reward std stays below `std_below` for `patience`
    # batches with pivots.profile.reprofile and the current weights.
    # Pivots of those batches that lost their signal (variance 0 or mean >= lambda_diff under
    # the current policy) are excluded from then on.
    c.reprofile = config_dict.ConfigDict(
        dict(enabled=False, std_below=0.05, patience=5, lambda_diff=0.6)
    )
    # End-to-end multi-turn RL (the baseline): whole episodes of these domains' training tasks
    # with outcome reward, train.pivots_per_step tasks x rollout.group_size episodes per batch.
    # tasks_seed picks the pool's sessions (-1: the run seed); the same (tasks_per_domain,
    # tasks_seed) as envs.generate_sft gives the sessions of those SFT trajectories.
    c.episodes = config_dict.ConfigDict(
        dict(domains=(), tasks_per_domain=256, tasks_seed=-1, max_turns=8)
    )
    c.sft = config_dict.ConfigDict(
        dict(
            prefix="candidates",  # record shard prefix in `trajectories`
            batch_size=32,  # sequences (assistant turns) per optimizer step
            length_buckets=(512, 1024, 2048, 4096),  # longer turns are skipped (counted)
            epochs=1,  # used when steps == 0
            steps=0,
        )
    )

    if "tiny" in variants:
        c.train.steps = 6
        c.train.pivots_per_step = 4
        c.train.max_prompt_len = 512
        c.train.length_buckets = (64, 128, 256, 512, 1024)
        c.rollout.group_size = 4
        c.rollout.max_new_tokens = 32
        c.optim.learning_rate = 1e-4
        c.engine.max_batch_size = 16
        # a random or barely trained model rarely ends a turn within a few tokens: verify the
        # cut text, so that a short run still has reward signal
        c.score_truncated = True
        c.checkpoint.every = 3
        c.sft.batch_size = 4
        c.sft.length_buckets = (128, 256, 512, 1024)
        c.sft.steps = 6
    if "envs" in variants:  # the synthetic domains of pivotrl_jax.envs
        c.verifiers = config_dict.ConfigDict(verifier_config())
    if "episodes" in variants:  # end-to-end RL on the synthetic agentic domains
        c.episodes.domains = ("terminal", "tool_use")
    if "kl" in variants:
        c.loss.beta = 0.01
        c.loss.kl_estimator = "k3"
    if "swe" in variants:
        c.loss.clip_high = 0.28
    if "naive" in variants:
        # Naive local RL (paper baseline): unfiltered candidate turns, strict 1[a = a*] reward.
        c.pivots_prefix = "candidates"
        c.verifier_for_all = "exact"
    if "sft" in variants:
        c.optim.learning_rate = 1e-5 if "tiny" not in variants else 1e-3
        c.optim.schedule = "constant"
        c.optim.freeze_router = False  # supervised training trains the router
    return c
