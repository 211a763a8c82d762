"""Fixtures shared by every test in the tree (services/*/tests, sim/tests, tests/)."""

pytest_plugins = ["tests.support.broker_fixture"]
