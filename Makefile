# Thin wrappers: each target calls one script in scripts/.
.PHONY: demo test check bench up up-all-in-one up-sim

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

# small boxes: mosquitto + one container running the four services in one process
up-all-in-one:
	docker compose -f docker-compose.all-in-one.yml up -d --build

# the whole stack on simulators, under its own compose project (never touches a real installation's volumes)
up-sim:
	docker compose --env-file docker/sim.env up -d --build
