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
test: setup
	scripts/test.sh

lint: setup
	.venv/bin/ruff check src tests bench

bench: setup
	.venv/bin/python bench/lifecycle.py
	.venv/bin/python bench/list_machines.py
	.venv/bin/python bench/metrics.py
	.venv/bin/python bench/auth.py
	.venv/bin/python bench/login_spray.py
	.venv/bin/python bench/provision.py
	.venv/bin/python bench/transfer.py
	.venv/bin/python bench/guest_network.py
	.venv/bin/python bench/images.py
	scripts/start-postgres.sh >/dev/null  # bench/scale.py runs nodes on the tests' cluster
	.venv/bin/python bench/scale.py

clean:
	rm -rf .venv var .pytest_cache
