# Cumulo: `make test` runs the whole suite; `make run` starts a cloud with simulated hosts.
# Both work on a fresh Debian 12 machine with Python 3.11 as root: they install what is missing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cumulo-installed
# Debian packages the build needs: a C compiler for the cffi codec and Cython kernel; libvirt's headers
# and pkg-config for libvirt-python (the KVM agent; its test driver runs the unit tests); libvirt's QEMU
# driver, QEMU and qemu-img for the real-guest tests (libvirt embedded in the agent, no daemon); e2fsprogs
# to make the guest template's disk; PostgreSQL's server for the tests and benchmarks that run on it (each
# starts a private cluster of its own); iproute2, ping and nftables for guest networks and security groups.
APT_PACKAGES := gcc make pkg-config libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 \
	qemu-utils e2fsprogs postgresql iproute2 iputils-ping nftables
GUEST_TEMPLATE := .cache/guest-template
NATIVE_SOURCES := $(wildcard native/*.c native/*.h native/*.pyx native/_*_build.py) setup.py pyproject.toml

.PHONY: all run test lint typecheck bench fuzz sanitize system-deps guest-template clean

all: $(STAMP)

# Debian packages, only those missing; plus the headers and venv module of the chosen Python.
system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	inc=$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	[ -f "$$inc/Python.h" ] || missing="$$missing python3-dev"; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): $(NATIVE_SOURCES) | system-deps
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# The tiny guest the real-guest tests boot (Debian's cloud kernel and busybox), built once into .cache/.
guest-template: $(STAMP)
	$(PY) -m agent build-template --out $(GUEST_TEMPLATE)

test: $(STAMP) guest-template
	$(PY) -m ruff check --no-cache .
	$(PY) -m mypy
	CUMULO_REAL_GUESTS=1 CUMULO_POSTGRES=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check --no-cache .

typecheck: $(STAMP)
	$(PY) -m mypy

# The management server with a simulated zone (docs/quickstart.md); API_PORT, AGENT_PORT, DATA_DIR, HOSTS
# and BIND come from the environment.
run: $(STAMP)
	$(PY) -m mgmt local

# Micro benchmarks, the planner, the fleet (TLS, and plain TCP), deploy (SQLite, and PostgreSQL), HA and
# several-server load benchmarks (each again with the pure-Python codec or planner as a baseline), then
# benchmarks/results/REPORT.md with plots. About 35 minutes.
bench: $(STAMP)
	@mkdir -p benchmarks/results
	$(PY) -m benchmarks.codec --json benchmarks/results/codec.json
	$(PY) -m benchmarks.planner --hosts 10000 --json benchmarks/results/planner.json
	$(PY) -m pytest -q -p no:cacheprovider benchmarks --benchmark-only --benchmark-json=benchmarks/results/micro.json
	$(PY) -m benchmarks.fleet --agents 10000 --json benchmarks/results/fleet.json
	$(PY) -m benchmarks.fleet --agents 10000 --transport tcp --json benchmarks/results/fleet-tcp.json
	CUMULO_CODEC=python $(PY) -m benchmarks.fleet --agents 10000 --json benchmarks/results/fleet-python-codec.json
	CUMULO_CODEC=python $(PY) -m benchmarks.fleet --agents 10000 --transport tcp \
		--json benchmarks/results/fleet-tcp-python-codec.json
	$(PY) -m benchmarks.trio_floor --connections 10000 --json benchmarks/results/trio-floor.json
	$(PY) -m benchmarks.deploy --hosts 1000 --vms 2000 --concurrency 64 --json benchmarks/results/deploy.json
	$(PY) -m benchmarks.deploy --hosts 1000 --vms 2000 --concurrency 64 --db postgresql \
		--json benchmarks/results/deploy-postgresql.json
	CUMULO_PLANNER=python $(PY) -m benchmarks.deploy --hosts 1000 --vms 2000 --concurrency 64 \
		--json benchmarks/results/deploy-python-planner.json
	$(PY) -m benchmarks.ha --hosts 100 --vms 1000 --kill 10 --json benchmarks/results/ha.json
	$(PY) -m benchmarks.guest_boot --json benchmarks/results/guest-boot.json
	$(PY) -m benchmarks.secgroups --rules 1000 --vms 100 --json benchmarks/results/secgroups.json
	$(PY) -m benchmarks.cluster --servers 3 --agents 3000 --json benchmarks/results/cluster.json
	$(PY) -m benchmarks.cluster --servers 1 --agents 3000 --json benchmarks/results/cluster-single.json
	$(PY) -m benchmarks.tenancy --domains 100 --vms 10000 --json benchmarks/results/tenancy.json
	$(PY) -m benchmarks.report

# Coverage-guided fuzzing of the C frame decoder with libFuzzer (clang and its runtimes, installed when missing).
FUZZ_SECONDS ?= 60
fuzz:
	@missing=""; for p in clang libclang-rt-14-dev; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	@mkdir -p build fuzz-corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Inative native/fuzz_scan.c native/framecodec.c -o build/fuzz_scan
	build/fuzz_scan -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 fuzz-corpus

# The protocol and planner suites against the C codec and the Cython kernel built with AddressSanitizer
# and UBSan.
sanitize: $(STAMP)
	CUMULO_NATIVE_SANITIZE=1 $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) $(PY) -m pytest -q -p no:cacheprovider tests/protocol tests/native tests/planner; \
	status=$$?; $(PY) -m pip install -q --no-build-isolation --no-deps -e .; exit $$status

clean:
	rm -rf build *.egg-info native/*.so native/*.o native/_framecodec.c native/plannerkernel.c .pytest_cache .mypy_cache .ruff_cache
