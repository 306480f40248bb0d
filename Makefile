# The two commands a newcomer needs: `make serve` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
RUN ?= runs/sentiment
NER_RUN ?= runs/ner
MT_RUN ?= runs/translation
# The translator export-translation ships: stage 2's best (see continue-translation).
MT_CHECKPOINT ?= $(MT_RUN)-cont/best.pt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: serve install-gpu lock proto test lint format train-sentiment export-sentiment quantize-sentiment evaluate-sentiment train-ner export-ner evaluate-ner train-translation continue-translation average-translation export-translation evaluate-translation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# GPU serving (make install-gpu): onnxruntime-gpu, with the CUDA and cuDNN runtime wheels, in
# place of the CPU wheel. Both wheels install the same `onnxruntime` module, so they must never be
# installed side by side: both are removed, then the GPU wheel goes in alone. The .gpu stamp makes
# every later (re)install of the project redo the swap.
ORT_GPU ?= onnxruntime-gpu[cuda,cudnn]>=1.18,<2
USE_GPU_WHEEL = $(BIN)/pip uninstall -q -y onnxruntime onnxruntime-gpu && $(BIN)/pip install -q "$(ORT_GPU)"
KEEP_GPU_WHEEL = if [ -f $(VENV)/.gpu ]; then $(USE_GPU_WHEEL); fi

# The serving install's versions, pinned: requirements/serve.txt (written by `make lock`) holds
# every package of the base install at the version the image ships, and every install here is
# constrained by it, so that make serve, make test and the image run the same serving stack.
LOCK := requirements/serve.txt

# Serving install: the base package only (flask, gunicorn, onnxruntime, numpy, pydantic). No torch.
$(VENV)/.serve-installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e .
	$(KEEP_GPU_WHEEL)
	touch $@

# Development install: training and test/lint tools. torch is pinned to 2.13.0; on Linux, PyPI's
# wheel of it is the CUDA build (several GB): to get the CPU build, let pip see PyTorch's CPU index,
# e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test
$(VENV)/.dev-installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -c $(LOCK) -e ".[train,dev]"
	$(KEEP_GPU_WHEEL)
	touch $@ $(VENV)/.serve-installed

ifeq ($(wildcard $(LOCK))$(filter lock,$(MAKECMDGOALS)),)
$(error $(LOCK) is missing: `make lock` writes it)
endif

# Re-pins requirements/serve.txt after a change to the base dependencies in pyproject.toml, keeping
# the pins that still fit; `make lock LOCK_ARGS=--upgrade` moves every pin to the newest allowed.
# It needs no install of the project (whose pins may be the ones that no longer fit), and leaves
# the file untouched when the pins are the same, so the installs above are not redone for nothing.
lock: | $(BIN)/python
	$(BIN)/pip install -q "pip-tools>=7.4"
	if [ -f $(LOCK) ]; then cp $(LOCK) $(LOCK).new; fi
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --strip-extras \
		--no-emit-index-url --no-emit-find-links $(LOCK_ARGS) --output-file $(LOCK).new pyproject.toml
	if cmp -s $(LOCK).new $(LOCK); then rm $(LOCK).new; else mv $(LOCK).new $(LOCK); fi

# The gRPC protocol's descriptor, loaded by the server, after a change to its .proto file (the
# tests check that the two agree).
proto: $(VENV)/.dev-installed
	$(BIN)/python -m grpc_tools.protoc -I service/grpc_api \
		--descriptor_set_out=service/grpc_api/inference.binpb \
		service/grpc_api/inference.proto service/grpc_api/health.proto

serve: $(VENV)/.serve-installed
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py "service:create_app()"

install-gpu: $(VENV)/.serve-installed
	$(USE_GPU_WHEEL)
	touch $(VENV)/.gpu

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

# Three stages: SST-2 phrases + IMDB reviews for 3 epochs with adversarial training on the word
# vectors; SST-2 phrases only, without it, from the end of the first stage (its last.pt: the IMDB
# reviews seen for the full 3 epochs); SST-2 phrases only with it again, from the second's best.
# The committed model's stages 2 and 3 ran on one thread each (trainer.threads=1).
train-sentiment: $(VENV)/.dev-installed
	$(BIN)/python -m training train sentiment --config configs/sentiment.toml --run-dir $(RUN)-joint \
		--set adversarial.epsilon=1.0
	$(BIN)/python -m training train sentiment --config configs/sentiment.toml --run-dir $(RUN)-sst \
		--set init_from=$(RUN)-joint/last.pt --set data.train_imdb=false \
		--set trainer.lr=0.0005 --set trainer.epochs=3 --set trainer.patience=2 \
		--set trainer.threads=1
	$(BIN)/python -m training train sentiment --config configs/sentiment.toml --run-dir $(RUN) \
		--set init_from=$(RUN)-sst/best.pt --set data.train_imdb=false \
		--set trainer.lr=0.0005 --set trainer.epochs=3 --set trainer.patience=2 \
		--set trainer.threads=1 --set adversarial.epsilon=1.0

export-sentiment: $(VENV)/.dev-installed
	$(BIN)/python -m training export sentiment --checkpoint $(RUN)/best.pt --out exported_models/sentiment

# int8 graphs next to the fp32 ones, recorded only if >= 1.3x faster and <= 0.5 dev points lost.
quantize-sentiment: $(VENV)/.dev-installed
	$(BIN)/python -m training quantize sentiment --model-dir exported_models/sentiment

evaluate-sentiment: $(VENV)/.dev-installed
	$(BIN)/python -m training evaluate sentiment --dev

train-ner: $(VENV)/.dev-installed
	$(BIN)/python -m training train ner --config configs/ner.toml --run-dir $(NER_RUN)

export-ner: $(VENV)/.dev-installed
	$(BIN)/python -m training export ner --checkpoint $(NER_RUN)/best.pt --out exported_models/ner

evaluate-ner: $(VENV)/.dev-installed
	$(BIN)/python -m training evaluate ner --data ../shared/datasets/conll2003/valid.txt

# About 2 hours on 2 CPU cores; resumable: add RESUME=--resume to continue an interrupted run.
train-translation: $(VENV)/.dev-installed
	$(BIN)/python -m training train translation --config configs/translation.toml --run-dir $(MT_RUN) $(RESUME)

# Stage 2, as the committed translator was made: continue from stage 1's best at half the
# learning rate, one thread, keeping every epoch's weights; its best.pt (selected on greedy dev
# BLEU) is what export-translation ships. Averaging epochs (average-translation, MT_AVERAGE, e.g.
# "7 8 9") was tried and did not beat best.pt on dev; to export an average anyway:
# make export-translation MT_CHECKPOINT=$(MT_RUN)-cont/averaged.pt
continue-translation: $(VENV)/.dev-installed
	$(BIN)/python -m training train translation --config configs/translation.toml \
		--run-dir $(MT_RUN)-cont --set init_from=$(MT_RUN)/best.pt --set trainer.lr=0.0005 \
		--set trainer.epochs=10 --set trainer.patience=4 --set trainer.threads=1 \
		--set trainer.keep_epochs=true $(RESUME)

average-translation: $(VENV)/.dev-installed
	$(BIN)/python -m training average $(foreach e,$(MT_AVERAGE),$(MT_RUN)-cont/epoch-$(e).pt) \
		--out $(MT_RUN)-cont/averaged.pt

export-translation: $(VENV)/.dev-installed
	$(BIN)/python -m training export translation --checkpoint $(MT_CHECKPOINT) --out exported_models/translation

evaluate-translation: $(VENV)/.dev-installed
	$(BIN)/python -m training evaluate translation --src ../shared/datasets/multi30k/val.en \
		--ref ../shared/datasets/multi30k/val.de --beam-size 5

# Benchmark suite (docs/benchmarks.md + plots): the full run takes under 20 minutes;
# BENCH_ARGS=--quick for a run under 3 minutes (see python -m benchmarks --help).
.PHONY: bench
bench: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
