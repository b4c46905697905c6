"""Peer for scripts/bench_big.sh: transformers' perplexity of a causal LM on a JSONL of {"text"} records,
tokenized by the model directory's tokenizer.json exactly as coto does (no special tokens added, every
token after the first scored), one text at a time. Prints load and scoring seconds, the perplexity, the
peak RSS and torch's threads. The model runs in its file's dtype (bf16 for the synthetic 8B: Float32 would
need 32 GB), so its logits are bf16 arithmetic, not coto's Float32 over the same weights.

usage: python scripts/bench_big.py MODEL_DIR TEXTS.jsonl [--threads 2] [--dtype bfloat16|float32]
"""
import argparse
import json
import math
import resource
import time

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(a.model + "/tokenizer.json")
    texts = [json.loads(line)["text"] for line in open(a.texts) if line.strip()]
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype), low_cpu_mem_usage=True)
    model.eval()
    load = time.perf_counter() - t0
    nll, count = 0.0, 0
    t1 = time.perf_counter()
    with torch.inference_mode():
        for seq in ids:
            x = torch.tensor([seq])
            logits = model(x).logits[0, :-1].float()
            lp = torch.log_softmax(logits, dim=-1)
            y = torch.tensor(seq[1:])
            nll -= lp[torch.arange(len(seq) - 1), y].double().sum().item()
            count += len(seq) - 1
    score = time.perf_counter() - t1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(
        f"transformers {torch.__version__} ({a.dtype}, {torch.get_num_threads()} threads): load {load:.1f} s, "
        f"score {score:.1f} s for {len(ids)} texts / {count} scored tokens, perplexity {math.exp(nll / count):.4f}, peak RSS {rss:.2f} GiB"
    )


if __name__ == "__main__":
    main()
