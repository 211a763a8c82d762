# Thin wrappers: each target calls one script in scripts/.
.PHONY: demo test check bench up up-sim

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

# the whole stack on simulators, under its own compose project (never touches a real installation's volumes)
up-sim:
	docker compose --env-file docker/sim.env up -d --build
