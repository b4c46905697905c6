"""The PEFT set-up the training benchmark (bench_train.py) and the CoTo parity study (parity_train.py) share:
MiniLM with PEFT LoRA as coto-train's demo recipe has it, and its LoRA modules grouped by layer (CoTo's groups).
Oracle-side only (torch, transformers, peft from the fixture venv); imported by both scripts, importing neither."""
import json


def peft_setup(minilm, data, threads=2):
    """MiniLM with a fresh head and PEFT LoRA r = 8, alpha 16 on query/value; the rows and sorted labels of `data`."""
    import torch
    from transformers import AutoTokenizer, AutoModelForSequenceClassification
    from peft import LoraConfig, get_peft_model, TaskType
    torch.set_num_threads(threads)
    rows = [json.loads(l) for l in open(data)]
    labels = sorted({r["label"] for r in rows})
    tok = AutoTokenizer.from_pretrained(minilm)
    model = get_peft_model(AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=len(labels)),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=["query", "value"]))
    return rows, labels, tok, model


def lora_layers(model):
    """{layer index: [LoRA modules of that layer]} of a PEFT BERT."""
    from peft.tuners.lora import LoraLayer
    groups = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLayer) and ".layer." in name:
            groups.setdefault(int(name.split(".layer.")[1].split(".")[0]), []).append(m)
    return [groups[k] for k in sorted(groups)]
