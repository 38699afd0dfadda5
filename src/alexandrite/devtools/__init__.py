"""For developers and tests, never imported by the services: bulk seed, simulation, test sandboxes, a mail sink."""
