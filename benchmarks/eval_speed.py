"""Evaluation speed: chipadapt's engines against lm-eval 0.4.13's HF backend and the CPU's FLOP limit.

  flock /tmp/chipadapt-heavy.lock python benchmarks/eval_speed.py [--model FOLDER] [--mmlu-per-subject 2]
        [--ifeval 24] [--ifeval-tokens 256] [--gen-tokens 48] [--batches 1,8,32,64]
        [--parts decoding,mmlu,ifeval] [--dtype float32|bfloat16]

Same model (default: SmolLM2-135M-Instruct, the embedded model), same items, same process:
1. MMLU with `preset=lm_eval` (letters, and cloze on one question per subject; zero-shot) against lm-eval
   running its own MMLU YAMLs over the same local files: CPU-seconds and questions/s of the model calls,
   and how many predictions agree.
2. IFEval prompts through the chat template, greedy, `--ifeval-tokens` new tokens at most, against
   lm-eval's `generate_until`: CPU-seconds, prompts/s, identical answers.
3. Greedy decoding tokens/s at each batch size (every row runs `--gen-tokens` tokens) against Hugging
   Face's `generate` with a static cache, and against two limits measured here first: the FLOP limit
   (2 x parameters FLOPs per token at the matrix-multiply rate of `--dtype`) and the memory limit (each step
   reads every weight once and every row's cached keys and values, at the measured read bandwidth).
   The whole run is also put as the FLOPs its work needs (prompt and answer tokens through the layers,
   logits for the answer tokens) per second, against the matrix-multiply rate; prefill and decoding
   steps are timed apart.
Every ratio is against a reference measured in this run. Needs `pip install -e '.[dev]'` (lm-eval).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CHIPADAPT_SHARED_DATA", ROOT.parent / "shared" / "data"))

import torch  # noqa: E402


class Clock:
    """Wall and CPU seconds (all threads of the process) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def matmul_gflops(dtype: torch.dtype = torch.float32) -> float:
    """The matrix-multiply rate of this machine in `dtype` (best of 10, after 2 s of warm-up): the FLOP limit's
    reference. Measured cold, at the start of a process, it read up to a third low (167 against 232-255 GFLOP/s
    a few seconds later), which flattered every ratio against it."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    start = time.perf_counter()
    while time.perf_counter() - start < 2:
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(10))
    return 2 * 2048**3 / best / 1e9


def read_bandwidth() -> float:
    """GB/s at which this machine streams a 512 MB tensor from memory (best of 3): the memory limit's reference."""
    big = torch.ones(128 * 1024 * 1024)
    big.sum()
    return big.numel() * 4 / min(_timed(big.sum) for _ in range(3)) / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def warm_up(model, tokenizer, lm) -> None:
    """One small call of each side first: the first forward of a process pays one-off set-up costs."""
    from lm_eval.api.instance import Instance

    from chipadapt.eval.loglikelihood import loglikelihoods

    loglikelihoods(model, tokenizer, [("Warm-up question:", " yes")], 1, 2048)
    lm.loglikelihood([Instance("loglikelihood", {}, ("Warm-up question:", " yes"), 0)], disable_tqdm=True)


def default_model() -> Path:
    from omegaconf import OmegaConf

    import chipadapt  # noqa: F401  (resolvers)
    from chipadapt.models.hf_folder import resolve_model_folder
    from chipadapt.models.locate import conversion_cache

    cfg = OmegaConf.load(ROOT / "conf" / "model" / "smollm2_135m.yaml")
    cfg.source.cache_dir = str(conversion_cache())
    return resolve_model_folder(cfg)


def bench_mmlu(model, tokenizer, lm, per_subject: int, workdir: Path, style: str, peak: float) -> None:
    from chipadapt.eval.lm_eval_reference import run_mmlu
    from chipadapt.eval.tasks.mcq import MCQTask, first_per_subject, read_mcq

    rows = first_per_subject(read_mcq(SHARED / "mmlu" / "mmlu_test.jsonl", "mmlu"), per_subject)
    dev = read_mcq(SHARED / "mmlu" / "mmlu_dev.jsonl", "mmlu_dev")
    path = workdir / "mmlu.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = MCQTask(
        str(path),
        None,
        0,
        None,
        style,
        batch_size=8,
        max_length=2048,
        max_per_subject=None,
        preset="lm_eval",
        subjects=None,
    )
    with Clock() as ours:
        task.run(model, tokenizer)
    predictions = {i: item["prediction"] for i, item in enumerate(task.items)}  # task.rows are `rows`, in order
    # Only lm-eval's model calls are timed (its task building and dataset loading are left out).
    theirs = Clock()
    inner = lm.loglikelihood

    def timed_loglikelihood(requests, *args, **kwargs):
        with theirs:
            return inner(requests, *args, **kwargs)

    lm.loglikelihood = timed_loglikelihood
    reference = run_mmlu(lm, rows, dev, workdir / f"tasks_{style}", style, 0)
    lm.loglikelihood = inner
    agree = sum(predictions[q] == p for q, p in reference.items())
    n = len(rows)
    # Tokens the model reads: each context once, plus every choice token but the last.
    tokens = sum(
        len(tokenizer.encode(task.context(r, "")))
        + sum(len(tokenizer.encode(" " + task.choice_text(r, i))) - 1 for i in range(len(r["choices"])))
        for r in task.rows
    )
    limit = peak * 1e9 / (2 * sum(p.numel() for p in model.parameters()))
    print(
        f"MMLU ({n} questions, lm_eval preset, zero-shot {style}): "
        f"chipadapt {ours.cpu:.1f} CPU-s {n / ours.wall:.2f} q/s | "
        f"lm-eval HF {theirs.cpu:.1f} CPU-s {n / theirs.wall:.2f} q/s | speed-up {theirs.cpu / ours.cpu:.2f}x CPU-s | "
        f"same prediction {agree}/{n}; acc chipadapt {sum(i['scores']['acc'] for i in task.items) / n:.4f}; "
        f"chipadapt reads {tokens / ours.wall:.0f} tok/s, {tokens / ours.wall / limit:.2f} of the FLOP limit"
    )


def bench_ifeval(model, tokenizer, lm, count: int, max_tokens: int) -> None:
    from lm_eval.api.instance import Instance

    from chipadapt.eval.scoring import generate

    prompts = [
        json.loads(line)["prompt"] for line in (SHARED / "ifeval" / "input_data.jsonl").read_text().splitlines()[:count]
    ]
    with Clock() as ours:
        answers = generate(model, tokenizer, prompts, 32, max_tokens, chat=True, add_special_tokens=True)
    settings = {
        "until": [],
        "do_sample": False,
        "temperature": 0.0,
        "max_gen_toks": max_tokens,
    }  # lm-eval's ifeval.yaml
    requests = [
        Instance("generate_until", {}, (lm.apply_chat_template([{"role": "user", "content": p}]), settings), i)
        for i, p in enumerate(prompts)
    ]
    with Clock() as theirs:
        reference = lm.generate_until(requests, disable_tqdm=True)
    same = sum(a == b for a, b in zip(answers, reference))
    tokens = sum(len(tokenizer.encode(a, add_special_tokens=False)) for a in answers)
    print(
        f"IFEval ({count} prompts, <= {max_tokens} new tokens, chat): "
        f"chipadapt {ours.cpu:.1f} CPU-s {count / ours.wall:.2f} prompts/s ({tokens / ours.wall:.0f} tok/s) | "
        f"lm-eval HF (batch {lm.batch_size}) {theirs.cpu:.1f} CPU-s {count / theirs.wall:.2f} prompts/s | "
        f"speed-up {theirs.cpu / ours.cpu:.2f}x CPU-s | identical answers {same}/{count}"
    )


class ForwardClock:
    """Wall seconds of the model's prefill calls (more than one input column) and decoding steps, apart."""

    def __init__(self, model):
        self.model, self.prefill, self.steps = model, 0.0, 0.0

    def __enter__(self):
        original = self.model.forward

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = original(*args, **kwargs)
            columns = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
            if columns > 1:
                self.prefill += time.perf_counter() - start
            else:
                self.steps += time.perf_counter() - start
            return out

        self.model.forward = timed
        return self

    def __exit__(self, *exc):
        del self.model.forward  # the class's forward again


def bench_decoding(model, tokenizer, batches: list[int], new_tokens: int, peak: float, bandwidth: float) -> None:
    from chipadapt.models.generate import greedy_generate

    params = sum(p.numel() for p in model.parameters())
    limit = peak * 1e9 / (2 * params)
    config = model.config
    # FLOPs the work needs: every prompt and answer token runs the layers; only the answer tokens need
    # logits (a prompt gives one, its first answer token; the input embedding is a lookup, no FLOPs).
    head = model.get_output_embeddings().weight.numel()
    embed = model.get_input_embeddings().weight
    body = params - head - (0 if embed is model.get_output_embeddings().weight else embed.numel())
    kv_heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # Bytes of keys and values one row reads per layer and column, all layers: what each step streams per row.
    column_bytes = 2 * config.num_hidden_layers * kv_heads * head_dim * model.dtype.itemsize
    weight_bytes = params * model.dtype.itemsize
    prompts = [json.loads(line)["prompt"] for line in (SHARED / "ifeval" / "input_data.jsonl").read_text().splitlines()]
    print(
        f"decoding limits: weights {weight_bytes / 1e6:.0f} MB and {column_bytes / 1e3:.0f} kB of cache per row and "
        f"column read each step at {bandwidth:.1f} GB/s; {2 * params / 1e6:.0f} MFLOP a token at {peak:.0f} GFLOP/s"
    )
    for batch in batches:
        chats = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts[:batch]
        ]
        ids = [tokenizer.encode(c, add_special_tokens=False) for c in chats]
        with Clock() as ours, ForwardClock(model) as parts:
            greedy_generate(model, ids, new_tokens, batch, set(), tokenizer.pad_token_id)  # no stop: every row runs
        tokenizer.padding_side = "left"
        encoded = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        with Clock() as hf, torch.no_grad():
            model.generate(
                **encoded,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                cache_implementation="static",
                pad_token_id=tokenizer.pad_token_id,
            )
        rate, hf_rate = batch * new_tokens / ours.wall, batch * new_tokens / hf.wall
        prompt_tokens = sum(len(i) for i in ids)
        # An answer's last token is never fed back: each row runs its prompt and new_tokens - 1 answer tokens.
        work = 2 * body * (prompt_tokens + batch * (new_tokens - 1)) + 2 * head * batch * new_tokens
        # Rows share one write column, so each step reads the longest prompt's columns plus the answer so far.
        window = max(len(i) for i in ids) + (new_tokens - 1) / 2
        step_bytes = weight_bytes + batch * window * column_bytes
        memory_limit = batch / (step_bytes / (bandwidth * 1e9))
        prefill_share = 2 * body * prompt_tokens / 1e9 / max(parts.prefill, 1e-9) / peak
        step_rate = batch * (new_tokens - 1) / max(parts.steps, 1e-9)  # the first answer token comes from prefill
        print(
            f"greedy batch {batch:>3}: chipadapt {rate:6.0f} answer tok/s, {prompt_tokens} prompt tokens: "
            f"{work / 1e9 / ours.wall:4.0f} GFLOP/s of needed work = {work / 1e9 / ours.wall / peak:.2f} of the "
            f"matmul rate (prefill {parts.prefill:.1f} s at {prefill_share:.2f}, steps {parts.steps:.1f} s at "
            f"{step_rate:.0f} tok/s = {step_rate / limit:.2f} of the FLOP limit {limit:.0f} tok/s; "
            f"{step_bytes / 1e6:.0f} MB a step: memory limit {memory_limit:.0f} tok/s; both limits as one sum "
            f"{1 / (1 / limit + 1 / memory_limit):.0f} tok/s) | HF generate static {hf_rate:6.0f} answer tok/s | "
            f"ratio {rate / hf_rate:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--mmlu-per-subject", type=int, default=2)
    parser.add_argument("--ifeval", type=int, default=24)
    parser.add_argument("--ifeval-tokens", type=int, default=256)
    parser.add_argument("--gen-tokens", type=int, default=48)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--parts", default="decoding,mmlu,ifeval", help="which comparisons to run, comma-separated")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="weights and compute of both engines; the FLOP limit is the matrix-multiply rate in this dtype",
    )
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"eval_speed: {SHARED} is absent (set CHIPADAPT_SHARED_DATA)")
    from lm_eval.models.huggingface import HFLM

    from chipadapt.eval.scoring import generate  # noqa: F401  (import cost outside the clocks)
    from chipadapt.models.hf_folder import load_causal_lm, load_tokenizer

    folder = args.model or default_model()
    fp32, bandwidth = matmul_gflops(), read_bandwidth()
    peak = fp32 if args.dtype == "float32" else matmul_gflops(getattr(torch, args.dtype))
    print(
        f"model {folder.name} in {args.dtype}, {torch.get_num_threads()} threads, {args.dtype} matmul {peak:.0f} "
        f"GFLOP/s (fp32 {fp32:.0f}), memory read {bandwidth:.1f} GB/s"
    )
    model, tokenizer = load_causal_lm(folder, args.dtype, "sdpa").eval(), load_tokenizer(folder)
    lm = HFLM(pretrained=str(folder), device="cpu", batch_size=8, dtype=args.dtype)
    warm_up(model, tokenizer, lm)
    parts = set(args.parts.split(","))
    if "decoding" in parts:
        bench_decoding(model, tokenizer, [int(b) for b in args.batches.split(",")], args.gen_tokens, peak, bandwidth)
    if "mmlu" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            bench_mmlu(model, tokenizer, lm, args.mmlu_per_subject, Path(tmp), "letters", peak)
            # 4 multi-token choices a question: the shared context pays.
            bench_mmlu(model, tokenizer, lm, 1, Path(tmp), "cloze", peak)
    if "ifeval" in parts:
        bench_ifeval(model, tokenizer, lm, args.ifeval, args.ifeval_tokens)


if __name__ == "__main__":
    main()
