# The two commands of the README: `make run` serves on http://127.0.0.1:8080 with data in ./var,
# `make test` runs the whole suite. Both set up what is missing first.
.PHONY: setup run test lint bench clean

setup:
	@scripts/setup.sh

run: setup
	@scripts/default-pool.sh
	.venv/bin/enomalism serve --data-dir ./var

# The remote-transport tests need libvirtd listening on 127.0.0.1:16509 (scripts/start-libvirt.sh).
test: export ENOMALISM_LIBVIRT_TCP = 1
test: lint
	scripts/test.sh

# ruff (with C901: no function above a complexity of 15), the import contracts of
# pyproject.toml (docs/architecture.md), mypy on the whole of src/enomalism.
lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/lint-imports
	.venv/bin/mypy src/enomalism

bench: setup
	.venv/bin/python bench/lifecycle.py
	.venv/bin/python bench/list_machines.py
	.venv/bin/python bench/metrics.py
	.venv/bin/python bench/auth.py
	.venv/bin/python bench/login_spray.py
	.venv/bin/python bench/provision.py
	.venv/bin/python bench/transfer.py
	.venv/bin/python bench/storage.py
	.venv/bin/python bench/guest_network.py
	.venv/bin/python bench/images.py
	.venv/bin/python bench/dashboard.py
	.venv/bin/python bench/migrate.py
	scripts/start-postgres.sh >/dev/null  # bench/scale.py runs nodes on the tests' cluster
	.venv/bin/python bench/scale.py

clean:
	rm -rf .venv var .pytest_cache
