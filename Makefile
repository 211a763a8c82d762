# Thin wrappers: each target calls one script in scripts/.
.PHONY: demo test check bench up

demo:
	@scripts/demo

test:
	@scripts/test

check:
	@scripts/check

bench:
	@scripts/bench

up:
	docker compose up -d
