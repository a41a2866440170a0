# The README's two commands: `make train` (set up, then train the digits example) and `make test`.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# torch first, pinned: on these machines pip resolves torch==2.13.0 to the CPU wheel on disk, while a
# bare `torch` requirement would pull a multi-GB CUDA build (elsewhere: TORCH_SPEC="torch==2.13.0 --index-url ...")
TORCH_SPEC ?= torch==2.13.0
STAMP := .setup-done
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup train test test-fast clean

$(STAMP): setup.py
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[examples,test]"
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(PYTHON) examples/digits/train.py --config-file examples/digits/configs/digits.py

test: $(STAMP)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

clean:
	rm -rf output build dist *.egg-info $(STAMP)
