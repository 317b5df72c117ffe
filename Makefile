.PHONY: run test lint bench clean

# Set up everything and start web, worker and beat together (Ctrl-C stops them all).
run:
	@scripts/run.sh

# Install the dev requirements, make sure PostgreSQL and Redis answer, run the whole suite.
test:
	@scripts/test.sh

lint:
	@scripts/venv.sh requirements-dev.txt
	.venv/bin/ruff check .

bench:
	@scripts/venv.sh requirements-dev.txt
	.venv/bin/python -m bench

clean:
	rm -rf .venv node_modules staticfiles .pytest_cache
