# The README's two commands: `make train` (set up, then train the digits example) and `make test`.
#
# Both run inside a project-local virtual environment, $(VENV), made once from $(PYTHON) and reused; nothing
# is ever installed into $(PYTHON) itself. A Debian/Ubuntu system Python refuses such installs (PEP 668,
# "externally-managed-environment"), and a pyenv, conda or docker-image Python is left as it was.
# `make clean` removes the environment; `. .venv/bin/activate` puts it on a shell's PATH.
PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
# written when set-up has finished, with the torch requirement it used; set-up is redone when setup.py changes
STAMP := $(VENV)/.setup-done
# what activating the environment does, for the recipes that run in it: its console scripts (hadolint, the
# deepspeed launcher) come first on PATH
IN_VENV = VIRTUAL_ENV="$(abspath $(VENV))" PATH="$(abspath $(VENV))/bin:$$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# torch goes in first and pinned, so the package's own `torch` requirement is already met by the build picked
# here rather than by whatever pip would resolve. Without a GPU (no nvidia-smi) that is the CPU build: PyTorch's
# CPU index is added, where 2.13.0+cpu sorts above PyPI's 2.13.0 (a CUDA build of several GB), unless this
# machine cannot resolve its host (offline or mirrored: pip's own configuration then decides, e.g. a wheel on
# disk). With a GPU, PyPI's Linux wheel is already a CUDA build; for another CUDA version pass e.g.
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Recursively expanded: the probes run only when the set-up recipe needs the value, never for `make clean`.
TORCH_SPEC ?= torch==$(TORCH_VERSION)$(if $(shell command -v nvidia-smi),,$(if $(cpu_index_reachable), --extra-index-url $(TORCH_CPU_INDEX)))
# "yes" when pip could fetch from the CPU index: a proxy is configured, or the index's host name resolves
cpu_index_reachable = $(shell $(VENV_PYTHON) -c 'import os, socket, sys, urllib.parse; os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY") or socket.getaddrinfo(urllib.parse.urlsplit(sys.argv[1]).hostname, 443)' $(TORCH_CPU_INDEX) 2>/dev/null && echo yes)

.DEFAULT_GOAL := setup
.PHONY: setup train test test-fast clean

# PYTHON and TORCH_SPEC act only when the environment is made: given again later, and different, they would be
# ignored, so say so (not for `make clean`, which is how to apply them).
base_interpreter := import os, sys; print(os.path.realpath(sys._base_executable))
ifeq ($(filter clean,$(MAKECMDGOALS)),)
ifneq ($(wildcard $(VENV_PYTHON)),)
ifneq ($(filter command line environment,$(origin PYTHON)),)
made_from := $(shell $(VENV_PYTHON) -c '$(base_interpreter)')
ifneq ($(shell $(PYTHON) -c '$(base_interpreter)' 2>/dev/null),$(made_from))
$(warning PYTHON=$(PYTHON) has no effect: $(VENV) exists, made from $(made_from); run `make clean` first to remake it)
endif
endif
endif
ifneq ($(wildcard $(STAMP)),)
ifneq ($(filter command line environment,$(origin TORCH_SPEC)),)
set_up_with := $(shell sed -n 's/^TORCH_SPEC=//p' $(STAMP))
ifneq ($(strip $(TORCH_SPEC)),$(strip $(set_up_with)))
$(warning TORCH_SPEC=$(TORCH_SPEC) has no effect: $(VENV) was set up with "$(set_up_with)"; run `make clean` first to reinstall torch)
endif
endif
endif
endif

# Made once. A failed `venv` (Debian/Ubuntu without the python3-venv package: no ensurepip) leaves a half-made
# folder whose bin/python would pass for a finished environment next time, so the folder goes if this made it.
$(VENV_PYTHON):
	@if [ -e "$(VENV)" ]; then existed=yes; else existed=; fi; \
	echo "$(PYTHON) -m venv $(VENV)"; \
	$(PYTHON) -m venv "$(VENV)" || { \
	    [ -n "$$existed" ] || rm -rf "$(VENV)"; \
	    echo "make: could not create $(VENV) with $(PYTHON) -m venv (on Debian/Ubuntu: apt install python3-venv;" \
	         "another interpreter: make PYTHON=/path/to/python3)" >&2; \
	    exit 1; }

$(STAMP): setup.py | $(VENV_PYTHON)
	@spec='$(TORCH_SPEC)'; \
	echo "$(VENV_PYTHON) -m pip install $$spec"; \
	$(VENV_PYTHON) -m pip install -q $$spec && \
	echo '$(VENV_PYTHON) -m pip install -e ".[examples,test]"' && \
	$(VENV_PYTHON) -m pip install -q -e ".[examples,test]" && \
	printf 'TORCH_SPEC=%s\n' "$$spec" > $@

setup: $(STAMP)

train: $(STAMP)
	$(IN_VENV) python examples/digits/train.py --config-file examples/digits/configs/digits.py

# `make test` runs TEST_WORKERS test files at a time (pytest-xdist). A distributed test spends much of its time
# with a core idle (a rank waiting on another's start, a launcher's timeout), and a second file fills it (in one
# process the suite got 132% of 2 cores). `--dist loadfile` keeps each file on one
# worker, so a module fixture that starts trainings runs once; `--no-loadscope-reorder` hands the files out in
# the order tests/conftest.py collects them (the slow ones first). TEST_WORKERS=0 runs it all in this process.
TEST_WORKERS ?= 2
PYTEST = $(IN_VENV) python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST) tests

test-fast: $(STAMP)
	$(PYTEST) tests/unit

clean:
	rm -rf output build dist *.egg-info $(VENV)
